//! `xact = expr`: a `deadpool_postgres` or `tokio_postgres` transaction, by
//! reference, by `&mut` or by value, or a field; in every mode; the futures are
//! `Send`, also as an `#[async_trait]` method. A `Pool` parameter is no lock
//! source when `xact` is given.
#![deny(warnings)]

use deadpool_postgres::{Pool, Transaction};
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(_: tokio_postgres::Error) -> Self {
        AppError
    }
}

#[advisory_locked(key = "invoice:{id}", xact = tx)]
async fn by_ref(tx: &Transaction<'_>, id: i64) -> Result<u64, AppError> {
    let n = tx
        .execute("UPDATE invoices SET paid = true WHERE id = $1", &[&id])
        .await?;
    Ok(n)
}

#[advisory_locked(key = "invoice:{id}", xact = tx, wait)]
async fn plain(tx: &tokio_postgres::Transaction<'_>, id: i64) -> Result<(), AppError> {
    let _ = id;
    Ok(())
}

#[advisory_locked(key = 7, xact = tx, skip, shared)]
async fn by_mut(tx: &mut Transaction<'_>) -> Result<Vec<u8>, AppError> {
    let _ = tx;
    Ok(vec![1])
}

#[advisory_locked(key = (1, 2), xact = tx)]
async fn by_value(tx: Transaction<'_>) -> Result<(), AppError> {
    tx.commit().await?;
    Ok(())
}

/// Two pools in scope, yet no "two lock sources": the lock goes in `tx`.
#[advisory_locked(key = "report", xact = tx)]
async fn with_pools(primary: &Pool, replica: &Pool, tx: &Transaction<'_>) -> Result<(), AppError> {
    let _ = (primary, replica);
    Ok(())
}

pub struct Job<'c> {
    tx: Transaction<'c>,
    id: i64,
}

impl Job<'_> {
    #[advisory_locked(key = "job:{self.id}", xact = self.tx, wait)]
    async fn run(&self) -> Result<i64, AppError> {
        Ok(self.id)
    }
}

#[async_trait::async_trait]
pub trait Settle: Send + Sync {
    async fn settle(&self, tx: &Transaction<'_>, id: i64) -> Result<i64, AppError>;
}

pub struct Ledger;

#[async_trait::async_trait]
impl Settle for Ledger {
    #[advisory_locked(key = "ledger:{id}", xact = tx, wait)]
    async fn settle(&self, tx: &Transaction<'_>, id: i64) -> Result<i64, AppError> {
        if id < 0 {
            return Ok(-id);
        }
        Ok(id)
    }
}

fn is_send<T: Send>(_: &T) {}

async fn all(pool: Pool) -> Result<(), AppError> {
    let mut client = pool.get().await.unwrap();
    let mut tx = client.transaction().await?;
    is_send(&by_ref(&tx, 1));
    by_ref(&tx, 1).await?;
    by_mut(&mut tx).await?;
    with_pools(&pool, &pool, &tx).await?;
    Ledger.settle(&tx, 4).await?;
    by_value(tx).await?;
    let job = Job {
        tx: client.transaction().await?,
        id: 3,
    };
    is_send(&job.run());
    job.run().await?;
    Ok(())
}

fn spawn_all(pool: Pool, mut raw: tokio_postgres::Client) {
    tokio::spawn(all(pool));
    tokio::spawn(async move {
        let tx = raw.transaction().await?;
        plain(&tx, 2).await?;
        tx.commit().await?;
        Ok::<_, AppError>(())
    });
}

fn main() {
    let _ = spawn_all;
}
