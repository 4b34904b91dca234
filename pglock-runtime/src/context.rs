//! What the current task holds: the locks of the enclosing annotated bodies, so that
//! a nested acquisition can refuse to wait for its own key and can take its lock on
//! the outermost lock's session (where PostgreSQL's deadlock detector sees it); and
//! which body that is, so a Locker can tell which body holds a key and which waits.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::{AdvisoryLock, LockMode};
use crate::patience::Patience;
use crate::scope::PoolId;
use crate::session::Session;

tokio::task_local! {
    static HELD: Held;
}

/// The locks held by the bodies enclosing the current point of a task, innermost first.
#[derive(Clone, Default)]
pub struct Held(Option<Arc<Entry>>);

/// One run of an annotated body, unique in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BodyId(u64);

/// Something registered for as long as a body runs (a Locker's record of what the
/// body holds), ended by dropping it.
pub(crate) type Registration = Box<dyn Send + Sync>;

struct Entry {
    body: BodyId,
    key: LockKey,
    mode: LockMode,
    /// The session the lock lives on, and the pool it came from.
    home: Option<(PoolId, Arc<Session>)>,
    /// Dropped with the entry, when the body's future ends.
    _registration: Option<Registration>,
    outer: Held,
}

impl Held {
    /// What the current task holds (nothing outside any scope).
    pub(crate) fn current() -> Held {
        HELD.try_with(Held::clone).unwrap_or_default()
    }

    /// Whether an enclosing body holds `lock`'s key in a mode that excludes it.
    fn conflicts_with(&self, lock: &AdvisoryLock) -> bool {
        self.entries()
            .any(|e| e.key == lock.key() && !e.mode.compatible(lock.mode()))
    }

    /// Refuses `lock` when an enclosing body holds its key in a mode that excludes
    /// it: that lock is this task's own, so waiting for it would never end
    /// ([`Error::WouldDeadlock`]), and a try would find it taken ([`Error::Busy`]).
    pub(crate) fn refuse_conflict(
        &self,
        lock: &AdvisoryLock,
        patience: Patience,
    ) -> Result<(), Error> {
        if !self.conflicts_with(lock) {
            return Ok(());
        }
        let lock = lock.id().clone();
        Err(if patience.waits() {
            Error::WouldDeadlock { lock }
        } else {
            Error::Busy { lock }
        })
    }

    /// The session of an enclosing lock taken from `pool_id`, if any.
    pub(crate) fn session_of(&self, pool_id: PoolId) -> Option<Arc<Session>> {
        self.entries().find_map(|e| match &e.home {
            Some((id, session)) if *id == pool_id => Some(session.clone()),
            _ => None,
        })
    }

    /// This set plus one lock.
    pub(crate) fn with(&self, lock: &AdvisoryLock, home: Option<(PoolId, Arc<Session>)>) -> Held {
        self.with_registered(lock, home, |_| None)
    }

    /// This set plus one lock, held by a new body for which `register` records
    /// something that lasts as long as the body runs.
    pub(crate) fn with_registered(
        &self,
        lock: &AdvisoryLock,
        home: Option<(PoolId, Arc<Session>)>,
        register: impl FnOnce(BodyId) -> Option<Registration>,
    ) -> Held {
        static NEXT_BODY: AtomicU64 = AtomicU64::new(1);
        let body = BodyId(NEXT_BODY.fetch_add(1, Ordering::Relaxed));
        Held(Some(Arc::new(Entry {
            body,
            key: lock.key(),
            mode: lock.mode(),
            home,
            _registration: register(body),
            outer: self.clone(),
        })))
    }

    /// The bodies enclosing the current point, innermost first: a wait here keeps
    /// every one of them from ending.
    pub(crate) fn bodies(&self) -> Vec<BodyId> {
        self.entries().map(|e| e.body).collect()
    }

    /// Each enclosing body with the key it holds and, for a lock taken from a pool,
    /// the session it lives on (a Locker's sessions are known to the Locker only).
    pub(crate) fn holds(&self) -> Vec<(BodyId, LockKey, Option<Arc<Session>>)> {
        self.entries()
            .map(|e| (e.body, e.key, e.home.as_ref().map(|(_, s)| s.clone())))
            .collect()
    }

    /// Runs `body` with this set as what the task holds.
    pub(crate) async fn scope<F: Future>(self, body: F) -> F::Output {
        HELD.scope(self, body).await
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        std::iter::successors(self.0.as_deref(), |e| e.outer.0.as_deref())
    }
}
