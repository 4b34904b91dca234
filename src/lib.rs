//! A PostgreSQL advisory lock as the guard of a critical section.
//!
//! Services run as N instances; some work must run in one instance at a time;
//! PostgreSQL is already there, so it is the lock server. [`advisory_locked`] takes
//! the lock before an `async fn`'s body and gives it back after it on every path;
//! [`AdvisoryLock`] is the same by hand; a [`Locker`] keeps thousands of locks on a
//! few connections.
//!
//! ```
//! use deadpool_postgres::Pool;
//!
//! #[derive(Debug)]
//! enum AppError {
//!     Lock(pglock::Error),
//! }
//!
//! impl From<pglock::Error> for AppError {
//!     fn from(error: pglock::Error) -> Self {
//!         AppError::Lock(error)
//!     }
//! }
//!
//! /// Runs in one process at a time for a given order, across every machine that
//! /// talks to this database; waits at most 5 s for another holder.
//! #[pglock::advisory_locked(key = "order:{order_id}", wait = "5s")]
//! async fn ship(pool: &Pool, order_id: i64) -> Result<&'static str, AppError> {
//!     Ok("shipped")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), AppError> {
//! # let pool = pglock::testdb::shared().pool(4);
//! // `pool` is your deadpool_postgres::Pool.
//! assert_eq!(ship(&pool, 7).await?, "shipped");
//!
//! // While someone holds the lock, a caller that does not wait gets Error::Busy.
//! let held = pglock::AdvisoryLock::new("order:7").try_acquire(&pool).await?;
//! let again = pglock::AdvisoryLock::new("order:7").try_acquire(&pool).await;
//! assert!(again.unwrap_err().is_busy());
//! held.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The README has the guarantees with their bounds, the rules of the [`Locker`]
//! (fairness, connection budget), and notes on PgBouncer and failover.

#![warn(missing_docs)]

pub use pglock_runtime::*;

#[doc(inline)]
pub use pglock_macros::advisory_locked;

// The attribute's documentation lives in the macro crate (where rustdoc shows it);
// its examples need this facade, so they are compiled as doctests here.
#[cfg(doctest)]
#[doc = include_str!("../pglock-macros/src/advisory_locked.md")]
pub struct AdvisoryLockedDocs;

// The README's Leadership example, compiled and run as a doctest; `tests/readme.rs`
// checks that the README shows exactly this text.
#[cfg(doctest)]
#[doc = include_str!("../docs/leadership_example.md")]
pub struct LeadershipReadmeExample;
