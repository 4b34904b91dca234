//! A `Locker` as the lock source: a `&Locker` parameter inferred like a `Pool`, and
//! `pool = self.locker` on a method; every mode; the futures are `Send`.
#![deny(warnings)]

use std::sync::Arc;

use pglock::{advisory_locked, Locker};

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

#[advisory_locked(key = "order:{order_id}")]
async fn inferred(locker: &Locker, order_id: i64) -> Result<i64, AppError> {
    Ok(order_id)
}

#[advisory_locked(key = "order:{order_id}", wait = "300ms", skip, shared)]
async fn owned(locker: Locker, order_id: i64) -> Result<(), AppError> {
    let _ = order_id;
    Ok(())
}

#[advisory_locked(key = 7, wait, on_lost = "ignore")]
async fn in_arc(locker: Arc<Locker>) -> Result<(), AppError> {
    Ok(())
}

pub struct Shipping {
    locker: Locker,
    warehouse: String,
}

impl Shipping {
    #[advisory_locked(key = "{self.warehouse}/order:{order_id}", pool = self.locker)]
    async fn ship(&self, order_id: i64) -> Result<(), AppError> {
        let _ = order_id;
        Ok(())
    }
}

fn spawn_all(locker: Locker, shipping: Arc<Shipping>) {
    let l = locker.clone();
    tokio::spawn(async move { inferred(&l, 1).await });
    tokio::spawn(owned(locker.clone(), 2));
    tokio::spawn(in_arc(Arc::new(locker)));
    tokio::spawn(async move { shipping.ship(3).await });
}

fn main() {
    let _ = spawn_all;
}
