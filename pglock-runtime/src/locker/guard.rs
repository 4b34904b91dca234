//! `LockerGuard`: a lock held through a [`Locker`](super::Locker).

use std::future::Future;
use std::sync::Arc;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::release;
use crate::session::Session;
use crate::trace;

use super::table::{self, Episode, Release};
use super::Inner;

/// A lock held through a [`Locker`](super::Locker), on a session shared with other
/// locks (so it gives no client).
///
/// Released by [`release`](Self::release) or on drop, like a
/// [`LockGuard`](crate::LockGuard): to the next waiting task of the process, or in
/// the server.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockerGuard {
    locker: Arc<Inner>,
    lock: AdvisoryLock,
    episode: Episode,
    session: Arc<Session>,
    since: std::time::Instant,
    held: bool,
}

impl LockerGuard {
    pub(super) fn new(
        locker: Arc<Inner>,
        lock: AdvisoryLock,
        episode: Episode,
        session: Arc<Session>,
    ) -> Self {
        LockerGuard {
            locker,
            lock,
            episode,
            session,
            since: std::time::Instant::now(),
            held: true,
        }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &AdvisoryLock {
        &self.lock
    }

    /// Lets go now. When the key goes back to the server, waits for the unlock;
    /// [`Error::LockLost`] if the session holding it was lost.
    pub async fn release(mut self) -> Result<(), Error> {
        self.held = false;
        let lost = self.session.is_lost();
        trace::released(&self.lock, self.since, lost);
        let release = self.let_go();
        if lost {
            return Err(Error::LockLost {
                lock: self.lock.id().clone(),
            });
        }
        match release {
            Release::Kept => Ok(()),
            Release::Unlock(session, lock) => session.unlock(&lock).await,
        }
    }

    /// Completes when the session holding the lock is lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.session
            .loss(self.locker.watch())
            .token()
            .cancelled_owned()
    }

    /// Whether the session holding the lock is known to be gone.
    pub fn is_lost(&self) -> bool {
        self.session.is_lost()
    }

    fn let_go(&self) -> Release {
        let table = &self.locker.table;
        table::lock(table).release(self.lock.key(), self.episode, &Arc::downgrade(table))
    }
}

impl Drop for LockerGuard {
    fn drop(&mut self) {
        if self.held {
            trace::released(&self.lock, self.since, self.session.is_lost());
            if let Release::Unlock(session, lock) = self.let_go() {
                release::unlock_in_background(session, lock);
            }
        }
    }
}

impl std::fmt::Debug for LockerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockerGuard")
            .field("lock", self.lock.id())
            .field("mode", &self.lock.mode())
            .field("held", &self.held)
            .finish()
    }
}
