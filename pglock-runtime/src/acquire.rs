//! The acquire methods of [`AdvisoryLock`]: take the lock from a lock source, and
//! tell `tracing` how it went.

use std::future::Future;
use std::panic::Location;
use std::time::Duration;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::source::LockSource;
use crate::trace;

impl AdvisoryLock {
    /// Takes the lock if it is free; [`Error::Busy`] at once if another session (or
    /// this task, in an enclosing lock) holds it.
    #[track_caller]
    pub fn try_acquire<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        let lock = self.called_from(Location::caller());
        async move { trace::acquiring(&lock, "try", source.try_lock(&lock)).await }
    }

    /// Waits until the lock is free, in the server's queue (no polling).
    /// [`Error::WouldDeadlock`] at once if the calling task already holds it.
    #[track_caller]
    pub fn acquire<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        let lock = self.called_from(Location::caller());
        async move { trace::acquiring(&lock, "wait", source.lock(&lock, None)).await }
    }

    /// Waits at most `limit`; then [`Error::Timeout`], leaving no waiter on the server.
    /// A lock granted at the last moment is returned, never reported as a timeout.
    #[track_caller]
    pub fn acquire_timeout<'a, S: LockSource + ?Sized>(
        &'a self,
        source: &'a S,
        limit: Duration,
    ) -> impl Future<Output = Result<S::Guard, Error>> + Send + 'a {
        let lock = self.called_from(Location::caller());
        async move { trace::acquiring(&lock, "wait with limit", source.lock(&lock, Some(limit))).await }
    }
}
