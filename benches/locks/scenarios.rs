//! The table of scenarios: every group with its baseline first.
//!
//! Adding a scenario is one `.scenario(...)` (or `.info(...)`) line in [`groups`] and an
//! `async fn` below with the shape of its group:
//! - latency: `async fn(ctx: Ctx, calls: usize)` runs `calls` locked calls in a row;
//! - throughput: `async fn(ctx: Ctx, deadline: Instant) -> u64` runs its tasks until
//!   `deadline` and returns how many locked calls completed.
//!
//! Each workload takes a key of its own (`ctx.name("group/id")`), so that a queued
//! unlock left by one member's batch never makes the next member's first call busy.
//! (The attribute's literal keys are fixed at compile time, so they are the same in
//! every bench process: two runs at once on one `DATABASE_URL` would collide on them.)
//! `Locker` scenarios are members of these groups, beside the same baselines; what
//! holding thousands of keys at once costs is in `capacity.rs`.

use std::future::Future;
use std::task::{Context, Waker};
use std::time::Instant;

use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, Locker};
use sqlx::postgres::{PgAdvisoryLock, PgAdvisoryLockKey};

use crate::env::Ctx;
use crate::harness::{latency, setup, throughput, Group, Target};
use crate::held;

/// The limit of the latency groups: what one pooled round trip costs here.
const SELECT1: &str =
    "pool.get + prepared `SELECT 1`: one round trip, no lock (the physical limit of a locked call)";

/// Every group, with the targets of issue 13 (ratios of medians in one run).
pub fn groups() -> Vec<Group> {
    vec![
        Group::latency("uncontended", "one task, one key, nobody else; try, no wait")
            .baseline(
                "raw",
                "pool.get + prepared `pg_try_advisory_lock($1)`, then `pg_advisory_unlock($1)`, each awaited (2 round trips)",
                latency!(raw_try),
            )
            .limit(
                "select1",
                SELECT1,
                latency!(select1),
            )
            .info(
                "raw_pipelined",
                "one pooled client; the unlock sent without awaiting it, its reply read with the next try's (1 round trip)",
                latency!(raw_try_pipelined),
            )
            .scenario(
                "runtime",
                "`AdvisoryLock::try_acquire(&pool)` + `guard.release()`",
                latency!(runtime_try_release),
                Target::AtMost(1.05),
            )
            .scenario(
                "runtime_drop",
                "`try_acquire` + drop the guard (the unlock is queued: what the attribute does)",
                latency!(runtime_try_drop),
                Target::AtMost(0.60),
            )
            .scenario(
                "attribute",
                "empty `#[advisory_locked(key = \"...\")]` fn, literal key (hashed at compile time), lock from the `&Pool` argument",
                latency!(attribute_literal),
                Target::AtMost(0.60),
            )
            .scenario(
                "attribute_template",
                "empty `#[advisory_locked(key = \"job:{a}:{b}\")]` fn, key formatted from two arguments (a `&str`, a `u32`) and hashed per call",
                latency!(attribute_template),
                Target::AtMost(0.60),
            )
            .scenario(
                "locker",
                "`try_acquire(&locker)` + `release()` (Locker with 2 lock sessions: no pool checkout; the release awaits its unlock)",
                latency!(locker_try_release),
                Target::AtMost(0.65),
            )
            .scenario(
                "locker_drop",
                "`try_acquire(&locker)` + drop (unlock queued on the lock session)",
                latency!(locker_try_drop),
                Target::AtMost(0.65),
            )
            // The floor a queued unlock can reach: hand-written pipelining on one
            // kept client. Per round, so phases that slow only pool checkouts (which
            // raw and runtime pay, raw_pipelined and runtime_drop mostly not) cancel.
            .near_limit("runtime_drop", Target::AtMost(1.10))
            .near_limit("attribute", Target::AtMost(1.10))
            .near_limit("attribute_template", Target::AtMost(1.10))
            .check("runtime_drop", "raw_pipelined", 1.0, false)
            .check("attribute", "raw_pipelined", 1.0, false),
        Group::latency("wait_uncontended", "one task, one key, nobody else; wait")
            .baseline(
                "raw",
                "pool.get + prepared `pg_advisory_lock($1)`, then `pg_advisory_unlock($1)`, each awaited (2 round trips)",
                latency!(raw_wait),
            )
            .limit("select1", SELECT1, latency!(select1))
            .scenario(
                "runtime",
                "`AdvisoryLock::acquire(&pool)` + `guard.release()`",
                latency!(runtime_wait_release),
                Target::AtMost(1.05),
            )
            .scenario(
                "runtime_drop",
                "`acquire` + drop the guard (unlock queued)",
                latency!(runtime_wait_drop),
                Target::AtMost(0.60),
            )
            .scenario(
                "attribute",
                "empty `#[advisory_locked(wait, key = \"...\")]` fn, literal key, lock from the `&Pool` argument",
                latency!(attribute_wait),
                Target::AtMost(0.60),
            )
            .info(
                "locker_drop",
                "`acquire(&locker)` + drop (the Locker tries first; nobody holds the key, so that is the one request)",
                latency!(locker_wait_drop),
            )
            .info(
                "sqlx",
                "sqlx 0.8: `pool.acquire()` + `PgAdvisoryLock::acquire` + `release_now` (pool pings the connection on checkout, its default)",
                latency!(sqlx_pool),
            )
            .info(
                "sqlx_conn_kept",
                "sqlx 0.8: one connection kept for the batch; `acquire` + `release_now`",
                latency!(sqlx_conn_kept),
            )
            .near_limit("runtime_drop", Target::AtMost(1.10))
            .near_limit("attribute", Target::AtMost(1.10))
            .check("runtime_drop", "sqlx", 2.0, true)
            .check("attribute", "sqlx", 2.0, true)
            .check("runtime", "sqlx", 2.0, false),
        Group::throughput("contended", "4 tasks, one key, wait; locked calls (handoffs) per second")
            .baseline(
                "raw",
                "4 tasks, each its own pooled client: `pg_advisory_lock($1)` then `pg_advisory_unlock($1)`",
                throughput!(raw_contended),
            )
            .info(
                "raw_checkout",
                "as `raw`, but each call takes its client from the pool and gives it back, as any lock from a pool must",
                throughput!(raw_contended_checkout),
            )
            .scenario(
                "runtime",
                "4 tasks: `acquire(&pool)` + `release()`",
                throughput!(runtime_contended_release),
                Target::AtLeast(0.9),
            )
            .scenario(
                "runtime_drop",
                "4 tasks: `acquire(&pool)` + drop (unlock queued)",
                throughput!(runtime_contended_drop),
                Target::AtLeast(0.9),
            )
            .scenario(
                "attribute",
                "4 tasks calling an empty `#[advisory_locked(wait, key = \"...\")]` fn (lock from the `&Pool` argument)",
                throughput!(attribute_contended),
                Target::AtLeast(1.0),
            ),
        Group::throughput(
            "contended16",
            "16 tasks of one process, one key, wait; locked calls (handoffs) per second",
        )
        .baseline(
            "raw",
            "16 tasks, each its own pooled client: `pg_advisory_lock($1)` then `pg_advisory_unlock($1)` (the server's queue)",
            throughput!(raw_contended16),
        )
        .info(
            "runtime",
            "16 tasks: `acquire(&pool)` + `release()` (each waits on a pooled connection, in the server's queue)",
            throughput!(runtime_contended16),
        )
        .scenario(
            "locker",
            "16 tasks: `acquire(&locker)` + `release()` (waiters queue in the process; default handoff limit 16)",
            throughput!(locker_contended16_release),
            Target::AtLeast(10.0),
        )
        .scenario(
            "locker_drop",
            "16 tasks: `acquire(&locker)` + drop",
            throughput!(locker_contended16_drop),
            Target::AtLeast(10.0),
        )
        .info(
            "locker_undetected",
            "as `locker`, on a Locker built with `deadlock_detection(false)` (issue 14: what checking for deadlocks costs, read in the same rounds)",
            throughput!(locker_contended16_undetected),
        )
        .info(
            "locker_drop_undetected",
            "as `locker_drop`, on the Locker without deadlock detection",
            throughput!(locker_contended16_drop_undetected),
        )
        .versus("locker", "locker_undetected", Target::AtLeast(0.95))
        .versus("locker_drop", "locker_drop_undetected", Target::AtLeast(0.95)),
        Group::throughput("distinct_keys", "16 tasks, 16 keys (one each), try; locked calls per second")
            .baseline(
                "raw",
                "16 tasks: pool.get + prepared try, then unlock, each awaited (16 connections)",
                throughput!(raw_distinct),
            )
            .scenario(
                "runtime",
                "16 tasks: `try_acquire(&pool)` + `release()`",
                throughput!(runtime_distinct_release),
                Target::AtLeast(0.9),
            )
            .scenario(
                "runtime_drop",
                "16 tasks: `try_acquire(&pool)` + drop (unlock queued)",
                throughput!(runtime_distinct_drop),
                Target::AtLeast(0.9),
            )
            .scenario(
                "attribute",
                "16 tasks calling an empty `#[advisory_locked(key = \"{prefix}{i}\")]` fn (lock from the `&Pool` argument)",
                throughput!(attribute_distinct),
                Target::AtLeast(0.9),
            )
            .scenario(
                "locker_1s",
                "16 tasks: `try_acquire(&locker)` + `release()`, Locker with **one** lock session (`sessions(1)`)",
                throughput!(locker_distinct_release),
                Target::AtLeast(3.0),
            )
            .scenario(
                "locker_1s_drop",
                "16 tasks: `try_acquire(&locker)` + drop, the same one-session Locker",
                throughput!(locker_distinct_drop),
                Target::AtLeast(3.0),
            ),
        Group::throughput(
            "held",
            "16 tasks, 16 keys (one each), try, through a Locker with one lock session, with and without 5,000 other locks held on it; locked calls per second",
        )
        .baseline(
            "none_held",
            "16 tasks: `try_acquire(&locker)` + `release()`; the Locker (`sessions(1)`) holds nothing else",
            throughput!(held_none_release),
        )
        .scenario(
            "held5000",
            "the same on a Locker alike (`sessions(1)`) through which 5,000 other locks stay held, on the one session that serves the 16 tasks (taken before the rounds, checked in `pg_locks` and `keys_in_use()`)",
            throughput!(held_many_release),
            Target::AtLeast(0.5),
        )
        .info(
            "none_held_drop",
            "16 tasks: `try_acquire(&locker)` + drop (unlock queued), the Locker holding nothing else",
            throughput!(held_none_drop),
        )
        .info(
            "held5000_drop",
            "the same drop, with the 5,000 other locks held",
            throughput!(held_many_drop),
        )
        .versus("held5000_drop", "none_held_drop", Target::AtLeast(0.5))
        .setup(setup!(held::hold)),
        Group::throughput(
            "nested",
            "two Lockers (two processes' worth), 8 tasks each: a body holding a key of its own waits inside for one shared key; locked calls per second",
        )
        .baseline(
            "undetected",
            "the same bodies on two Lockers built with `deadlock_detection(false)`",
            throughput!(nested_undetected),
        )
        .scenario(
            "detected",
            "the same bodies on two Lockers with deadlock detection on (the default): every wait is checked in the process, and every wait in the server announces its body's hold",
            throughput!(nested_detected),
            Target::AtLeast(0.95),
        ),
        Group::latency(
            "fence",
            "one task, one key, nobody else; try, with and without a fencing token (`fenced()`)",
        )
        .baseline(
            "raw",
            "pool.get + prepared `pg_try_advisory_lock($1)`, then `pg_advisory_unlock($1)`, each awaited (2 round trips)",
            latency!(raw_try_fence_group),
        )
        .limit("select1", SELECT1, latency!(select1))
        .info(
            "pool",
            "`try_acquire(&pool)` + `release()`, no token",
            latency!(pool_plain),
        )
        .info(
            "pool_fenced",
            "`fenced().try_acquire(&pool)` + `release()`: the token's statement after the grant (one more round trip, a WAL record and its flush)",
            latency!(pool_fenced),
        )
        .info(
            "locker",
            "`try_acquire(&locker)` + `release()`, no token",
            latency!(locker_plain),
        )
        .info(
            "locker_fenced",
            "`fenced().try_acquire(&locker)` + `release()`",
            latency!(locker_fenced),
        ),
    ]
}

// ---------------------------------------------------------------------------------
// The annotated fns. Their bodies are empty: what is measured is what the attribute
// adds around a body (take the lock, run the body under it, queue the unlock).
// ---------------------------------------------------------------------------------

#[advisory_locked(key = "pglock-bench/uncontended/attribute")]
async fn locked_literal(pool: &Pool) -> Result<(), pglock::Error> {
    Ok(())
}

#[advisory_locked(key = "job:{a}:{b}")]
async fn locked_template(pool: &Pool, a: &str, b: u32) -> Result<(), pglock::Error> {
    Ok(())
}

#[advisory_locked(wait, key = "pglock-bench/wait_uncontended/attribute")]
async fn locked_wait(pool: &Pool) -> Result<(), pglock::Error> {
    Ok(())
}

#[advisory_locked(wait, key = "pglock-bench/contended/attribute")]
async fn locked_contended(pool: &Pool) -> Result<(), pglock::Error> {
    Ok(())
}

#[advisory_locked(key = "{prefix}{i}")]
async fn locked_distinct(pool: &Pool, prefix: &str, i: usize) -> Result<(), pglock::Error> {
    Ok(())
}

async fn attribute_literal(ctx: Ctx, calls: usize) {
    for _ in 0..calls {
        locked_literal(&ctx.pool).await.unwrap();
    }
}

async fn attribute_template(ctx: Ctx, calls: usize) {
    let a = ctx.name("uncontended/attribute_template");
    for _ in 0..calls {
        locked_template(&ctx.pool, &a, 7).await.unwrap();
    }
}

async fn attribute_wait(ctx: Ctx, calls: usize) {
    for _ in 0..calls {
        locked_wait(&ctx.pool).await.unwrap();
    }
}

const TRY: &str = "SELECT pg_try_advisory_lock($1::int8)";
const WAIT: &str = "SELECT pg_advisory_lock($1::int8)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1::int8)";

/// One raw locked call on a client of `pool`: lock (`sql`), then unlock, each awaited.
async fn raw_call(pool: &Pool, sql: &str, key: i64) {
    let client = pool.get().await.unwrap();
    let lock = client.prepare_cached(sql).await.unwrap();
    let unlock = client.prepare_cached(UNLOCK).await.unwrap();
    let row = client.query_one(&lock, &[&key]).await.unwrap();
    if sql == TRY {
        assert!(row.get::<_, bool>(0), "raw try found {key} busy");
    }
    let freed: bool = client.query_one(&unlock, &[&key]).await.unwrap().get(0);
    assert!(freed);
}

async fn select1(ctx: Ctx, calls: usize) {
    for _ in 0..calls {
        let client = ctx.pool.get().await.unwrap();
        let one = client.prepare_cached("SELECT 1").await.unwrap();
        let one: i32 = client.query_one(&one, &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
}

async fn raw_try(ctx: Ctx, calls: usize) {
    let key = ctx.key("uncontended/raw");
    for _ in 0..calls {
        raw_call(&ctx.pool, TRY, key).await;
    }
}

async fn raw_wait(ctx: Ctx, calls: usize) {
    let key = ctx.key("wait_uncontended/raw");
    for _ in 0..calls {
        raw_call(&ctx.pool, WAIT, key).await;
    }
}

/// Sends what `future` has to send (its first poll), without waiting for a reply.
fn send_now<F: Future + Unpin>(future: &mut F) {
    let mut cx = Context::from_waker(Waker::noop());
    let answered = std::pin::Pin::new(future).poll(&mut cx).is_ready();
    assert!(!answered, "a query cannot be answered before it is sent");
}

async fn raw_try_pipelined(ctx: Ctx, calls: usize) {
    let key = ctx.key("uncontended/raw_pipelined");
    let client = ctx.pool.get().await.unwrap();
    let lock = client.prepare_cached(TRY).await.unwrap();
    let unlock = client.prepare_cached(UNLOCK).await.unwrap();
    type Reply<'a> = std::pin::Pin<
        Box<dyn Future<Output = Result<tokio_postgres::Row, tokio_postgres::Error>> + Send + 'a>,
    >;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&key];
    let mut in_flight: Option<Reply<'_>> = None;
    for _ in 0..calls {
        let granted = client.query_one(&lock, &params);
        let granted: bool = match in_flight.take() {
            None => granted.await,
            Some(unlocked) => {
                let (unlocked, granted) = tokio::join!(unlocked, granted);
                assert!(unlocked.unwrap().get::<_, bool>(0));
                granted
            }
        }
        .unwrap()
        .get(0);
        assert!(granted);
        let mut unlocked: Reply<'_> = Box::pin(client.query_one(&unlock, &params));
        send_now(&mut unlocked);
        in_flight = Some(unlocked);
    }
    if let Some(unlocked) = in_flight {
        assert!(unlocked.await.unwrap().get::<_, bool>(0));
    }
}

async fn runtime_try_release(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("uncontended/runtime"));
    for _ in 0..calls {
        let guard = lock.try_acquire(&ctx.pool).await.unwrap();
        guard.release().await.unwrap();
    }
}

async fn runtime_try_drop(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("uncontended/runtime_drop"));
    for _ in 0..calls {
        drop(lock.try_acquire(&ctx.pool).await.unwrap());
    }
}

async fn runtime_wait_release(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("wait_uncontended/runtime"));
    for _ in 0..calls {
        let guard = lock.acquire(&ctx.pool).await.unwrap();
        guard.release().await.unwrap();
    }
}

async fn runtime_wait_drop(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("wait_uncontended/runtime_drop"));
    for _ in 0..calls {
        drop(lock.acquire(&ctx.pool).await.unwrap());
    }
}

async fn locker_try_release(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("uncontended/locker"));
    for _ in 0..calls {
        let guard = lock.try_acquire(&ctx.locker).await.unwrap();
        guard.release().await.unwrap();
    }
}

async fn locker_try_drop(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("uncontended/locker_drop"));
    for _ in 0..calls {
        drop(lock.try_acquire(&ctx.locker).await.unwrap());
    }
}

async fn raw_try_fence_group(ctx: Ctx, calls: usize) {
    let key = ctx.key("fence/raw");
    for _ in 0..calls {
        raw_call(&ctx.pool, TRY, key).await;
    }
}

/// `calls` tries of `lock` from the pool, each released (and its token checked).
async fn pool_tries(ctx: Ctx, lock: AdvisoryLock, calls: usize) {
    for _ in 0..calls {
        let guard = lock.try_acquire(&ctx.pool).await.unwrap();
        assert_eq!(guard.fence().is_some(), lock.is_fenced());
        guard.release().await.unwrap();
    }
}

/// `calls` tries of `lock` through the Locker, each released (and its token checked).
async fn locker_tries(ctx: Ctx, lock: AdvisoryLock, calls: usize) {
    for _ in 0..calls {
        let guard = lock.try_acquire(&ctx.locker).await.unwrap();
        assert_eq!(guard.fence().is_some(), lock.is_fenced());
        guard.release().await.unwrap();
    }
}

async fn pool_plain(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("fence/pool"));
    pool_tries(ctx, lock, calls).await;
}

async fn pool_fenced(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("fence/pool_fenced")).fenced();
    pool_tries(ctx, lock, calls).await;
}

async fn locker_plain(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("fence/locker"));
    locker_tries(ctx, lock, calls).await;
}

async fn locker_fenced(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("fence/locker_fenced")).fenced();
    locker_tries(ctx, lock, calls).await;
}

async fn locker_wait_drop(ctx: Ctx, calls: usize) {
    let lock = AdvisoryLock::new(ctx.name("wait_uncontended/locker_drop"));
    for _ in 0..calls {
        drop(lock.acquire(&ctx.locker).await.unwrap());
    }
}

async fn sqlx_pool(ctx: Ctx, calls: usize) {
    let lock =
        PgAdvisoryLock::with_key(PgAdvisoryLockKey::BigInt(ctx.key("wait_uncontended/sqlx")));
    for _ in 0..calls {
        let conn = ctx.sqlx.acquire().await.unwrap();
        let guard = lock.acquire(conn).await.unwrap();
        drop(guard.release_now().await.unwrap());
    }
}

async fn sqlx_conn_kept(ctx: Ctx, calls: usize) {
    let lock = PgAdvisoryLock::with_key(PgAdvisoryLockKey::BigInt(
        ctx.key("wait_uncontended/sqlx_conn_kept"),
    ));
    let mut conn = ctx.sqlx.acquire().await.unwrap();
    for _ in 0..calls {
        let guard = lock.acquire(&mut conn).await.unwrap();
        guard.release_now().await.unwrap();
    }
}

/// Runs `tasks` tasks of `each(ctx, task index, deadline)` and adds up their calls.
async fn spawn_all<F, Fut>(ctx: &Ctx, tasks: usize, deadline: Instant, each: F) -> u64
where
    F: Fn(Ctx, usize, Instant) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let handles: Vec<_> = (0..tasks)
        .map(|i| tokio::spawn(each(ctx.clone(), i, deadline)))
        .collect();
    let mut calls = 0;
    for handle in handles {
        calls += handle.await.expect("a benchmark task panicked");
    }
    calls
}

const CONTENDERS: usize = 4;

/// `tasks` tasks, each with a pooled client of its own for the whole batch, taking
/// and releasing `name`'s key with `pg_advisory_lock` / `pg_advisory_unlock`.
async fn raw_blocking(ctx: Ctx, deadline: Instant, tasks: usize, name: &'static str) -> u64 {
    spawn_all(&ctx, tasks, deadline, move |ctx, _, deadline| async move {
        let key = ctx.key(name);
        let client = ctx.pool.get().await.unwrap();
        let lock = client.prepare_cached(WAIT).await.unwrap();
        let unlock = client.prepare_cached(UNLOCK).await.unwrap();
        let mut calls = 0;
        while Instant::now() < deadline {
            client.execute(&lock, &[&key]).await.unwrap();
            calls += 1;
            let freed: bool = client.query_one(&unlock, &[&key]).await.unwrap().get(0);
            assert!(freed);
        }
        calls
    })
    .await
}

async fn raw_contended(ctx: Ctx, deadline: Instant) -> u64 {
    raw_blocking(ctx, deadline, CONTENDERS, "contended/raw").await
}

async fn raw_contended_checkout(ctx: Ctx, deadline: Instant) -> u64 {
    spawn_all(&ctx, CONTENDERS, deadline, |ctx, _, deadline| async move {
        let key = ctx.key("contended/raw_checkout");
        let mut calls = 0;
        while Instant::now() < deadline {
            raw_call(&ctx.pool, WAIT, key).await;
            calls += 1;
        }
        calls
    })
    .await
}

/// `tasks` tasks taking `name` from a lock source (`ctx.pool` or `ctx.locker`),
/// waiting, then releasing it (`release`) or dropping the guard.
async fn source_contended<S>(
    ctx: Ctx,
    deadline: Instant,
    tasks: usize,
    name: &str,
    source: fn(&Ctx) -> &S,
    release: bool,
) -> u64
where
    S: pglock::LockSource + Send + ?Sized + 'static,
    S::Guard: Releasable,
{
    let lock = AdvisoryLock::new(ctx.name(name));
    spawn_all(&ctx, tasks, deadline, move |ctx, _, deadline| {
        let lock = lock.clone();
        async move {
            let mut calls = 0;
            while Instant::now() < deadline {
                let guard = lock.acquire(source(&ctx)).await.unwrap();
                calls += 1;
                if release {
                    guard.release_now().await;
                } else {
                    drop(guard);
                }
            }
            calls
        }
    })
    .await
}

/// `release()` of either kind of guard.
pub trait Releasable: Send + Sized + 'static {
    fn release_now(self) -> impl Future<Output = ()> + Send;
}

impl Releasable for pglock::LockGuard {
    async fn release_now(self) {
        self.release().await.unwrap();
    }
}

impl Releasable for pglock::LockerGuard {
    async fn release_now(self) {
        self.release().await.unwrap();
    }
}

fn pool(ctx: &Ctx) -> &Pool {
    &ctx.pool
}

fn locker(ctx: &Ctx) -> &Locker {
    &ctx.locker
}

fn locker_one(ctx: &Ctx) -> &Locker {
    &ctx.locker_one
}

fn locker_undetected(ctx: &Ctx) -> &Locker {
    &ctx.locker_undetected
}

fn held_none(ctx: &Ctx) -> &Locker {
    &ctx.held_none
}

fn held_many(ctx: &Ctx) -> &Locker {
    &ctx.held_many
}

async fn runtime_contended(ctx: Ctx, deadline: Instant, name: &str, release: bool) -> u64 {
    source_contended(ctx, deadline, CONTENDERS, name, pool, release).await
}

async fn runtime_contended_release(ctx: Ctx, deadline: Instant) -> u64 {
    runtime_contended(ctx, deadline, "contended/runtime", true).await
}

async fn runtime_contended_drop(ctx: Ctx, deadline: Instant) -> u64 {
    runtime_contended(ctx, deadline, "contended/runtime_drop", false).await
}

async fn attribute_contended(ctx: Ctx, deadline: Instant) -> u64 {
    spawn_all(&ctx, CONTENDERS, deadline, |ctx, _, deadline| async move {
        let mut calls = 0;
        while Instant::now() < deadline {
            locked_contended(&ctx.pool).await.unwrap();
            calls += 1;
        }
        calls
    })
    .await
}

const CONTENDERS16: usize = 16;

async fn raw_contended16(ctx: Ctx, deadline: Instant) -> u64 {
    raw_blocking(ctx, deadline, CONTENDERS16, "contended16/raw").await
}

async fn runtime_contended16(ctx: Ctx, deadline: Instant) -> u64 {
    source_contended(
        ctx,
        deadline,
        CONTENDERS16,
        "contended16/runtime",
        pool,
        true,
    )
    .await
}

async fn locker_contended16_release(ctx: Ctx, deadline: Instant) -> u64 {
    source_contended(
        ctx,
        deadline,
        CONTENDERS16,
        "contended16/locker",
        locker,
        true,
    )
    .await
}

async fn locker_contended16_drop(ctx: Ctx, deadline: Instant) -> u64 {
    source_contended(
        ctx,
        deadline,
        CONTENDERS16,
        "contended16/locker_drop",
        locker,
        false,
    )
    .await
}

async fn locker_contended16_undetected(ctx: Ctx, deadline: Instant) -> u64 {
    source_contended(
        ctx,
        deadline,
        CONTENDERS16,
        "contended16/locker_undetected",
        locker_undetected,
        true,
    )
    .await
}

async fn locker_contended16_drop_undetected(ctx: Ctx, deadline: Instant) -> u64 {
    source_contended(
        ctx,
        deadline,
        CONTENDERS16,
        "contended16/locker_drop_undetected",
        locker_undetected,
        false,
    )
    .await
}

const DISTINCT: usize = 16;

async fn raw_distinct(ctx: Ctx, deadline: Instant) -> u64 {
    spawn_all(&ctx, DISTINCT, deadline, |ctx, i, deadline| async move {
        let key = ctx.key(&format!("distinct_keys/raw/{i}"));
        let mut calls = 0;
        while Instant::now() < deadline {
            raw_call(&ctx.pool, TRY, key).await;
            calls += 1;
        }
        calls
    })
    .await
}

/// 16 tasks, each trying its own key of `name` from a lock source, then releasing it
/// (`release`) or dropping the guard.
async fn source_distinct<S>(
    ctx: Ctx,
    deadline: Instant,
    name: &'static str,
    source: fn(&Ctx) -> &S,
    release: bool,
) -> u64
where
    S: pglock::LockSource + Send + ?Sized + 'static,
    S::Guard: Releasable,
{
    spawn_all(
        &ctx,
        DISTINCT,
        deadline,
        move |ctx, i, deadline| async move {
            let lock = AdvisoryLock::new(ctx.name(&format!("{name}/{i}")));
            let mut calls = 0;
            while Instant::now() < deadline {
                let guard = lock.try_acquire(source(&ctx)).await.unwrap();
                calls += 1;
                if release {
                    guard.release_now().await;
                } else {
                    drop(guard);
                }
            }
            calls
        },
    )
    .await
}

async fn runtime_distinct(ctx: Ctx, deadline: Instant, name: &'static str, release: bool) -> u64 {
    source_distinct(ctx, deadline, name, pool, release).await
}

async fn runtime_distinct_release(ctx: Ctx, deadline: Instant) -> u64 {
    runtime_distinct(ctx, deadline, "distinct_keys/runtime", true).await
}

async fn runtime_distinct_drop(ctx: Ctx, deadline: Instant) -> u64 {
    runtime_distinct(ctx, deadline, "distinct_keys/runtime_drop", false).await
}

async fn attribute_distinct(ctx: Ctx, deadline: Instant) -> u64 {
    spawn_all(&ctx, DISTINCT, deadline, |ctx, i, deadline| async move {
        let prefix = ctx.name("distinct_keys/attribute/");
        let mut calls = 0;
        while Instant::now() < deadline {
            locked_distinct(&ctx.pool, &prefix, i).await.unwrap();
            calls += 1;
        }
        calls
    })
    .await
}

async fn locker_distinct_release(ctx: Ctx, deadline: Instant) -> u64 {
    source_distinct(ctx, deadline, "distinct_keys/locker_1s", locker_one, true).await
}

async fn locker_distinct_drop(ctx: Ctx, deadline: Instant) -> u64 {
    source_distinct(
        ctx,
        deadline,
        "distinct_keys/locker_1s_drop",
        locker_one,
        false,
    )
    .await
}

async fn held_none_release(ctx: Ctx, deadline: Instant) -> u64 {
    source_distinct(ctx, deadline, "held/none_held", held_none, true).await
}

async fn held_many_release(ctx: Ctx, deadline: Instant) -> u64 {
    source_distinct(ctx, deadline, "held/held5000", held_many, true).await
}

async fn held_none_drop(ctx: Ctx, deadline: Instant) -> u64 {
    source_distinct(ctx, deadline, "held/none_held_drop", held_none, false).await
}

async fn held_many_drop(ctx: Ctx, deadline: Instant) -> u64 {
    source_distinct(ctx, deadline, "held/held5000_drop", held_many, false).await
}

const NESTED_PER_LOCKER: usize = 8;

#[advisory_locked(wait, key = "{own}")]
async fn nested_outer(locker: &Locker, own: &str, hot: &str) -> Result<(), pglock::Error> {
    nested_inner(locker, hot).await
}

#[advisory_locked(wait, key = "{hot}")]
async fn nested_inner(locker: &Locker, hot: &str) -> Result<(), pglock::Error> {
    Ok(())
}

/// 16 tasks over the two Lockers of `pair`: each body holds its own key and waits
/// inside for `name`'s one key.
async fn nested(ctx: Ctx, deadline: Instant, name: &str, pair: fn(&Ctx) -> &[Locker; 2]) -> u64 {
    let hot = ctx.name(&format!("{name}/hot"));
    let prefix = ctx.name(&format!("{name}/own/"));
    spawn_all(
        &ctx,
        2 * NESTED_PER_LOCKER,
        deadline,
        move |ctx, i, deadline| {
            let (hot, own) = (hot.clone(), format!("{prefix}{i}"));
            async move {
                let locker = &pair(&ctx)[i % 2];
                let mut calls = 0;
                while Instant::now() < deadline {
                    nested_outer(locker, &own, &hot).await.unwrap();
                    calls += 1;
                }
                calls
            }
        },
    )
    .await
}

async fn nested_detected(ctx: Ctx, deadline: Instant) -> u64 {
    nested(ctx, deadline, "nested/detected", |ctx| &ctx.pair).await
}

async fn nested_undetected(ctx: Ctx, deadline: Instant) -> u64 {
    nested(ctx, deadline, "nested/undetected", |ctx| {
        &ctx.pair_undetected
    })
    .await
}
