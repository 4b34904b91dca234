//! `LockGuard`: a lock held on a session of its own (taken from a `Pool`).

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::loss::Watch;
use crate::release;
use crate::session::{Reserved, Session};
use crate::trace;

/// A held advisory lock on a pooled session. It derefs to that session's client, so
/// queries can run on the locked connection.
///
/// The lock is released by [`release`](Self::release), or when the guard is dropped
/// (on return, `?`, panic, or a dropped future): the unlock is then queued on the
/// connection and finished by a background task. The connection returns to the pool
/// only once the server confirmed the unlock; if that fails it is closed instead,
/// which frees the lock too. It never goes back to the pool holding a lock.
///
/// Locks taken inside the body of an `#[advisory_locked]` function that already holds
/// one from the same pool share this session, so the guard gives `&Client` (not
/// `&mut`): for a transaction bound to the lock, take the lock inside the transaction
/// instead, with [`AdvisoryLock::acquire_xact`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    session: Arc<Session>,
    /// The guard's key on its session; released after the unlock is queued.
    _reserved: Reserved,
    since: std::time::Instant,
    lock: AdvisoryLock,
    held: bool,
}

impl LockGuard {
    pub(crate) fn new(reserved: Reserved, lock: AdvisoryLock) -> Self {
        LockGuard {
            session: reserved.session().clone(),
            _reserved: reserved,
            since: std::time::Instant::now(),
            lock,
            held: true,
        }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &AdvisoryLock {
        &self.lock
    }

    /// Unlocks now and returns the connection to the pool; reports what the server
    /// said. [`Error::LockLost`] if the session no longer held the lock.
    pub async fn release(mut self) -> Result<(), Error> {
        self.held = false;
        trace::released(&self.lock, self.since, self.session.is_lost());
        if self.session.is_lost() {
            return Err(Error::LockLost {
                lock: self.lock.id().clone(),
            });
        }
        self.session.unlock(&self.lock).await
    }

    /// Completes when the session holding the lock is lost (terminated, server
    /// restart, broken connection): from then on the lock is not held.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let how = Watch {
            keepalive: self.lock.keepalive_bound(),
            probe: Some((self.lock.key(), self.lock.mode())),
        };
        self.session.loss(how).token().cancelled_owned()
    }

    /// Whether the session holding the lock is known to be gone.
    pub fn is_lost(&self) -> bool {
        self.session.is_lost()
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

impl Deref for LockGuard {
    type Target = deadpool_postgres::Client;

    fn deref(&self) -> &Self::Target {
        self.session.client()
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", self.lock.id())
            .field("mode", &self.lock.mode())
            .field("held", &self.held)
            .finish()
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.held {
            trace::released(&self.lock, self.since, self.session.is_lost());
            release::unlock_in_background(self.session.clone(), self.lock.clone());
        }
    }
}
