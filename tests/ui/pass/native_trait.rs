//! A method of a trait impl written with native `async fn` in the trait.
#![deny(warnings)]

use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

trait Job {
    async fn run(&self, pool: &Pool, id: i64) -> Result<i64, AppError>;
}

/// A public trait whose futures must be `Send`: the annotated `async fn` that
/// implements it must give one.
pub trait SendJob {
    fn run(
        &self,
        pool: &Pool,
        id: i64,
    ) -> impl std::future::Future<Output = Result<i64, AppError>> + Send;
}

pub struct Nightly;

impl Job for Nightly {
    #[advisory_locked(key = "nightly:{id}", wait = "2m")]
    async fn run(&self, pool: &Pool, id: i64) -> Result<i64, AppError> {
        Ok(id)
    }
}

impl SendJob for Nightly {
    #[advisory_locked(key = "nightly:{id}", shared)]
    async fn run(&self, pool: &Pool, id: i64) -> Result<i64, AppError> {
        Ok(id)
    }
}

async fn call<J: Job>(job: &J, pool: &Pool) -> Result<i64, AppError> {
    job.run(pool, 1).await
}

fn main() {
    let _ = call::<Nightly>;
}
