//! Cycles through a task that waits *in its own process*, behind the one task of
//! that process that waits in the server for the same key.
//!
//! Only waits in the server announce their holds (see `across`). A task that holds
//! a key and queues in the process for another one, behind this process's server
//! wait for it, is invisible there: a cycle through its holds is seen by no
//! announcing waiter. So such a task checks for itself, past `deadlock_timeout` and
//! then every `deadlock_timeout`: its holds, in memory, stand in for an
//! announcement, and the server wait it queues behind (its *proxy*) for its wait.
//! Nobody else can see a cycle that closes through holds no one announces, so when
//! it finds one it gives up itself, and its proxy waits on.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;

use super::across::{check, deadlock, Settings};
use super::announce::Announced;
use super::{backend_of, Deadlocks};
use crate::context::Held;
use crate::drop_guard::DropGuard;
use crate::error::Error;
use crate::key::LockKey;
use crate::lock::AdvisoryLock;
use crate::mutex::lock_unpoisoned;
use crate::patience::Patience;
use crate::session::Session;

type ByKey = Mutex<HashMap<LockKey, Weak<Session>>>;

/// This Locker's waits in the server, by key: at most one per key, the table's
/// asker.
#[derive(Default)]
pub(super) struct InServer(Arc<ByKey>);

/// A server wait known to [`InServer`] until dropped.
pub(super) struct Known {
    _entry: Option<DropGuard<Entry>>,
}

struct Entry {
    waits: Weak<ByKey>,
    key: LockKey,
    session: Weak<Session>,
}

impl InServer {
    /// `session` waits in the server for `lock`, until the returned value is
    /// dropped; nothing is kept when detection is off.
    pub(super) fn waits(&self, lock: &AdvisoryLock, session: &Arc<Session>, on: bool) -> Known {
        if !on {
            return Known { _entry: None };
        }
        let session = Arc::downgrade(session);
        lock_unpoisoned(&self.0).insert(lock.key(), session.clone());
        let entry = Entry {
            waits: Arc::downgrade(&self.0),
            key: lock.key(),
            session,
        };
        Known {
            _entry: Some(DropGuard::new(entry, forget)),
        }
    }

    fn of(&self, key: LockKey) -> Option<Arc<Session>> {
        lock_unpoisoned(&self.0).get(&key)?.upgrade()
    }
}

/// The wait ended: forgotten, unless a later wait for the key took its place.
fn forget(entry: Entry) {
    let Some(waits) = entry.waits.upgrade() else {
        return;
    };
    let mut waits = lock_unpoisoned(&waits);
    if waits
        .get(&entry.key)
        .is_some_and(|s| s.ptr_eq(&entry.session))
    {
        waits.remove(&entry.key);
    }
}

/// Until the first server wait is seen, how often to look for one.
const UNTIL_SEEN: Duration = Duration::from_millis(100);

impl Deadlocks {
    /// Runs `waiting`, a wait in the process for `lock` by the task holding `held`;
    /// fails it with [`Error::Deadlock`] if it closes a cycle through the server that
    /// only it can see.
    pub(in crate::locker) async fn wait_behind<T>(
        &self,
        pool: &Pool,
        held: &Held,
        lock: &AdvisoryLock,
        patience: Patience,
        waiting: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let holds = self.holds_of(held);
        if holds.is_empty() || !patience.waits() {
            return waiting.await;
        }
        let holds: HashSet<Announced> = holds.into_iter().collect();
        let watch = self.watch_behind(pool, lock, holds);
        tokio::select! {
            biased;
            waited = waiting => waited,
            deadlock = Box::pin(watch) => Err(deadlock),
        }
    }

    /// Checks every `deadlock_timeout` (once a proxy is known) until a cycle through
    /// `holds` is found.
    async fn watch_behind(
        &self,
        pool: &Pool,
        lock: &AdvisoryLock,
        holds: HashSet<Announced>,
    ) -> Error {
        let mut period: Option<Settings> = None;
        loop {
            tokio::time::sleep(period.map_or(UNTIL_SEEN, |s| s.deadlock_timeout)).await;
            let Some(proxy) = self.in_server.of(lock.key()) else {
                continue;
            };
            // Not on the proxy's session: it is busy waiting.
            let Some(settings) = self.settings_from(pool).await else {
                continue;
            };
            if period.replace(settings).is_none() {
                // The first period starts once a proxy exists.
                continue;
            }
            let Some(pid) = backend_of(&proxy) else {
                continue;
            };
            let Ok(waits) = check(pool, settings.deadlock_timeout).await else {
                // The proxy's own check warns when checks fail; this one tries again.
                continue;
            };
            if let Some(cycle) = waits.cycle_behind(pid, &holds) {
                return deadlock(lock, &waits, &cycle);
            }
        }
    }

    /// The server's settings, read once, on a pooled connection if not read yet.
    async fn settings_from(&self, pool: &Pool) -> Option<Settings> {
        if let Some(settings) = self.settings.get() {
            return Some(*settings);
        }
        let client = tokio::time::timeout(Duration::from_secs(1), pool.get()).await;
        let client = client.ok()?.ok()?;
        Some(self.settings(&client).await)
    }
}
