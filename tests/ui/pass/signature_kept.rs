//! The signature survives unchanged: visibility, attributes, doc comments,
//! generics, lifetimes, `where` clauses, `impl Trait` arguments; `return` and `?`
//! keep their meaning in the body; every option in one attribute.
#![deny(warnings)]

use std::fmt::Display;

use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub enum AppError {
    Lock(pglock::Error),
    Parse(std::num::ParseIntError),
}

impl From<pglock::Error> for AppError {
    fn from(e: pglock::Error) -> Self {
        AppError::Lock(e)
    }
}

impl From<std::num::ParseIntError> for AppError {
    fn from(e: std::num::ParseIntError) -> Self {
        AppError::Parse(e)
    }
}

pub mod shipping {
    use super::*;

    /// Ships an order. (This doc comment must survive.)
    #[must_use = "check the receipt"]
    #[advisory_locked(
        key = "order:{order_id:08}/{label}",
        pool = pool,
        wait = "1.5s",
        skip,
        shared,
        guard = conn,
        on_lost = "ignore",
        crate = ::pglock
    )]
    #[inline]
    pub(crate) async fn ship<'a, T, L>(
        pool: &'a Pool,
        order_id: i64,
        label: &'a L,
        extra: impl Display + Send,
        items: &'a [T],
    ) -> Result<Vec<&'a T>, AppError>
    where
        T: Sync,
        L: Display + ?Sized + Sync,
    {
        let _client: &deadpool_postgres::Client = conn;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let n: usize = extra.to_string().parse()?; // `?` converts with From
        Ok(items.iter().take(n).collect())
    }
}

/// `impl Trait` in the return type and an alias of `Result`.
pub type AppResult<T> = Result<T, AppError>;

#[advisory_locked(key = 42)]
pub async fn shown(pool: Pool) -> AppResult<impl Display> {
    Ok(7)
}

#[advisory_locked(key = (1, -2), wait)]
pub async fn anyhow_style(pool: std::sync::Arc<Pool>) -> std::result::Result<(), AppError> {
    Err(AppError::Parse("x".parse::<u8>().unwrap_err()))?;
    Ok(())
}

fn main() {
    // The signature is the one written: a fn pointer of exactly that type.
    fn check<'a>(pool: &'a Pool, label: &'a str, items: &'a [u8]) {
        let _must_use = shipping::ship(pool, 1, label, 2, items);
    }
    let _ = check;
    let _ = shown;
    let _ = anyhow_style;
}
