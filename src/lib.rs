//! pglock: a PostgreSQL advisory lock as the guard of a critical section.
pub use pglock_runtime::*;

#[doc(inline)]
pub use pglock_macros::advisory_locked;

// The attribute's documentation lives in the macro crate (where rustdoc shows it);
// its examples need this facade, so they are compiled as doctests here.
#[cfg(doctest)]
#[doc = include_str!("../pglock-macros/src/advisory_locked.md")]
pub struct AdvisoryLockedDocs;
