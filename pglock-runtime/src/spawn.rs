//! Work left for after the caller: run on the current tokio runtime if there is one,
//! else dropped. Every caller relies on what dropping means for its work (a session
//! still counted as holding a lock closes its connection, which frees the lock).

use std::future::Future;

/// Spawns `work` on the current runtime; without one, drops it. Whether it was
/// spawned.
pub(crate) fn spawn_or_drop<F>(work: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(work);
            true
        }
        Err(_) => {
            drop(work);
            false
        }
    }
}
