//! `LockerGuard`: a lock held through a [`Locker`](super::Locker).

use std::future::Future;
use std::sync::Arc;

use crate::context::{BodyId, Registration};
use crate::drop_guard::DropGuard;
use crate::error::Error;
use crate::fence;
use crate::hold;
use crate::lock::AdvisoryLock;
use crate::mutex::lock_unpoisoned;
use crate::session::Session;
use crate::trace::{self, Holding};

use super::relock;
use super::table::{Episode, Release};
use super::Inner;

/// A lock held through a [`Locker`](super::Locker), on a session shared with other
/// locks (so it gives no client).
///
/// Released by [`release`](Self::release) or on drop, like a
/// [`LockGuard`](crate::LockGuard): to the next waiting task of the process, or in
/// the server.
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockerGuard {
    /// Lets go in the background when the guard is dropped without `release`.
    held: DropGuard<Held>,
}

/// The lock a guard holds, and where.
struct Held {
    locker: Arc<Inner>,
    lock: AdvisoryLock,
    episode: Episode,
    session: Arc<Session>,
    since: std::time::Instant,
    /// What spans and metrics know of the hold.
    holding: Holding,
    /// The fencing token, for a lock taken `fenced()`.
    fence: Option<u64>,
}

impl Held {
    fn let_go(&self) -> Release {
        let table = &self.locker.table;
        lock_unpoisoned(table).release(self.lock.key(), self.episode, &Arc::downgrade(table))
    }
}

/// A guard dropped while holding its lock: the key goes to the next waiter, or its
/// unlock (or relock) is queued now and finished in the background.
fn let_go_dropped(held: Held) {
    let mut held = match hold::remaining(&held.lock, held.since) {
        Some(left) if !held.session.is_lost() => match hold::after(left, held, let_go_dropped) {
            Ok(()) => return,
            Err(held) => held,
        },
        _ => held,
    };
    held.holding
        .end(&held.lock, held.since, held.session.is_lost());
    let table = Arc::downgrade(&held.locker.table);
    relock::finish_in_background(held.let_go(), table, held.locker.sessions.clone());
}

impl LockerGuard {
    pub(super) fn new(
        locker: Arc<Inner>,
        lock: AdvisoryLock,
        episode: Episode,
        session: Arc<Session>,
    ) -> Self {
        let held = Held {
            locker,
            lock,
            episode,
            session,
            since: std::time::Instant::now(),
            holding: Holding::new(),
            fence: None,
        };
        LockerGuard {
            held: DropGuard::new(held, let_go_dropped),
        }
    }

    /// The lock this guard holds.
    pub fn lock(&self) -> &AdvisoryLock {
        &self.held.get().lock
    }

    /// Records that `body` holds this lock while it runs (for deadlock detection).
    pub(crate) fn held_by(&self, body: BodyId) -> Option<Registration> {
        let held = self.held.get();
        let holder = super::deadlock::backend_of(&held.session);
        held.locker.deadlocks.body_holds(body, &held.lock, holder)
    }

    /// The fencing token of this holder: `Some` for a lock taken
    /// [`fenced()`](AdvisoryLock::fenced), strictly greater than every earlier
    /// fenced holder's; `None` otherwise.
    pub fn fence(&self) -> Option<u64> {
        self.held.get().fence
    }

    /// Lets go now. When the key goes back to the server, waits for the unlock;
    /// [`Error::LockLost`] if the session holding it was lost. A lock whose
    /// [`hold_at_least`](AdvisoryLock::hold_at_least) has not run out returns `Ok` at
    /// once and lets go in the background when it has (on no extra connection).
    pub async fn release(self) -> Result<(), Error> {
        let mut held = self.held.disarm();
        if hold::remaining(&held.lock, held.since).is_some() && !held.session.is_lost() {
            let_go_dropped(held);
            return Ok(());
        }
        let lost = held.session.is_lost();
        held.holding.end(&held.lock, held.since, lost);
        let release = held.let_go();
        if lost {
            return Err(Error::LockLost {
                lock: held.lock.id().clone(),
            });
        }
        match release {
            Release::Kept => Ok(()),
            Release::Unlock(session, lock) => {
                let unlocked = held.locker.sessions.unlock(&session, &lock).await;
                if let Err(error) = &unlocked {
                    session.retire_if_in_doubt(error);
                }
                unlocked
            }
            Release::Relock(relock) => {
                let table = Arc::downgrade(&held.locker.table);
                relock::ask_again(relock, &table, &held.locker.sessions).await
            }
        }
    }

    /// Completes when the session holding the lock is lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let held = self.held.get();
        held.session
            .watch_for_loss(held.locker.watch())
            .token()
            .cancelled_owned()
    }

    /// Whether the session holding the lock is known to be gone.
    pub fn is_lost(&self) -> bool {
        self.held.get().session.is_lost()
    }
}

impl fence::Fenceable for LockerGuard {
    fn fence_parts(&mut self) -> (&Session, &AdvisoryLock, &mut Option<u64>) {
        let held = self.held.get_mut();
        (&held.session, &held.lock, &mut held.fence)
    }
}

impl trace::Observed for LockerGuard {
    const SOURCE: &'static str = "locker";
    fn holding(&mut self) -> Option<&mut Holding> {
        Some(&mut self.held.get_mut().holding)
    }
}

impl std::fmt::Debug for LockerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockerGuard")
            .field("lock", self.lock().id())
            .field("mode", &self.lock().mode())
            .field("held", &true)
            .finish()
    }
}
