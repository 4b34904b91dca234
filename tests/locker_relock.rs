//! When a Locker's handoff limit (or window) runs out while tasks of its process
//! still wait for a key, the key goes back to the server's queue and is asked for
//! again in one statement on the lock session: `pg_advisory_unlock` then
//! `pg_try_advisory_lock`. The unlock grants the key to a waiter of another
//! process first; with nobody else waiting, the try takes it back at once. Shown
//! by the server: statements counted by `pg_stat_statements`, holders and waiters
//! in `pg_locks`. `handoff_limit(0)` makes every turn go back to the server.
//!
//! Both fail on the code before: an unlock, then the next task's try. The first
//! counts two statements. The second never lets the other process in: the next
//! task's try, sent as soon as its turn came, could reach the lock session before
//! the releaser's unlock, and the session, holding the key, was granted it again.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use common::pg_locks::PATIENCE;
use common::{assert_released_within_1s, assert_waiting, holders, unique};
use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, LockKey, Locker, LockerGuard};
use tokio::task::JoinHandle;

fn counted_cluster() -> &'static Cluster {
    common::counted::shared()
}

/// The tests of this file reset and read the server's statement counts: one at a
/// time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn observer() -> tokio_postgres::Client {
    common::counted::observer(counted_cluster()).await
}

/// A Locker on one lock session that never hands a key on inside the process.
fn locker() -> Locker {
    Locker::builder(counted_cluster().db().pool(4))
        .sessions(1)
        .handoff_limit(0)
        .build()
}

/// A Locker on one lock session, with the default handoff limit.
fn one_session_locker() -> Locker {
    Locker::builder(counted_cluster().db().pool(2))
        .sessions(1)
        .build()
}

/// A session of another process, its pid, and its wait for `lock` in the server's
/// queue, sent now and answered once granted.
async fn wait_elsewhere(
    lock: &AdvisoryLock,
) -> (
    Arc<tokio_postgres::Client>,
    i32,
    JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let elsewhere = Arc::new(counted_cluster().db().connect().await.unwrap());
    let pid = common::backend::pid_of(&elsewhere).await;
    let key = key_of(lock);
    let waiting = tokio::spawn({
        let elsewhere = elsewhere.clone();
        async move {
            elsewhere
                .execute("SELECT pg_advisory_lock($1)", &[&key])
                .await
                .map(drop)
        }
    });
    (elsewhere, pid, waiting)
}

type Acquiring = Pin<Box<dyn Future<Output = Result<LockerGuard, pglock::Error>> + Send>>;

/// Starts an acquisition, polls it once, then lets a task of its own drive it: it
/// is admitted (queued behind the holder, in the process) before its first await,
/// so a pending first poll means queued.
fn queued(lock: &AdvisoryLock, locker: &Locker) -> JoinHandle<Result<LockerGuard, pglock::Error>> {
    let (lock, locker) = (lock.clone(), locker.clone());
    let mut acquiring: Acquiring = Box::pin(async move { lock.acquire(&locker).await });
    let polled = acquiring
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()));
    assert!(polled.is_pending(), "queued behind the holder");
    tokio::spawn(acquiring)
}

/// The advisory lock statements the server ran since the last reset, with their
/// counts.
async fn lock_statements(observer: &tokio_postgres::Client) -> Vec<(String, i64)> {
    observer
        .query(
            "SELECT query, calls FROM pg_stat_statements \
             WHERE query LIKE '%advisory%' AND query NOT LIKE '%pg_stat_statements%' \
             ORDER BY query",
            &[],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn key_of(lock: &AdvisoryLock) -> i64 {
    match lock.key() {
        LockKey::BigInt(k) => k,
        LockKey::Pair(..) => unreachable!("a named lock has a bigint key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_back_with_nobody_else_waiting_is_taken_again_in_one_statement() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let observer = observer().await;
    let locker = locker();
    let lock = AdvisoryLock::new(unique("relock:alone"));
    let first = lock.acquire(&locker).await.unwrap();
    let [session] = holders(&observer, lock.key()).await[..] else {
        panic!("one lock session holds the key");
    };
    let next = queued(&lock, &locker);
    common::counted::reset(&observer).await;

    first.release().await.unwrap();
    let next = tokio::time::timeout(PATIENCE, next)
        .await
        .expect("the waiter gets its turn")
        .unwrap()
        .unwrap();
    assert_eq!(
        holders(&observer, lock.key()).await,
        [session],
        "held again on the same lock session"
    );
    let statements = lock_statements(&observer).await;
    assert!(
        matches!(&statements[..], [(text, 1)]
            if text.contains("CASE WHEN pg_catalog.pg_advisory_unlock(")
                && text.contains("THEN pg_catalog.pg_try_advisory_lock(")),
        "one statement gave the key back and took it again: {statements:#?}"
    );
    next.release().await.unwrap();
    assert_released_within_1s(&observer, lock.key(), "after the last holder").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_given_back_goes_first_to_a_waiter_of_another_process() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let observer = observer().await;
    let locker = locker();
    let lock = AdvisoryLock::new(unique("relock:elsewhere"));
    let first = lock.acquire(&locker).await.unwrap();
    let [session] = holders(&observer, lock.key()).await[..] else {
        panic!("one lock session holds the key");
    };

    // Another process waits in the server's queue, then a task of ours in the process.
    let (elsewhere, elsewhere_pid, waiting_elsewhere) = wait_elsewhere(&lock).await;
    let key = key_of(&lock);
    let waiter = assert_waiting(&observer, lock.key(), "the other process").await;
    assert_eq!(waiter.pid, elsewhere_pid);
    let next = queued(&lock, &locker);

    first.release().await.unwrap();
    tokio::time::timeout(PATIENCE, waiting_elsewhere)
        .await
        .expect("the other process gets the key the Locker gave back")
        .unwrap()
        .unwrap();
    assert_eq!(holders(&observer, lock.key()).await, [elsewhere_pid]);
    // Ours now waits behind it in the server, on a connection of its own.
    let ours = assert_waiting(&observer, lock.key(), "our next task").await;
    assert!(ours.pid != session && ours.pid != elsewhere_pid, "{ours:?}");
    assert!(!next.is_finished(), "ours still waits");

    elsewhere
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let next = tokio::time::timeout(PATIENCE, next)
        .await
        .expect("ours gets it once the other process lets go")
        .unwrap()
        .unwrap();
    assert_eq!(holders(&observer, lock.key()).await, [ours.pid]);
    next.release().await.unwrap();
    assert_released_within_1s(&observer, lock.key(), "after the last holder").await;
}

const RELOCK_TEXT: &str = "CASE WHEN pg_catalog.pg_advisory_unlock(";

/// A task that drops its guard and takes the key again at once queues an unlock
/// and a try of one key back to back. They go as one request: the relock
/// statement. On a current-thread runtime both are queued before the lock
/// session's batch task runs, every round. Fails on the code before: each round
/// was an unlock, then a try in the next batch (two statements).
#[tokio::test]
async fn a_task_retaking_its_key_at_once_gives_it_back_and_takes_it_again_in_one_statement() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let observer = observer().await;
    let locker = one_session_locker();
    let lock = AdvisoryLock::new(unique("relock:retaken"));
    let mut guard = lock.try_acquire(&locker).await.unwrap();
    let [session] = holders(&observer, lock.key()).await[..] else {
        panic!("one lock session holds the key");
    };
    common::counted::reset(&observer).await;
    const ROUNDS: i64 = 50;
    for _ in 0..ROUNDS {
        drop(guard);
        guard = lock
            .try_acquire(&locker)
            .await
            .expect("nobody else wants it: taken again");
    }
    assert_eq!(holders(&observer, lock.key()).await, [session]);
    let statements = lock_statements(&observer).await;
    assert!(
        matches!(&statements[..], [(text, ROUNDS)] if text.contains(RELOCK_TEXT)),
        "one statement per round: {statements:#?}"
    );
    guard.release().await.unwrap();
    assert_released_within_1s(&observer, lock.key(), "after the last round").await;
}

/// The same, while another process waits for the key in the server's queue: the
/// unlock runs first and grants it the key, so the try that came with it finds the
/// key busy, as it would have after the unlock alone.
#[tokio::test]
async fn a_key_retaken_at_once_goes_first_to_a_waiter_of_another_process() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let observer = observer().await;
    let locker = one_session_locker();
    let lock = AdvisoryLock::new(unique("relock:retaken-elsewhere"));
    let guard = lock.try_acquire(&locker).await.unwrap();
    let (elsewhere, elsewhere_pid, waiting_elsewhere) = wait_elsewhere(&lock).await;
    let key = key_of(&lock);
    assert_waiting(&observer, lock.key(), "the other process").await;
    common::counted::reset(&observer).await;

    drop(guard);
    let again = lock.try_acquire(&locker).await;
    assert!(
        matches!(again, Err(pglock::Error::Busy { .. })),
        "the other process's waiter went first: {again:?}"
    );
    tokio::time::timeout(PATIENCE, waiting_elsewhere)
        .await
        .expect("the other process gets the key")
        .unwrap()
        .unwrap();
    assert_eq!(holders(&observer, lock.key()).await, [elsewhere_pid]);
    let mut statements = lock_statements(&observer).await;
    // The library's statements: the other process's names no schema.
    statements.retain(|(text, _)| text.contains("pg_catalog."));
    assert!(
        matches!(&statements[..], [(text, 1)] if text.contains(RELOCK_TEXT)),
        "the unlock and the try went as one statement: {statements:#?}"
    );
    elsewhere
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    assert_released_within_1s(&observer, lock.key(), "after the other process").await;
}
