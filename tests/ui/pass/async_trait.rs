//! Methods of an `#[async_trait]` impl: the attribute sees them desugared to
//! `Pin<Box<dyn Future + Send>>` and takes the lock inside the boxed future.
#![deny(warnings)]

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

#[async_trait]
pub trait Job: Send + Sync {
    async fn run(&self, id: i64) -> Result<i64, AppError>;
    async fn consume(self: Arc<Self>, pool: &Pool) -> Result<(), AppError>;
}

pub struct Nightly {
    pool: Pool,
    name: String,
}

#[async_trait]
impl Job for Nightly {
    /// Docs and `return` survive the two rewrites.
    #[advisory_locked(key = "{self.name}:{id}", pool = self.pool, guard = conn, wait = "1s", skip)]
    async fn run(&self, id: i64) -> Result<i64, AppError> {
        let _ = &conn;
        if id < 0 {
            return Ok(-id);
        }
        Ok(id)
    }

    #[advisory_locked(key = "{self.name}", shared)]
    async fn consume(self: Arc<Self>, pool: &Pool) -> Result<(), AppError> {
        Ok(())
    }
}

fn spawn(job: Arc<dyn Job>, pool: Pool) {
    let j = job.clone();
    tokio::spawn(async move { j.run(1).await });
    tokio::spawn(async move { job.consume(&pool).await });
}

fn main() {
    let _ = spawn;
}
