//! The state of the `held` group: [`HELD`] locks held through `ctx.held_many` for
//! the whole group, beside `ctx.held_none` holding nothing. The setup takes them
//! before the first round and checks, in `pg_locks` and in the Locker's own count,
//! that they are held (all on the one lock session, none on the other Locker); the
//! teardown gives them back and checks `pg_locks` shows none of them.

use pglock::{AdvisoryLock, LockKey, LockerGuard};
use tokio::task::JoinSet;

use crate::env::Ctx;
use crate::harness::Teardown;

/// Locks that stay held while the `held` group's tasks take and give back theirs
/// (issue 13: "while 5,000 other locks stay held").
pub const HELD: usize = 5000;

/// Of `keys`, how many `pg_locks` shows granted, and on how many backends.
const GRANTED: &str = "SELECT count(*), count(DISTINCT pid) FROM pg_locks \
     WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
     AND ((classid::int8 << 32) | objid::int8) = ANY($1::int8[])";

fn bigint(lock: &AdvisoryLock) -> i64 {
    match lock.key() {
        LockKey::BigInt(k) => k,
        LockKey::Pair(..) => unreachable!("names map to bigint keys"),
    }
}

/// `(granted, backends)` of `keys`, from `pg_locks`.
async fn granted(ctx: &Ctx, keys: &[i64]) -> (i64, i64) {
    let client = ctx.pool.get().await.expect("an observer connection");
    let row = client.query_one(GRANTED, &[&keys]).await.expect("pg_locks");
    (row.get(0), row.get(1))
}

/// Takes the [`HELD`] locks through `ctx.held_many` (at once: one task per key, so
/// their requests are batched), checks they are held, and gives the teardown.
pub async fn hold(ctx: Ctx) -> Teardown {
    assert_eq!(ctx.held_none.keys_in_use(), 0, "held_none holds nothing");
    assert_eq!(ctx.held_many.keys_in_use(), 0, "held_many starts empty");
    let locks: Vec<AdvisoryLock> = (0..HELD)
        .map(|i| AdvisoryLock::new(ctx.name(&format!("held/other/{i}"))))
        .collect();
    let keys: Vec<i64> = locks.iter().map(bigint).collect();
    let mut tasks = JoinSet::new();
    for lock in locks {
        let ctx = ctx.clone();
        tasks.spawn(async move { lock.try_acquire(&ctx.held_many).await.expect("a free key") });
    }
    let guards: Vec<LockerGuard> = tasks.join_all().await;
    assert_eq!(ctx.held_many.keys_in_use(), HELD, "the Locker counts them");
    assert_eq!(
        ctx.held_many.locks_per_session(),
        vec![HELD],
        "on its one session"
    );
    assert_eq!(
        granted(&ctx, &keys).await,
        (HELD as i64, 1),
        "pg_locks shows every one granted, on one backend"
    );
    Box::pin(release(ctx, guards, keys))
}

/// Gives back what [`hold`] took, and checks the server holds none of it.
async fn release(ctx: Ctx, guards: Vec<LockerGuard>, keys: Vec<i64>) {
    assert_eq!(
        granted(&ctx, &keys).await,
        (HELD as i64, 1),
        "still every one granted, on one backend, after the rounds"
    );
    let mut tasks = JoinSet::new();
    for guard in guards {
        tasks.spawn(async move { guard.release().await.expect("released") });
    }
    tasks.join_all().await;
    assert_eq!(ctx.held_many.keys_in_use(), 0, "the Locker holds none");
    assert_eq!(granted(&ctx, &keys).await.0, 0, "pg_locks shows none");
}
