//! The Locker's lock sessions: a few connections from the pool, each holding the
//! locks of many tasks. Key k lives on session `hash(k) % n`, opened at first use,
//! replaced when it is lost.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, Weak};

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::AdvisoryLock;
use crate::loss::Watch;
use crate::mutex::lock_unpoisoned;
use crate::release;
use crate::scope::{LockerId, Scope};
use crate::session::Session;
use crate::spawn::spawn_or_drop;

use super::table::Table;
use super::Inner;

pub(super) struct Sessions {
    slots: Vec<Slot>,
    /// The Locker's identity: queued unlocks are found again only by this Locker.
    scope: Scope,
    hasher: std::collections::hash_map::RandomState,
}

struct Slot {
    session: Mutex<Option<Arc<Session>>>,
    /// Held while a session is being opened, so concurrent first users open one.
    opening: tokio::sync::Mutex<()>,
}

impl Sessions {
    pub(super) fn new(count: usize) -> Self {
        Sessions {
            slots: (0..count)
                .map(|_| Slot {
                    session: Mutex::new(None),
                    opening: tokio::sync::Mutex::new(()),
                })
                .collect(),
            scope: Scope::Locker(LockerId::next()),
            hasher: Default::default(),
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

    /// The session to ask for `lock` on: the one where an unlock of its key is still
    /// queued (so the request runs after it), else the key's lock session.
    pub(super) async fn for_key(
        &self,
        locker: &Inner,
        lock: &AdvisoryLock,
    ) -> Result<Arc<Session>, Error> {
        if let Some(session) = release::take_session_for(self.scope, lock.key()) {
            return Ok(session);
        }
        let slot = &self.slots[self.slot_of(lock.key())];
        if let Some(session) = current(slot) {
            return Ok(session);
        }
        let _opening = slot.opening.lock().await;
        if let Some(session) = current(slot) {
            return Ok(session);
        }
        let session = Session::checkout_for(&locker.pool, lock, self.scope).await?;
        // Watch it from the start: its loss must reach every guard on it at once,
        // and end the table's episodes on it.
        forget_keys_when_lost(&session, locker.watch(), Arc::downgrade(&locker.table));
        *lock_unpoisoned(&slot.session) = Some(session.clone());
        Ok(session)
    }

    fn slot_of(&self, key: LockKey) -> usize {
        (self.hasher.hash_one(key) % self.slots.len() as u64) as usize
    }
}

/// When `session` is lost, ends the table's episodes on it, so the tasks waiting for
/// those keys ask the server anew instead of waiting for holders that hold nothing.
fn forget_keys_when_lost(session: &Arc<Session>, how: Watch, table: Weak<Mutex<Table>>) {
    let loss = session.watch_for_loss(how);
    let (lost, retired) = (loss.token(), loss.retired());
    let session = Arc::downgrade(session);
    // No runtime, no watcher: the session is not watched either.
    spawn_or_drop(async move {
        tokio::select! {
            () = lost.cancelled() => {}
            () = retired.cancelled() => return,
        }
        if let (Some(session), Some(table)) = (session.upgrade(), table.upgrade()) {
            let me = Arc::downgrade(&table);
            lock_unpoisoned(&table).session_lost(&session, &me);
        }
    });
}

/// The slot's session, if it is open and alive.
fn current(slot: &Slot) -> Option<Arc<Session>> {
    let session = lock_unpoisoned(&slot.session);
    session.as_ref().filter(|s| s.is_reusable()).cloned()
}
