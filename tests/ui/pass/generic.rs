//! Generic fns: type and lifetime parameters, `where` clauses, any expression as
//! the lock source.
#![deny(warnings)]

use std::fmt::Display;
use std::ops::Deref;

use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

#[advisory_locked(key = "{kind}:{id}", pool = **pool)]
pub async fn generic<'p, P, K, I>(pool: &'p P, kind: K, id: &I) -> Result<K, AppError>
where
    P: Deref<Target = Pool> + Sync,
    K: Display + Send,
    I: Display + Sync + ?Sized,
{
    Ok(kind)
}

fn spawn(pool: std::sync::Arc<Pool>) {
    tokio::spawn(async move { generic(&pool, "job", "7").await });
}

fn main() {
    let _ = spawn;
}
