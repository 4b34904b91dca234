//! `LockGuard`: a lock held on a session of its own (taken from a `Pool`).

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use crate::drop_guard::DropGuard;
use crate::error::Error;
use crate::fence;
use crate::hold;
use crate::lock::AdvisoryLock;
use crate::loss::Watch;
use crate::release;
use crate::session::{Reserved, Session};
use crate::trace::{self, Holding};

/// A held advisory lock on a pooled session. It derefs to that session's client, so
/// queries can run on the locked connection.
///
/// The lock is released by [`release`](Self::release), or when the guard is dropped
/// (on return, `?`, panic, or a dropped future): the unlock is then sent at once,
/// and its answer read by the next lock taken from the same pool, in the same round
/// trip as that lock's own statement (or, if none comes within 20 ms,
/// or the session is still used by others, by a background task). The connection
/// returns to the pool only once the server confirmed the unlock; if that fails it
/// is closed instead, which frees the lock too. It never goes back to the pool
/// holding a lock, nor with an answer nobody read.
///
/// Locks taken inside the body of an `#[advisory_locked]` function that already holds
/// one from the same pool share this session, so the guard gives `&Client` (not
/// `&mut`): for a transaction bound to the lock, take the lock inside the transaction
/// instead, with [`AdvisoryLock::acquire_xact`].
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard {
    /// Unlocks in the background when the guard is dropped without `release`.
    held: DropGuard<Held>,
}

/// The lock a guard holds, and where.
struct Held {
    session: Arc<Session>,
    lock: AdvisoryLock,
    since: std::time::Instant,
    /// What spans and metrics know of the hold.
    holding: Holding,
    /// The fencing token, for a lock taken `fenced()`.
    fence: Option<u64>,
    /// The guard's key on its session; released after the unlock is sent (and so
    /// kept through a `hold_at_least`).
    reserved: Reserved,
}

/// A guard dropped while holding its lock: the unlock is queued now (or, while the
/// lock's minimum hold lasts, once it ran out) and finished in the background.
fn unlock_dropped(held: Held) {
    let mut held = match hold::remaining(&held.lock, held.since) {
        Some(left) if !held.session.is_lost() => match hold::after(left, held, unlock_dropped) {
            Ok(()) => return,
            Err(held) => held,
        },
        _ => held,
    };
    held.holding
        .end(&held.lock, held.since, held.session.is_lost());
    let Held {
        session,
        lock,
        reserved,
        ..
    } = held;
    // Only the reservation's handle stays: the release counts the handles left.
    drop(session);
    release::unlock_dropped(reserved, lock);
}

impl LockGuard {
    pub(crate) fn new(reserved: Reserved, lock: AdvisoryLock) -> Self {
        let held = Held {
            session: reserved.session().clone(),
            lock,
            since: std::time::Instant::now(),
            holding: Holding::new(),
            fence: None,
            reserved,
        };
        LockGuard {
            held: DropGuard::new(held, unlock_dropped),
        }
    }

    /// The fencing token of this holder: `Some` for a lock taken
    /// [`fenced()`](AdvisoryLock::fenced), strictly greater than every earlier
    /// fenced holder's; `None` otherwise.
    pub fn fence(&self) -> Option<u64> {
        self.held.get().fence
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &AdvisoryLock {
        &self.held.get().lock
    }

    /// Unlocks now and returns the connection to the pool; reports what the server
    /// said. [`Error::LockLost`] if the session no longer held the lock. A lock whose
    /// [`hold_at_least`](AdvisoryLock::hold_at_least) has not run out returns `Ok` at
    /// once and is unlocked in the background when it has.
    pub async fn release(self) -> Result<(), Error> {
        let held = self.held.disarm();
        if hold::remaining(&held.lock, held.since).is_some() && !held.session.is_lost() {
            unlock_dropped(held);
            return Ok(());
        }
        let Held {
            session,
            lock,
            since,
            mut holding,
            reserved: _reserved,
            ..
        } = held;
        holding.end(&lock, since, session.is_lost());
        if session.is_lost() {
            return Err(Error::LockLost {
                lock: lock.id().clone(),
            });
        }
        session.unlock(&lock).await
    }

    /// Completes when the session holding the lock is lost (terminated, server
    /// restart, broken connection): from then on the lock is not held.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let lock = self.lock();
        let how = Watch {
            keepalive: lock.keepalive_bound(),
            probe: Some((lock.key(), lock.mode())),
        };
        self.session().watch_for_loss(how).token().cancelled_owned()
    }

    /// Whether the session holding the lock is known to be gone.
    pub fn is_lost(&self) -> bool {
        self.session().is_lost()
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.held.get().session
    }
}

impl fence::Fenceable for LockGuard {
    fn fence_parts(&mut self) -> (&Session, &AdvisoryLock, &mut Option<u64>) {
        let held = self.held.get_mut();
        (&held.session, &held.lock, &mut held.fence)
    }
}

impl trace::Observed for LockGuard {
    const SOURCE: &'static str = "pool";
    fn holding(&mut self) -> Option<&mut Holding> {
        Some(&mut self.held.get_mut().holding)
    }
}

impl Deref for LockGuard {
    type Target = deadpool_postgres::Client;

    fn deref(&self) -> &Self::Target {
        self.session().lend_client()
    }
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", self.lock().id())
            .field("mode", &self.lock().mode())
            .field("held", &true)
            .finish()
    }
}
