//! Runtime of [pglock](https://docs.rs/pglock): PostgreSQL advisory locks as guards of
//! critical sections. Users depend on the facade crate `pglock`, which re-exports
//! everything here together with the `#[advisory_locked]` attribute.

mod key;

pub use key::LockKey;

#[cfg(feature = "testdb")]
pub mod testdb;
