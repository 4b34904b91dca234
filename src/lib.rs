//! pglock: a PostgreSQL advisory lock as the guard of a critical section.
pub use pglock_runtime::*;
