//! Work left for after the caller: run on the current tokio runtime if there is one,
//! else dropped. Every caller relies on what dropping means for its work (a session
//! still counted as holding a lock closes its connection, which frees the lock).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// How many tasks [`spawn_or_drop`] has spawned in this process.
pub(crate) fn spawned() -> u64 {
    SPAWNED.load(Ordering::Relaxed)
}

/// Spawns `work` on the current runtime; without one, drops it. Whether it was
/// spawned.
pub(crate) fn spawn_or_drop<F>(work: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            SPAWNED.fetch_add(1, Ordering::Relaxed);
            runtime.spawn(work);
            true
        }
        Err(_) => {
            drop(work);
            false
        }
    }
}
