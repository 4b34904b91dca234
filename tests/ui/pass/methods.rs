//! Inherent methods with `&self`, `&mut self` and `self: Arc<Self>`; the futures are
//! `Send` (they can be spawned).
#![deny(warnings)]

use std::sync::Arc;

use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

pub struct Service {
    pool: Pool,
    tenant: String,
    count: u64,
}

impl Service {
    #[advisory_locked(key = "{self.tenant}/{id}", pool = self.pool)]
    pub async fn by_ref(&self, id: u32) -> Result<u32, AppError> {
        Ok(id)
    }

    #[advisory_locked(key = "{self.tenant}", pool = self.pool, wait)]
    pub async fn by_mut(&mut self) -> Result<u64, AppError> {
        self.count += 1;
        Ok(self.count)
    }

    #[advisory_locked(key = "{self.tenant}", pool = self.pool)]
    pub async fn by_arc(self: Arc<Self>) -> Result<String, AppError> {
        Ok(self.tenant.clone())
    }

    /// The lock source can be a parameter of a method, too.
    #[advisory_locked(key = "{self.tenant}")]
    pub async fn with_pool(&self, other: &Pool) -> Result<(), AppError> {
        let _ = other;
        Ok(())
    }
}

fn spawn_all(svc: Arc<Service>, mut owned: Service) {
    let s = svc.clone();
    tokio::spawn(async move { s.by_ref(1).await });
    tokio::spawn(svc.clone().by_arc());
    tokio::spawn(async move { owned.by_mut().await });
    let pool = svc.pool.clone();
    tokio::spawn(async move { svc.with_pool(&pool).await });
}

fn main() {
    let _ = spawn_all;
}
