//! The Locker's lock sessions: a few connections from the pool, each holding the
//! locks of many tasks. A new lock goes on the open session holding fewest locks (a
//! session not yet open holds none), so the server's per-statement cost, which grows
//! with the locks a session holds, stays even across them; a lost session is
//! replaced at its next use. Every try and unlock of the Locker goes through here,
//! which keeps the count of locks each session holds, and sends those of a lock
//! session in its batches (see [`super::batch`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::loss::Watch;
use crate::mutex::lock_unpoisoned;
use crate::patience::Patience;
use crate::release;
use crate::scope::{LockerId, Scope};
use crate::session::Session;
use crate::spawn::spawn_or_drop;

use super::batch::Batcher;
use super::Inner;

pub(super) struct Sessions {
    slots: Vec<Slot>,
    /// The Locker's identity: queued unlocks are found again only by this Locker.
    scope: Scope,
}

struct Slot {
    current: Mutex<Option<Open>>,
    /// Locks the slot's current session holds (or is being asked for).
    held: AtomicUsize,
    /// Held while a session is being opened, so concurrent first users open one.
    opening: tokio::sync::Mutex<()>,
}

impl Sessions {
    pub(super) fn new(count: usize) -> Self {
        Sessions {
            slots: (0..count)
                .map(|_| Slot {
                    current: Mutex::new(None),
                    held: AtomicUsize::new(0),
                    opening: tokio::sync::Mutex::new(()),
                })
                .collect(),
            scope: Scope::Locker(LockerId::next()),
        }
    }

    pub(super) fn scope(&self) -> Scope {
        self.scope
    }

    pub(super) fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| current(slot).is_some())
            .count()
    }

    /// Locks held on each open lock session (for tests and diagnostics).
    pub(super) fn held_per_session(&self) -> Vec<usize> {
        self.slots
            .iter()
            .filter(|slot| current(slot).is_some())
            .map(|slot| slot.held.load(Ordering::Acquire))
            .collect()
    }

    /// The session to ask for `lock` on: the one where an unlock of its key is still
    /// queued (so the request runs after it), else the lock session holding fewest.
    pub(super) async fn for_key(
        &self,
        locker: &Inner,
        lock: &AdvisoryLock,
        patience: Patience,
    ) -> Result<Arc<Session>, Error> {
        let queued_here = release::take_parked_with_key(self.scope, lock.key())
            .or_else(|| release::take_session_for(self.scope, lock.key()));
        if let Some(session) = queued_here {
            return Ok(session);
        }
        let unlocking = self
            .slots
            .iter()
            .filter_map(current)
            .find(|open| open.batcher.is_unlocking(lock.key()));
        if let Some(open) = unlocking {
            return Ok(open.session);
        }
        let slot = self.least_held();
        if let Some(open) = current(slot) {
            return Ok(open.session);
        }
        let _opening = slot.opening.lock().await;
        if let Some(open) = current(slot) {
            return Ok(open.session);
        }
        // A try opens a session only on a connection free now: it waits for nobody.
        // Boxed: a rare path, kept out of every acquisition's future (nested bodies'
        // futures live on one stack).
        let checkout = Session::checkout_with(&locker.pool, lock, self.scope, patience);
        let session = Box::pin(checkout).await?;
        // Watch it from the start: its loss must reach every guard on it at once,
        // and end the table's episodes on it.
        when_lost(&session, locker.watch(), locker.forget_keys_on());
        slot.held.store(0, Ordering::Release);
        *lock_unpoisoned(&slot.current) = Some(Open {
            session: session.clone(),
            batcher: Batcher::start(session.clone()),
        });
        Ok(session)
    }

    /// The open slot holding fewest locks; a slot not open (or lost) holds none, so it
    /// is chosen when every open one holds some.
    fn least_held(&self) -> &Slot {
        let held = |slot: &Slot| match current(slot) {
            Some(_) => (slot.held.load(Ordering::Acquire), 0),
            None => (0, 1),
        };
        self.slots
            .iter()
            .min_by_key(|slot| held(slot))
            .expect("a Locker has at least one slot")
    }

    /// The lock slot whose session is `session`, with its batches; `None` for a
    /// connection of its own (a wait's) or a lock session replaced since.
    fn slot_of(&self, session: &Arc<Session>) -> Option<(&Slot, Batcher)> {
        self.slots.iter().find_map(|slot| {
            let open = lock_unpoisoned(&slot.current);
            let open = open.as_ref().filter(|o| Arc::ptr_eq(&o.session, session))?;
            Some((slot, open.batcher.clone()))
        })
    }

    /// Whether `session` is one of the open lock sessions (not a connection of its
    /// own, opened for a wait).
    pub(super) fn is_lock_session(&self, session: &Arc<Session>) -> bool {
        self.slot_of(session).is_some()
    }

    /// `pg_try_advisory_lock` on `session`: in its next batch, for a lock session.
    pub(super) async fn try_lock(
        &self,
        session: &Arc<Session>,
        lock: &AdvisoryLock,
    ) -> Result<bool, Error> {
        let Some((_, batcher)) = self.slot_of(session) else {
            return session.try_lock(lock).await;
        };
        let granted = batcher.try_lock(lock).await;
        if let Ok(true) = granted {
            self.count_grant(session);
        }
        granted
    }

    /// One lock more on `session`'s slot, if the slot still has that session: a
    /// grant heard after the session was retired and replaced is no lock of the new
    /// session's, and counted there it would never be taken off again.
    fn count_grant(&self, session: &Arc<Session>) {
        if let Some((slot, _)) = self.slot_of(session) {
            slot.held.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Gives `lock`'s key back to the server and asks for it again at once, in one
    /// request on `session`'s batches ([`Op::Relock`](crate::sql::Op::Relock)):
    /// whether it was granted back. `None` when `session` is not a lock session.
    pub(super) async fn relock(
        &self,
        session: &Arc<Session>,
        lock: &AdvisoryLock,
    ) -> Option<Result<bool, Error>> {
        let (slot, batcher) = self.slot_of(session)?;
        // Counted as an unlock now and a try when granted, as a try is: a relock
        // whose caller gives up is unlocked by the batch task, which counts nothing.
        slot.count_one_fewer();
        let answer = batcher.relock(lock).await;
        if let Ok(true) = answer {
            self.count_grant(session);
        }
        Some(answer)
    }

    /// Unlocks `lock` on `session`, waiting for the server's answer;
    /// [`Error::LockLost`] if the session did not hold it.
    pub(super) async fn unlock(
        &self,
        session: &Arc<Session>,
        lock: &AdvisoryLock,
    ) -> Result<(), Error> {
        let Some(batcher) = self.unlocking(session) else {
            return session.unlock(lock).await;
        };
        match batcher.unlock(lock).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Err(error)) => Err(error),
            Ok(Ok(false)) | Err(_) => Err(Error::LockLost {
                lock: lock.id().clone(),
            }),
        }
    }

    /// Unlocks `lock` on `session` without making the caller wait: queued now, in
    /// order with everything sent on the session before (see
    /// [`release::unlock_in_background`] for a session that is not a lock session).
    pub(super) fn unlock_in_background(&self, session: Arc<Session>, lock: AdvisoryLock) {
        match self.unlocking(&session) {
            // The answer is the batch task's to log when it fails.
            Some(batcher) => drop(batcher.unlock(&lock)),
            // A connection of its own, which held this one lock: parked for the
            // next wait in the server, which reads the unlock's reply.
            None => {
                if let Err(session) = release::park_alone(session, &lock) {
                    release::unlock_in_background(session, lock);
                }
            }
        }
    }

    /// Counts one lock fewer on `session`'s slot; its batches, for a lock session.
    fn unlocking(&self, session: &Arc<Session>) -> Option<Batcher> {
        let (slot, batcher) = self.slot_of(session)?;
        slot.count_one_fewer();
        Some(batcher)
    }
}

impl Slot {
    /// One lock fewer on this slot's session. Saturating: a slot whose session was
    /// replaced meanwhile started again from 0.
    fn count_one_fewer(&self) {
        let _saturated = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// Runs `then` once `session` is lost; not if its watch ends without a loss, or
/// the session is dropped first.
fn when_lost(
    session: &Arc<Session>,
    how: Watch,
    then: impl FnOnce(&Arc<Session>) + Send + 'static,
) {
    let loss = session.watch_for_loss(how);
    let (lost, retired) = (loss.token(), loss.retired());
    let session = Arc::downgrade(session);
    // No runtime, no watcher: the session is not watched either.
    spawn_or_drop(async move {
        tokio::select! {
            () = lost.cancelled() => {}
            () = retired.cancelled() => return,
        }
        if let Some(session) = session.upgrade() {
            then(&session);
        }
    });
}

/// An open lock session, and the way into its batches.
#[derive(Clone)]
struct Open {
    session: Arc<Session>,
    batcher: Batcher,
}

/// The slot's session, if it is open and alive.
fn current(slot: &Slot) -> Option<Open> {
    let open = lock_unpoisoned(&slot.current);
    open.as_ref()
        .filter(|open| open.session.is_reusable())
        .cloned()
}
