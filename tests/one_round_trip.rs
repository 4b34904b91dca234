//! A locked call through a Pool costs its lock statement and its unlock, and
//! nothing else: the unlock of one call travels with the next call's lock statement
//! on the same session, so no task is spawned per call and no statement is added.
//! Shown by the mechanism, not by a time: tasks counted by tokio and by the
//! runtime, statements counted by the server (`pg_stat_statements`). The controls
//! run the same calls with parking turned off (each unlock finished by a task of
//! its own, the path parking replaced) and show the tasks and statements it adds.
//!
//! The same for a Locker's drop path: one relock statement per call, sent by the
//! lock session's batch task, no task spawned.
//!
//! Also here: a guard dropped with nothing after it still frees its lock and its
//! connection at once, and an unlock that fails while travelling with the next
//! statement is still reported, and its session closed.

mod common;

use std::time::Duration;

use common::capture::Capture;
use common::{gone_within, holders, unique};
use deadpool_postgres::Pool;
use pglock::testdb::Cluster;
use pglock::{advisory_locked, AdvisoryLock};
use tokio::runtime::Handle;
use tracing::Level;

const SECOND: Duration = Duration::from_secs(1);

/// Parking is switched process-wide and tasks are counted process-wide: the tests
/// of this file run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn counted_cluster() -> &'static Cluster {
    common::counted::shared()
}

async fn counting_observer() -> tokio_postgres::Client {
    common::counted::observer(counted_cluster()).await
}

#[advisory_locked(key = "one-trip:{id}", pool = pool)]
async fn tried(pool: &Pool, id: u64) -> Result<(), pglock::Error> {
    Ok(())
}

#[advisory_locked(key = "one-trip-wait:{id}", pool = pool, wait = "5s")]
async fn waited(pool: &Pool, id: u64) -> Result<(), pglock::Error> {
    Ok(())
}

/// What `calls` sequential calls cost.
#[derive(Debug)]
struct Cost {
    calls: u64,
    /// Tasks the runtime spawned meanwhile.
    spawned: u64,
    /// The most tasks alive at once, beyond those alive before the first call.
    most_alive_beyond_start: usize,
    lock_statements: i64,
    unlock_statements: i64,
    /// Every other statement the server ran for us, with its count.
    other_statements: Vec<(String, i64)>,
}

impl Cost {
    fn others(&self) -> i64 {
        self.other_statements.iter().map(|(_, n)| n).sum()
    }
}

/// Runs `calls` uncontended locked calls one after another, the key of call `i`
/// being `key_of(i)`, sampling tokio's count of alive tasks after each call.
async fn cost_of(calls: u64, wait: bool, key_of: fn(u64) -> u64) -> Cost {
    let pool = counted_cluster().db().pool(4);
    let observer = counting_observer().await;
    let call = |i| {
        let pool = &pool;
        async move {
            if wait {
                waited(pool, key_of(i)).await
            } else {
                tried(pool, key_of(i)).await
            }
        }
    };
    // Warm: connections open, statements prepared, watchers started.
    for i in 0..8 {
        call(i).await.unwrap();
    }
    common::counted::reset(&observer).await;
    let metrics = Handle::current().metrics();
    let alive_at_start = metrics.num_alive_tasks();
    let spawned_before = pglock::__private::spawned_tasks();
    let mut most_alive = alive_at_start;
    for i in 8..8 + calls {
        call(i).await.unwrap();
        most_alive = most_alive.max(metrics.num_alive_tasks());
    }
    let spawned = pglock::__private::spawned_tasks() - spawned_before;
    // Every unlock answered and counted before the statements are read.
    drop(pool);
    let mut cost = Cost {
        calls,
        spawned,
        most_alive_beyond_start: most_alive - alive_at_start,
        lock_statements: 0,
        unlock_statements: 0,
        other_statements: Vec::new(),
    };
    count_statements(&observer, &mut cost, calls).await;
    eprintln!("{calls} calls, wait: {wait}: {cost:?}");
    cost
}

/// Reads what the server ran, once every unlock of the calls is counted (the last
/// ones may still be on their way when the calls return).
async fn count_statements(observer: &tokio_postgres::Client, cost: &mut Cost, calls: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = observer
            .query(
                "SELECT query, calls FROM pg_stat_statements \
                 WHERE query NOT LIKE '%pg_stat_statements%'",
                &[],
            )
            .await
            .unwrap();
        cost.lock_statements = 0;
        cost.unlock_statements = 0;
        cost.other_statements.clear();
        for row in rows {
            let (query, n): (String, i64) = (row.get(0), row.get(1));
            if query.contains("advisory_unlock") {
                cost.unlock_statements += n;
            } else if query.contains("advisory_lock") {
                cost.lock_statements += n;
            } else {
                cost.other_statements.push((query, n));
            }
        }
        let all_in = cost.unlock_statements >= calls as i64;
        if all_in || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn same_key(_: u64) -> u64 {
    1
}

fn new_key(i: u64) -> u64 {
    i
}

/// Parked sessions: no task per call (a reaper per pool, a watcher per session),
/// and the server runs each call's lock statement and unlock, nothing more.
fn assert_one_round_trip_per_call(cost: &Cost) {
    assert!(cost.spawned <= 4, "{cost:#?}");
    assert!(cost.most_alive_beyond_start <= 2, "{cost:#?}");
    assert_eq!(cost.lock_statements, cost.calls as i64, "{cost:#?}");
    // The last warm-up call's unlock may reach the server after the reset.
    let unlocks = cost.calls as i64..=cost.calls as i64 + 1;
    assert!(unlocks.contains(&cost.unlock_statements), "{cost:#?}");
    assert!(cost.others() <= 4, "{cost:#?}");
}

/// A new key per call: the next call takes a parked session only once its unlock
/// has been answered (else a try of the key just released, on another session,
/// could find it still held), so now and then a call takes a session from the
/// pool, whose first use asks its pid and starts its watcher. Still far from one
/// task or one statement per call.
fn assert_about_one_round_trip_per_call(cost: &Cost) {
    assert!(cost.spawned <= cost.calls / 20, "{cost:#?}");
    assert_eq!(cost.lock_statements, cost.calls as i64, "{cost:#?}");
    let unlocks = cost.calls as i64..=cost.calls as i64 + 1;
    assert!(unlocks.contains(&cost.unlock_statements), "{cost:#?}");
    assert!(cost.others() <= cost.calls as i64 / 20, "{cost:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tries_through_a_pool_spawn_no_task_and_add_no_statement() {
    let _alone = ONE_AT_A_TIME.lock().await;
    pglock::__private::set_release_parking(true);
    assert_one_round_trip_per_call(&cost_of(10_000, false, same_key).await);
    assert_about_one_round_trip_per_call(&cost_of(10_000, false, new_key).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_waits_through_a_pool_spawn_no_task_and_add_no_statement() {
    let _alone = ONE_AT_A_TIME.lock().await;
    pglock::__private::set_release_parking(true);
    assert_one_round_trip_per_call(&cost_of(10_000, true, same_key).await);
    assert_about_one_round_trip_per_call(&cost_of(10_000, true, new_key).await);
}

#[advisory_locked(key = "one-trip-locker", pool = locker)]
async fn through_locker(locker: &pglock::Locker) -> Result<(), pglock::Error> {
    Ok(())
}

/// The Locker's drop path: each call's dropped guard queues its unlock on the lock
/// session, and the next call's try of the key goes with it, as one relock
/// statement, sent by the session's batch task: no task spawned per call, and one
/// statement per call. On a current-thread runtime the unlock and the next try are
/// both queued before the batch task runs, every call.
#[tokio::test]
async fn ten_thousand_calls_through_a_locker_spawn_no_task_and_cost_one_statement_each() {
    const CALLS: i64 = 10_000;
    let _alone = ONE_AT_A_TIME.lock().await;
    let observer = counting_observer().await;
    let locker = pglock::Locker::builder(counted_cluster().db().pool(2))
        .sessions(1)
        .build();
    through_locker(&locker).await.unwrap(); // warm: session open, watcher started
    common::counted::reset(&observer).await;
    let spawned_before = pglock::__private::spawned_tasks();
    for _ in 0..CALLS {
        through_locker(&locker).await.unwrap();
    }
    let spawned = pglock::__private::spawned_tasks() - spawned_before;
    assert!(spawned <= 2, "{spawned} tasks spawned over {CALLS} calls");
    // The warm-up's unlock goes alone while the counts are reset (the batch task
    // runs then, counted before or after the reset), so the first call's try goes
    // alone too; every later call is one relock, and the last call's unlock goes
    // alone while the counts are read: three statements beside the relocks at most.
    let relock = "CASE WHEN pg_catalog.pg_advisory_unlock(";
    let relocks = common::counted::calls(&observer, relock).await;
    let others = common::counted::calls(&observer, "advisory").await - relocks;
    assert_eq!(
        relocks,
        CALLS - 1,
        "one relock statement per call but the first"
    );
    if others > 3 {
        let rows = observer
            .query(
                "SELECT query, calls FROM pg_stat_statements WHERE query LIKE '%advisory%'",
                &[],
            )
            .await
            .unwrap();
        let seen: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        panic!("{others} lock statements beside the relocks: {seen:#?}");
    }
}

/// The control: unlocks finished by tasks of their own spawn one per call. A try of
/// the same key right after, on the session whose unlock a task still awaits, also
/// adds a statement (a look at that session's state, over another connection):
/// whenever the task has not read the unlock's answer yet, about every other call
/// here, so the bound is a tenth of the calls, against at most 4 with parking. A
/// wait on a session of its own adds none: its backend's pid, once asked per
/// checkout, is now asked once per connection (see
/// `a_connection_taken_from_the_pool_again_is_not_asked_its_pid_again`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_without_parking_every_call_spawns_and_adds_a_statement() {
    let _alone = ONE_AT_A_TIME.lock().await;
    pglock::__private::set_release_parking(false);
    let tries = cost_of(1_000, false, same_key).await;
    let waits = cost_of(1_000, true, new_key).await;
    pglock::__private::set_release_parking(true);
    for cost in [&tries, &waits] {
        assert!(cost.spawned >= cost.calls, "{cost:#?}");
    }
    assert!(tries.others() >= tries.calls as i64 / 10, "{tries:#?}");
}

/// Nothing comes after the last call: the lock is free at once (its unlock was
/// sent when the guard was dropped), and the connection, parked meanwhile, goes
/// back to the pool within the bound, the same backend, holding nothing.
#[tokio::test]
async fn a_guard_dropped_with_nothing_after_it_frees_its_lock_and_its_connection() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pool = common::pool(1);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("nothing-after"));
    let guard = lock.try_acquire(&pool).await.unwrap();
    let holder = holders(&observer, lock.key()).await;
    assert_eq!(holder.len(), 1, "{holder:?}");
    drop(guard);
    // Parked (this runtime has not run anything since the drop): out of the pool.
    assert_eq!(pool.status().available, 0, "{:?}", pool.status());
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
    let client = tokio::time::timeout(SECOND, pool.get())
        .await
        .expect("the parked connection went back to the pool within the bound")
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, holder[0], "the same connection, not a new one");
    assert_eq!(common::advisory_locks_of(&client).await, 0);
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The unlock of a dropped guard fails (the body unlocked everything behind the
/// library's back, so the server answers `false`) and the next acquisition reads
/// that answer with its own statement: the failure is logged as a lost lock, the
/// next caller still gets its lock, and that session, in doubt, is closed once let
/// go instead of going back to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_failing_with_the_next_statement_is_reported_and_its_session_closed() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let capture = Capture::global();
    let observer = common::observer().await;
    let pool = common::pool(2);
    let name = unique("failing-on-the-way");
    let lock = AdvisoryLock::new(name.as_str());

    let guard = lock.try_acquire(&pool).await.unwrap();
    let first_pid = backend_pid(&guard).await;
    guard
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    // The premise: the lock is already gone, so the unlock will answer `false`.
    assert!(common::lock_rows(&observer, lock.key()).await.is_empty());
    drop(guard);
    let next = lock.acquire(&pool).await.unwrap();
    let next_pid = backend_pid(&next).await;
    assert_eq!(next_pid, first_pid, "the next lock took the parked session");
    assert_eq!(holders(&observer, lock.key()).await, vec![next_pid]);

    let warnings: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == Level::WARN && e.target.starts_with("pglock_runtime"))
        .filter(|e| e.field("lock").is_some_and(|l| l.contains(&name)))
        .collect();
    assert_eq!(warnings.len(), 1, "{:#?}", capture.events());
    let warning = &warnings[0];
    assert!(
        warning
            .field("message")
            .is_some_and(|m| m.contains("unlock failed")),
        "{warning:?}"
    );
    assert!(
        warning.field("error").is_some_and(|e| e.contains("lost")),
        "{warning:?}"
    );

    drop(next);
    assert!(
        common::backend_gone_within(&observer, first_pid, Duration::from_secs(5)).await,
        "the session in doubt was kept"
    );
    assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
}

/// Calls of the runtime's pid question, as `pg_stat_statements` counts them.
async fn pid_questions(observer: &tokio_postgres::Client) -> i64 {
    observer
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
             WHERE query = 'SELECT pg_catalog.pg_backend_pid()'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// A lock taken from a pool and given back with `release()` returns its connection
/// to the pool; the next lock takes that connection out again. Its backend's pid
/// (needed to cancel a dropped wait) is asked once per connection, not once per
/// checkout. The first calls on a new pool, which asks once, show that the
/// question is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_taken_from_the_pool_again_is_not_asked_its_pid_again() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let observer = counting_observer().await;
    let pool = counted_cluster().db().pool(1);
    let lock = AdvisoryLock::new(unique("pid-once"));
    common::counted::reset(&observer).await;
    for _ in 0..3 {
        lock.try_acquire(&pool)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }
    assert_eq!(
        pid_questions(&observer).await,
        1,
        "a new connection is asked once"
    );
    for _ in 0..200 {
        lock.try_acquire(&pool)
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
        lock.acquire(&pool).await.unwrap().release().await.unwrap();
    }
    assert_eq!(
        pid_questions(&observer).await,
        1,
        "400 more checkouts of the same connection asked nothing more"
    );
}
