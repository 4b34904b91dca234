//! The future of an annotated fn is `Send` in every mode, so it can be spawned.
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

#[advisory_locked(key = "order:{order_id}", guard = conn)]
async fn templated(pool: &Pool, order_id: i64) -> Result<u64, AppError> {
    let _ = &conn;
    Ok(order_id as u64)
}

#[advisory_locked(key = "goldleader", wait = "5s", skip, shared)]
async fn literal(pool: Pool) -> Result<(), AppError> {
    Ok(())
}

#[advisory_locked(key = 7, wait, on_lost = "ignore")]
async fn integer(pool: &Pool) -> Result<(), AppError> {
    Ok(())
}

fn is_send<T: Send>(_: &T) {}

fn spawn_all(pool: Pool) {
    let p = pool.clone();
    tokio::spawn(async move { templated(&p, 1).await });
    tokio::spawn(literal(pool.clone()));
    let f = integer(&pool);
    is_send(&f);
}

fn main() {
    let _ = spawn_all;
}
