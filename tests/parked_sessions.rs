//! The pool release path with parked sessions (a dropped guard's unlock read by the
//! next lock on its session), tried the way a reviewer tried to break it: mutual
//! exclusion under mixed acquisitions, plain pool users after a drop, runtimes
//! ending with a parked session, modes, a failed unlock, a body that left its
//! transaction aborted, a closed pool.

// Each test runs on a runtime of its own, so a std mutex held across awaits only
// orders the tests (some are sync `#[test]`s, which a tokio mutex cannot serve).
#![allow(clippy::await_holding_lock)]

mod common;

use std::time::Duration;

use common::{gone_within, holders, unique};
use deadpool_postgres::{PoolError, TimeoutType};
use pglock::{AdvisoryLock, LockKey};

const SECOND: Duration = Duration::from_secs(1);

/// Parking is switched process-wide: tests that switch it run one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Same with another key: a parked session whose unlock *failed* is "answered",
/// so `take_answered` hands it to the next lock of any key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_unlock_failed_is_not_lent_to_another_key() {
    let _serial = serial();
    let pool = common::pool(1);
    let observer = common::observer().await;
    let first = AdvisoryLock::new(unique("review-aborted-a"));
    let second = AdvisoryLock::new(unique("review-aborted-b"));
    let guard = first.acquire(&pool).await.unwrap();
    let pid: i32 = guard
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    guard.batch_execute("BEGIN").await.unwrap();
    assert!(guard.batch_execute("SELECT 1/0").await.is_err());
    drop(guard);
    // Wait until the server has answered the unlock (its text is the backend's
    // last query), so the parked session counts as "answered".
    unlock_ran(&observer, pid).await;
    let next = second.acquire_timeout(&pool, 2 * SECOND).await;
    let ok = next.is_ok();
    let err = format!("{:?}", next.as_ref().err());
    drop(next);
    let left = gone_within(&observer, first.key(), SECOND).await;
    assert!(ok, "next lock of another key: {err}");
    assert!(left.is_empty(), "first key still held after 1 s: {left:?}");
}

/// Until `pid`'s last statement is an advisory unlock.
async fn unlock_ran(observer: &tokio_postgres::Client, pid: i32) {
    for _ in 0..500 {
        let row = observer
            .query_opt(
                "SELECT coalesce(query LIKE '%advisory_unlock%', false) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap();
        // Gone (closed already) counts as run.
        if row.is_none_or(|row| row.get::<_, bool>(0)) {
            return;
        }
    }
    panic!("backend {pid} never ran the unlock");
}

/// A plain `pool.get()` right after a drop, on a pool of one, gets the
/// connection (after the reaper) and its first query reads its own answer, not
/// the unlock's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_pool_user_after_a_drop_reads_its_own_answer() {
    let _serial = serial();
    let pool = common::pool(1);
    let observer = common::observer().await;
    for i in 0..50 {
        let lock = AdvisoryLock::new(unique("review-plain"));
        let guard = lock.acquire(&pool).await.unwrap();
        drop(guard);
        let conn = tokio::time::timeout(2 * SECOND, pool.get())
            .await
            .unwrap()
            .unwrap();
        let n: i32 = conn
            .query_one("SELECT $1::int4", &[&i])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, i);
        drop(conn);
        assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
    }
}

/// Mutual exclusion: the body's own statement dropped mid-flight
/// (`pg_sleep` on the locked session) keeps the key held until it ends; a try of
/// the key from the same pool meanwhile answers Busy, and an `acquire_timeout`
/// returns Timeout, without waiting behind the sleep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_body_statement_keeps_the_key_and_others_do_not_wait_behind_it() {
    let _serial = serial();
    let pool = common::pool(3);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("review-behind"));
    let guard = lock.acquire(&pool).await.unwrap();
    let pid: i32 = guard
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    {
        let sleep = guard.batch_execute("SELECT pg_sleep(3)");
        // Sent, then abandoned.
        let _ = tokio::time::timeout(Duration::from_millis(100), sleep).await;
    }
    drop(guard);
    assert_eq!(
        holders(&observer, lock.key()).await,
        vec![pid],
        "still held by the sleeping body"
    );
    let started = std::time::Instant::now();
    let tried = lock.try_acquire(&pool).await;
    let tried_in = started.elapsed();
    assert!(
        matches!(tried, Err(pglock::Error::Busy { .. })),
        "{tried:?}"
    );
    assert!(
        tried_in < Duration::from_millis(1500),
        "try waited {tried_in:?}"
    );
    let started = std::time::Instant::now();
    let timed = lock
        .acquire_timeout(&pool, Duration::from_millis(200))
        .await;
    let timed_in = started.elapsed();
    assert!(
        matches!(timed, Err(pglock::Error::Timeout { .. })),
        "{timed:?}"
    );
    assert!(
        timed_in < Duration::from_millis(1500),
        "acquire_timeout took {timed_in:?}"
    );
    // After the sleep the key is free and a wait gets it.
    let got = lock.acquire_timeout(&pool, 10 * SECOND).await;
    assert!(got.is_ok(), "{got:?}");
    drop(got);
    assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
}

/// Mutual exclusion under parking: tasks mixing try, wait and
/// timed acquisitions of one key from one pool, bodies that run statements and
/// abandon some mid-flight; never two guards at once, and the server shows the
/// guard's own backend as the only holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammer_one_key_mixed_acquisitions_never_overlap() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    let _serial = serial();
    let pool = common::pool(3);
    let lock = AdvisoryLock::new(unique("review-hammer"));
    let inside = Arc::new(AtomicBool::new(false));
    let held_count = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for t in 0..6u32 {
        let (pool, lock, inside, held_count) = (
            pool.clone(),
            lock.clone(),
            inside.clone(),
            held_count.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let observer = common::observer().await;
            for i in 0..120u32 {
                let guard = match (t + i) % 3 {
                    0 => lock.try_acquire(&pool).await,
                    1 => lock.acquire_timeout(&pool, 10 * SECOND).await,
                    _ => lock.acquire(&pool).await,
                };
                let guard = match guard {
                    Ok(guard) => guard,
                    Err(pglock::Error::Busy { .. }) => continue,
                    // A try takes a connection only if one is free now, and the
                    // other tasks' waits may hold all three.
                    Err(pglock::Error::Pool {
                        source: PoolError::Timeout(TimeoutType::Wait),
                        ..
                    }) if (t + i) % 3 == 0 => continue,
                    Err(e) => panic!("task {t} call {i}: {e:?}"),
                };
                assert!(!inside.swap(true, Ordering::SeqCst), "two guards at once");
                held_count.fetch_add(1, Ordering::Relaxed);
                if i % 10 == 0 {
                    let me: i32 = guard
                        .query_one("SELECT pg_backend_pid()", &[])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(holders(&observer, lock.key()).await, vec![me]);
                }
                if i % 7 == 0 {
                    // Abandoned mid-flight: the unlock queues behind it.
                    let sleep = guard.batch_execute("SELECT pg_sleep(0.02)");
                    let _ = tokio::time::timeout(Duration::from_millis(1), sleep).await;
                }
                inside.store(false, Ordering::SeqCst);
                drop(guard);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(held_count.load(Ordering::Relaxed) > 100);
    let observer = common::observer().await;
    assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
}

/// A current_thread runtime ends with a session parked (its reaper
/// dropped with it); from another runtime the key is free within 1 s and the same
/// pool still gives locks.
#[test]
fn a_runtime_ending_with_a_parked_session_leaves_nothing_behind() {
    let _serial = serial();
    let pool = common::pool(1);
    let lock = AdvisoryLock::new(unique("review-rt-end"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        drop(lock.acquire(&pool).await.unwrap());
    });
    drop(rt);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let observer = common::observer().await;
        assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
        let again = lock.acquire_timeout(&pool, 5 * SECOND).await;
        assert!(again.is_ok(), "{again:?}");
        drop(again);
        let conn = tokio::time::timeout(2 * SECOND, pool.get())
            .await
            .unwrap()
            .unwrap();
        let n: i32 = conn.query_one("SELECT 7", &[]).await.unwrap().get(0);
        assert_eq!(n, 7);
    });
}

/// A shared lock right after an exclusive one of the same key, on the
/// parked session: one holder, in share mode, and a foreign exclusive try fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_after_exclusive_on_the_parked_session() {
    let _serial = serial();
    let pool = common::pool(2);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("review-modes"));
    drop(lock.acquire(&pool).await.unwrap());
    let shared = lock.clone().shared().acquire(&pool).await.unwrap();
    let rows = common::lock_rows(&observer, lock.key()).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].mode, "ShareLock");
    let foreign = common::Foreign::connect().await;
    let LockKey::BigInt(k) = lock.key() else {
        panic!()
    };
    let got: bool = foreign
        .client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
        .await
        .unwrap()
        .get(0);
    assert!(
        !got,
        "a foreign exclusive got the key while it is held shared"
    );
    drop(shared);
    assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
}

/// Errors not swallowed: a body that left its transaction aborted makes the unlock
/// fail (25P02); that is logged as a warning naming the lock, and the session that
/// still holds the key is closed (the key is free within 1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_unlock_of_an_aborted_body_is_logged_and_its_session_closed() {
    let _serial = serial();
    let capture = common::capture::Capture::global();
    let pool = common::pool(2);
    let observer = common::observer().await;
    let name = unique("review-aborted-logged");
    let lock = AdvisoryLock::new(name.as_str());
    let guard = lock.acquire(&pool).await.unwrap();
    guard.batch_execute("BEGIN").await.unwrap();
    assert!(guard.batch_execute("SELECT 1/0").await.is_err());
    drop(guard);
    // Nobody takes the parked session: the reaper reads the failed unlock.
    assert!(gone_within(&observer, lock.key(), SECOND).await.is_empty());
    let warned = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN)
        .any(|e| e.field("lock").is_some_and(|l| l.contains(&name)));
    assert!(warned, "no warning for the failed unlock");
}

/// After `pool.close()`, a lock taken within the parking window fails as a fresh
/// checkout does (`Error::Pool`), rather than being granted on a session parked in
/// the closed pool (which it was before parked sessions were checked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_gives_no_lock_from_its_parked_sessions() {
    let _serial = serial();
    let pool = common::pool(2);
    let first = AdvisoryLock::new(unique("review-closed-a"));
    let second = AdvisoryLock::new(unique("review-closed-b"));
    drop(first.acquire(&pool).await.unwrap());
    pool.close();
    let after_close = first.acquire(&pool).await.map(drop);
    let fresh = second.acquire(&pool).await.map(drop);
    assert!(fresh.is_err(), "a closed pool gave a fresh session");
    assert!(
        after_close.is_err(),
        "a closed pool gave a lock: {after_close:?}"
    );
}
