//! Poison-tolerant locking of the runtime's std mutexes. Every change the runtime
//! makes under one of them is a single step (one map operation, one table
//! transition), so a panic elsewhere cannot leave the data half-changed, and a
//! poisoned mutex is safe to use as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poison (see the module docs for why that is sound).
pub(crate) fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
