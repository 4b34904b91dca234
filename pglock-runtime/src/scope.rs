//! `Scope`: who takes locks on a session, a pool or a Locker. Queued unlocks are
//! found again only within the scope that queued them, and a nested lock joins an
//! enclosing lock's session only when both come from the same pool.

use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_postgres::Pool;

/// A pool's identity: the address of its shared manager. Sound as an identity
/// because every session keeps a clone of its pool: while anything that carries a
/// `PoolId` can still reach a session (a guard, a queued unlock, an enclosing
/// body), the pool is alive and no other pool can live at that address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolId(usize);

impl PoolId {
    pub(crate) fn of(pool: &Pool) -> Self {
        PoolId(pool.manager() as *const deadpool_postgres::Manager as usize)
    }
}

/// A Locker's identity, from a process-wide counter: never reused, so a Locker
/// built where a dropped one lived cannot pick up that one's sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LockerId(u64);

impl LockerId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        LockerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Who takes locks on a session: its pool, or the Locker that keeps it (a Locker's
/// sessions are not shared with its pool's other users).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Pool(PoolId),
    Locker(LockerId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locker_ids_are_never_reused() {
        assert_ne!(LockerId::next(), LockerId::next());
    }
}
