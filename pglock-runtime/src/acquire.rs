//! The acquire methods of [`AdvisoryLock`]: take the lock from a lock source, and
//! tell `tracing` how it went.

use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use tracing::Instrument;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::patience::Patience;
use crate::source::LockSource;
use crate::trace::{self, Refusal};

impl AdvisoryLock {
    /// Takes the lock if it is free; [`Error::Busy`] at once if another session (or
    /// this task, in an enclosing lock) holds it.
    #[track_caller]
    pub fn try_acquire<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        self.acquire_with(source, Location::caller(), Refusal::Fails, || Patience::Try)
    }

    /// Waits until the lock is free, in the server's queue (no polling).
    /// [`Error::WouldDeadlock`] at once if the calling task already holds it.
    #[track_caller]
    pub fn acquire<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        self.acquire_with(source, Location::caller(), Refusal::Fails, || {
            Patience::Forever
        })
    }

    /// Waits at most `limit`; then [`Error::Timeout`], leaving no waiter on the server.
    /// A lock granted at the last moment is returned, never reported as a timeout.
    #[track_caller]
    pub fn acquire_timeout<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
        limit: Duration,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        // The limit starts when the acquisition does (the future's first poll).
        self.acquire_with(source, Location::caller(), Refusal::Fails, move || {
            Patience::within(limit)
        })
    }

    /// Takes the lock from `source` with the patience `patience()` gives when the
    /// acquisition starts, named by `caller` unless a call site was declared, and
    /// tells `tracing` how it went (a busy or timed-out lock as `refusal` says).
    pub(crate) fn acquire_with<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
        caller: &'static Location<'static>,
        refusal: Refusal,
        patience: impl FnOnce() -> Patience + Send + 'a,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        let lock = self.called_from(caller);
        async move {
            let patience = patience();
            let how = match patience {
                Patience::Try => "try",
                Patience::Forever => "wait",
                Patience::Until { .. } => "wait with limit",
            };
            let reported = trace::Acquiring::start::<S::Guard>(&lock, how, refusal);
            let outcome = source
                .lock(&lock, patience)
                .instrument(reported.span())
                .await;
            reported.end(outcome)
        }
    }
}

#[cfg(test)]
mod tests {
    use deadpool_postgres::{Manager, Pool};

    use super::*;
    use crate::locker::Locker;

    fn pool() -> Pool {
        let manager = Manager::new(tokio_postgres::Config::new(), tokio_postgres::NoTls);
        Pool::builder(manager)
            .build()
            .expect("built, not connected")
    }

    /// An acquisition's future holds its source's lock future once: wrapped in its
    /// span and awaited in place, not passed by value to an `async fn` that would
    /// keep the argument and the instrumented copy side by side (twice the size,
    /// moved on every call). Nothing connects: futures are measured, never polled.
    #[test]
    fn an_acquisition_holds_its_sources_lock_future_once() {
        let pool = pool();
        let locker = Locker::builder(pool.clone()).build();
        let lock = AdvisoryLock::new(1_i64);
        let pool_lock = std::mem::size_of_val(&pool.lock(&lock, Patience::Forever));
        let locker_lock = std::mem::size_of_val(&locker.lock(&lock, Patience::Forever));
        for (acquire, inner) in [
            (std::mem::size_of_val(&lock.acquire(&pool)), pool_lock),
            (std::mem::size_of_val(&lock.try_acquire(&pool)), pool_lock),
            (std::mem::size_of_val(&lock.acquire(&locker)), locker_lock),
        ] {
            assert!(
                acquire < inner + 1024,
                "an acquisition of {acquire} bytes around a lock future of {inner}"
            );
        }
    }
}
