//! Lock sources: where the acquire methods take a lock. `&Pool` gives a session of
//! its own ([`LockGuard`]); `&Locker` a share of a few sessions.

use std::future::Future;

use deadpool_postgres::{Pool, PoolError, TimeoutType};

use crate::context::Held;
use crate::error::Error;
use crate::fence;
use crate::guard::LockGuard;
use crate::lock::AdvisoryLock;
use crate::patience::Patience;
use crate::release;
use crate::scope::{PoolId, Scope};
use crate::session::{Reserved, Session};
use crate::sql::{self, Op};
use crate::wait::wait_for;

mod tries;

/// Only this crate's sources: `Pool` here, `Locker` beside its own type (so this
/// module needs nothing from the Locker, which builds on it).
pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for deadpool_postgres::Pool {}
}

/// Something locks can be taken from: a [`Pool`] or a [`Locker`](crate::Locker).
/// Callers never name it: they pass `&pool` or `&locker` to
/// [`AdvisoryLock::try_acquire`] and friends.
pub trait LockSource: sealed::Sealed + Sync {
    /// What holding a lock from this source looks like.
    type Guard: Send + Sync + 'static + crate::trace::Observed;

    /// Takes `lock` as `patience` says: [`Error::Busy`] at once when it only tries,
    /// [`Error::Timeout`] when its limit runs out.
    fn lock<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
        patience: Patience,
    ) -> impl Future<Output = Result<Self::Guard, Error>> + Send + 'a;
}

/// A session reserved for a lock's key, and how it was found.
enum Chosen {
    /// Fresh from the pool, or the one an enclosing lock of the task lives on.
    Own(Reserved),
    /// Kept by the release of this process's last guard on it: our own unlock (or,
    /// for a parked session, its reply) may still be on its way, and a request sent
    /// here runs after it.
    Reused(Reserved),
}

impl Chosen {
    fn reserved(&self) -> &Reserved {
        match self {
            Chosen::Own(reserved) | Chosen::Reused(reserved) => reserved,
        }
    }

    fn into_reserved(self) -> Reserved {
        match self {
            Chosen::Own(reserved) | Chosen::Reused(reserved) => reserved,
        }
    }
}

/// The session a lock from `pool` is taken on, reserved for its key: the one an
/// enclosing lock of the task lives on (so the server's deadlock detector sees
/// nested waits), else one with an unlock of this key still queued and no other
/// lock on it (so the request runs after that unlock), else a fresh one from the
/// pool (for a try, only if a connection is free now). A session where someone of
/// ours already holds the key is never used for it: the server would grant it
/// again there, to a second holder.
async fn session_for(
    pool: &Pool,
    held: &Held,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<Chosen, Error> {
    let id = PoolId::of(pool);
    if let Some(reserved) = held.session_of(id).and_then(|s| s.reserve(lock)) {
        return Ok(Chosen::Own(reserved));
    }
    if let Some(session) = release::take_pool_session_for(Scope::Pool(id), lock) {
        // A try waits for nothing but its own round trip: not behind a statement
        // still running before the unlock (the session then still holds the key, so
        // a fresh session answers Busy, rightly).
        let unlock = sql::statement(Op::Unlock, lock);
        if patience.waits() || Box::pin(session.runs_at_most(&unlock)).await {
            if let Some(reserved) = session.reserve_alone(lock) {
                return Ok(Chosen::Reused(reserved));
            }
        }
    }
    Ok(Chosen::Own(fresh_session(pool, lock, patience).await?))
}

/// A session of its own from `pool`: a try takes one only if it is free now.
async fn fresh_session(
    pool: &Pool,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<Reserved, Error> {
    let session = if patience.waits() {
        Session::checkout(pool, lock).await?
    } else {
        match Session::checkout_if_free(pool, lock).await {
            Ok(session) => session,
            Err(
                error @ Error::Pool {
                    source: PoolError::Timeout(TimeoutType::Wait),
                    ..
                },
            ) => {
                let scope = Scope::Pool(PoolId::of(pool));
                let grace = tries::OWN_ANSWER_GRACE;
                release::take_settled_pool_session(scope, lock, grace)
                    .await
                    .ok_or(error)?
            }
            Err(error) => return Err(error),
        }
    };
    Ok(session
        .reserve(lock)
        .expect("a fresh session holds nothing"))
}

impl LockSource for Pool {
    type Guard = LockGuard;

    async fn lock<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
        patience: Patience,
    ) -> Result<LockGuard, Error> {
        let held = Held::current();
        held.refuse_conflict(lock, patience)?;
        let chosen = patience
            .bound(lock, session_for(self, &held, lock, patience))
            .await?;
        let reserved = if patience.waits() {
            wait_for(chosen.reserved().session(), lock, patience).await?;
            chosen.into_reserved()
        } else {
            tries::answer(self, chosen, lock)
                .await?
                .ok_or_else(|| Error::Busy {
                    lock: lock.id().clone(),
                })?
        };
        let mut guard = LockGuard::new(reserved, lock.clone());
        fence::take_if_fenced(&mut guard).await?;
        Ok(guard)
    }
}
