//! Lock sources: where the acquire methods take a lock. `&Pool` gives a session of
//! its own ([`LockGuard`]); `&Locker` a share of a few sessions.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::context::Held;
use crate::error::Error;
use crate::guard::LockGuard;
use crate::lock::AdvisoryLock;
use crate::release;
use crate::session::{pool_id, Session};
use crate::wait::wait_for;

mod sealed {
    pub trait Sealed {}
    impl Sealed for deadpool_postgres::Pool {}
    impl Sealed for crate::Locker {}
}

/// Something locks can be taken from: a [`Pool`] or a [`Locker`](crate::Locker).
/// Callers never name it: they pass `&pool` or `&locker` to
/// [`AdvisoryLock::try_acquire`] and friends.
pub trait LockSource: sealed::Sealed + Sync {
    /// What holding a lock from this source looks like.
    type Guard: Send + Sync + 'static;

    /// Takes `lock` if free, else [`Error::Busy`].
    fn try_lock<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
    ) -> impl Future<Output = Result<Self::Guard, Error>> + Send + 'a;

    /// Waits for `lock`, for at most `limit` if given.
    fn lock<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
        limit: Option<Duration>,
    ) -> impl Future<Output = Result<Self::Guard, Error>> + Send + 'a;
}

/// The session a lock from `pool` is taken on: the one an enclosing lock of the task
/// lives on (so the server's deadlock detector sees nested waits), else one with
/// an unlock of this key still queued (so the request runs after it), else a fresh
/// one from the pool.
async fn session_for(pool: &Pool, held: &Held, lock: &AdvisoryLock) -> Result<Arc<Session>, Error> {
    let id = pool_id(pool);
    if let Some(session) = held.session_of(id) {
        return Ok(session);
    }
    if let Some(session) = release::take_session_for(id, lock.key()) {
        return Ok(session);
    }
    Session::checkout(pool, lock).await
}

impl LockSource for Pool {
    type Guard = LockGuard;

    async fn try_lock<'a>(&'a self, lock: &'a AdvisoryLock) -> Result<LockGuard, Error> {
        let held = Held::current();
        if held.conflicts_with(lock) {
            return Err(Error::Busy {
                lock: lock.id().clone(),
            });
        }
        let session = session_for(self, &held, lock).await?;
        if session.try_lock(lock).await? {
            Ok(LockGuard::new(session, lock.clone()))
        } else {
            Err(Error::Busy {
                lock: lock.id().clone(),
            })
        }
    }

    async fn lock<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
        limit: Option<Duration>,
    ) -> Result<LockGuard, Error> {
        let held = Held::current();
        if held.conflicts_with(lock) {
            return Err(Error::WouldDeadlock {
                lock: lock.id().clone(),
            });
        }
        let session = session_for(self, &held, lock).await?;
        wait_for(&session, lock, limit).await?;
        Ok(LockGuard::new(session, lock.clone()))
    }
}
