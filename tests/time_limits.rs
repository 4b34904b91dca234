//! Guarantee 10 (time limits are contracts) and the nested-wait cancel: a try or a
//! bounded wait never waits behind a statement another body left running on a session
//! we would reuse, nor behind our own unlock on a session whose backend stopped
//! answering (`SIGSTOP`, on a cluster of the test's own), a try never waits for a pool
//! connection to be freed, and cancelling a dropped nested wait never hits the body's
//! own query. The tests assert the mechanism (what the server shows while the answer comes),
//! never a duration.

mod common;

use std::time::Duration;

use common::backend::{assert_running, pid_of, running, Stopped};
use common::{gone_within, observer, pool, unique, Foreign};
use deadpool_postgres::Pool;
use pglock::{AdvisoryLock, Error, LockGuard};
use tokio_postgres::Client as Observer;

const SLEEP: &str = "SELECT pg_catalog.pg_sleep(3)";

/// The backend pid of the session behind `client`.
/// Takes `lock` from `pool`, starts a long statement on the guard's session and drops
/// that body while the statement runs: the guard's unlock is then queued behind it.
/// Returns the busy session's pid.
async fn drop_body_during_its_statement(
    pool: &Pool,
    lock: &AdvisoryLock,
    observer: &Observer,
) -> i32 {
    let guard = lock.try_acquire(pool).await.unwrap();
    let pid = pid_of(&guard).await;
    let body = async move { guard.query(SLEEP, &[]).await };
    tokio::select! {
        _ = body => panic!("the body's statement ended before it was seen running"),
        () = assert_running(observer, pid, SLEEP) => {}
    }
    pid
}

#[tokio::test]
async fn a_try_is_answered_while_a_dropped_bodys_statement_still_runs() {
    let (answer, ..) = answered_while_a_dropped_bodys_statement_runs(
        "limits:try-behind",
        |lock, pool| async move { lock.try_acquire(&pool).await },
    )
    .await;
    assert!(
        matches!(&answer, Err(e) if e.is_busy()),
        "the key is still held by the busy session: {answer:?}"
    );
}

#[tokio::test]
async fn a_bounded_wait_times_out_while_a_dropped_bodys_statement_still_runs() {
    let (answer, observer, lock) = answered_while_a_dropped_bodys_statement_runs(
        "limits:timeout-behind",
        |lock, pool| async move {
            lock.acquire_timeout(&pool, Duration::from_millis(500))
                .await
        },
    )
    .await;
    assert!(
        matches!(&answer, Err(e) if e.is_timeout()),
        "the key is held by the busy session for the whole limit: {answer:?}"
    );
    let left: Vec<_> = gone_within(&observer, lock.key(), Duration::from_secs(10))
        .await
        .into_iter()
        .filter(|row| !row.granted)
        .collect();
    assert!(
        left.is_empty(),
        "the timed-out wait left a waiter: {left:?}"
    );
}

/// Drops a body holding a lock during its own long statement, then asks for the
/// same key with `ask`; checks the answer came while that statement still ran.
async fn answered_while_a_dropped_bodys_statement_runs<F, Fut>(
    label: &str,
    ask: F,
) -> (Result<LockGuard, Error>, Observer, AdvisoryLock)
where
    F: FnOnce(AdvisoryLock, Pool) -> Fut,
    Fut: std::future::Future<Output = Result<LockGuard, Error>>,
{
    let pool = pool(4);
    let observer = observer().await;
    let lock = AdvisoryLock::new(unique(label));
    let busy = drop_body_during_its_statement(&pool, &lock, &observer).await;

    let answer = ask(lock.clone(), pool.clone()).await;
    let still = running(&observer, busy).await;
    assert_eq!(
        still.as_deref(),
        Some(SLEEP),
        "answered only after the other body's statement ended: {answer:?}"
    );
    (answer, observer, lock)
}

#[tokio::test]
async fn a_dropped_nested_wait_does_not_cancel_the_bodys_own_query() {
    // One connection: the warm-up and the body run on the same session.
    let pool = pool(1);
    let observer = observer().await;
    let (outer, inner) = (unique("limits:outer"), unique("limits:inner"));
    let hold_inner = Foreign::holding(AdvisoryLock::new(&inner).key());
    common::nested_cancel::assert_a_dropped_nested_wait_spares_the_body(
        &pool,
        &observer,
        (&outer, &inner),
        hold_inner,
    )
    .await;
}

/// Only a hang takes this long; the tests assert what the server shows, not a speed.
const HANG: Duration = Duration::from_secs(30);

/// Takes `name` from `pool`, stops the holder's backend, then drops the guard: its
/// unlock is sent to a backend that does not answer, and the session is kept for
/// the next lock of the key. Returns the stopped backend.
async fn release_to_a_stopped_backend(
    pool: &Pool,
    lock: &AdvisoryLock,
    observer: &Observer,
) -> Stopped {
    let guard = lock.try_acquire(pool).await.unwrap();
    // Asked from outside: the guard's client stays unlent, as for a body that never
    // touched it.
    let pid = common::pg_locks::holders(observer, lock.key()).await[0];
    let stopped = Stopped::backend(pid);
    drop(guard);
    stopped
}

/// Asks for `lock` with `ask` right after its guard's unlock went to a stopped
/// backend; checks the answer came while that backend was still stopped (so the
/// server still shows it holding the key) and that nothing is left once it runs.
async fn answered_while_the_released_backend_is_stopped<F, Fut>(
    label: &str,
    pool_size: usize,
    ask: F,
) -> Result<LockGuard, Error>
where
    F: FnOnce(AdvisoryLock, Pool) -> Fut,
    Fut: std::future::Future<Output = Result<LockGuard, Error>>,
{
    let cluster = pglock::testdb::Cluster::start().unwrap();
    let pool = cluster.db().pool(pool_size);
    let observer = cluster.db().connect().await.unwrap();
    let lock = AdvisoryLock::new(label);
    let stopped = release_to_a_stopped_backend(&pool, &lock, &observer).await;

    let answer = tokio::time::timeout(HANG, ask(lock.clone(), pool.clone()))
        .await
        .expect("the answer waited for the stopped backend");
    let holders = common::pg_locks::holders(&observer, lock.key()).await;
    assert_eq!(
        holders,
        vec![stopped.0],
        "answered while the stopped backend still holds the key: {answer:?}"
    );
    drop(stopped);
    let left = gone_within(&observer, lock.key(), common::pg_locks::PATIENCE).await;
    assert!(left.is_empty(), "left on the server once it ran: {left:?}");
    answer
}

#[tokio::test]
async fn a_try_is_answered_while_the_released_sessions_backend_is_stopped() {
    let answer = answered_while_the_released_backend_is_stopped(
        "limits:try-stopped",
        4,
        |lock, pool| async move { lock.try_acquire(&pool).await },
    )
    .await;
    assert!(
        matches!(&answer, Err(e) if e.is_busy()),
        "the stopped backend still holds the key: {answer:?}"
    );
}

#[tokio::test]
async fn a_bounded_wait_times_out_while_the_released_sessions_backend_is_stopped() {
    let answer = answered_while_the_released_backend_is_stopped(
        "limits:timeout-stopped",
        4,
        |lock, pool| async move {
            lock.acquire_timeout(&pool, Duration::from_millis(500))
                .await
        },
    )
    .await;
    assert!(
        matches!(&answer, Err(e) if e.is_timeout()),
        "the stopped backend holds the key for the whole limit: {answer:?}"
    );
}

/// Whether `answer` is the pool's refusal to wait for a connection to be freed.
fn no_free_connection<G>(answer: &Result<G, Error>) -> bool {
    use deadpool_postgres::{PoolError, TimeoutType};
    matches!(
        answer,
        Err(Error::Pool {
            source: PoolError::Timeout(TimeoutType::Wait),
            ..
        })
    )
}

#[tokio::test]
async fn a_try_with_no_other_connection_to_ask_on_fails_while_the_backend_is_stopped() {
    let answer = answered_while_the_released_backend_is_stopped(
        "limits:try-stopped-alone",
        1,
        |lock, pool| async move { lock.try_acquire(&pool).await },
    )
    .await;
    assert!(
        no_free_connection(&answer),
        "the pool's one connection is the silent one: {answer:?}"
    );
}

#[tokio::test]
async fn a_try_on_an_exhausted_pool_does_not_wait_for_a_connection() {
    let pool = pool(2);
    let observer = observer().await;
    let held: Vec<AdvisoryLock> = (0..2)
        .map(|_| AdvisoryLock::new(unique("limits:exhausting")))
        .collect();
    let mut guards = Vec::new();
    for lock in &held {
        guards.push(lock.try_acquire(&pool).await.unwrap());
    }
    let lock = AdvisoryLock::new(unique("limits:exhausted"));

    let answer = tokio::time::timeout(HANG, lock.try_acquire(&pool))
        .await
        .expect("the try waited for a connection to be freed");
    for other in &held {
        let holders = common::pg_locks::holders(&observer, other.key()).await;
        assert_eq!(holders.len(), 1, "answered while both connections are held");
    }
    assert!(
        no_free_connection(&answer),
        "no connection could be had without waiting: {answer:?}"
    );
    // The control: with a connection free, the same try is granted.
    drop(guards.pop());
    let answer = lock.try_acquire(&pool).await;
    assert!(answer.is_ok(), "a connection was free: {answer:?}");
}

#[tokio::test]
async fn a_silent_parked_session_keeps_only_itself_out_of_the_pool() {
    let cluster = pglock::testdb::Cluster::start().unwrap();
    let pool = cluster.db().pool(2);
    let observer = cluster.db().connect().await.unwrap();
    let (silent, healthy) = (
        AdvisoryLock::new("limits:silent"),
        AdvisoryLock::new("limits:healthy"),
    );
    let healthy_guard = healthy.try_acquire(&pool).await.unwrap();
    // Both guards dropped together: both sessions are parked, and nobody takes them.
    let stopped = release_to_a_stopped_backend(&pool, &silent, &observer).await;
    drop(healthy_guard);

    let client = tokio::time::timeout(HANG, pool.get())
        .await
        .expect("the healthy session stayed out of the pool behind the silent one")
        .unwrap();
    let holders = common::pg_locks::holders(&observer, silent.key()).await;
    assert_eq!(
        holders,
        vec![stopped.0],
        "taken while the other backend was stopped"
    );
    drop(client);
    drop(stopped);
    let left = gone_within(&observer, silent.key(), common::pg_locks::PATIENCE).await;
    assert!(left.is_empty(), "left on the server once it ran: {left:?}");
}

#[tokio::test]
async fn a_locker_try_on_an_exhausted_pool_does_not_wait_for_a_connection() {
    let pool = pool(1);
    let locker = pglock::Locker::new(pool.clone());
    let lock = AdvisoryLock::new(unique("limits:locker-exhausted"));
    // The pool's one connection is out, so the Locker cannot open its lock session.
    let client = pool.get().await.unwrap();

    let answer = tokio::time::timeout(HANG, lock.try_acquire(&locker))
        .await
        .expect("the Locker's try waited for a connection to be freed");
    assert!(
        no_free_connection(&answer),
        "no connection could be had without waiting: {answer:?}"
    );
    // The control: with the connection back, the same try is granted.
    drop(client);
    let answer = lock.try_acquire(&locker).await;
    assert!(answer.is_ok(), "a connection was free: {answer:?}");
}

#[tokio::test]
async fn a_locker_readers_try_does_not_wait_for_a_connection_to_ask_on() {
    let pool = pool(2);
    let observer = observer().await;
    let locker = pglock::Locker::new(pool.clone());
    let lock = AdvisoryLock::new(unique("limits:locker-reader")).shared();
    let reader = lock.try_acquire(&locker).await.unwrap();
    // One connection is the lock session holding the key shared, the other is out:
    // a second reader has no connection to ask the server on about writers.
    let client = pool.get().await.unwrap();
    assert_eq!(
        common::pg_locks::holders(&observer, lock.key()).await.len(),
        1
    );

    let answer = tokio::time::timeout(HANG, lock.try_acquire(&locker))
        .await
        .expect("the reader's try waited for a connection to be freed");
    assert!(
        no_free_connection(&answer),
        "no connection to ask on without waiting: {answer:?}"
    );
    // The control: with a connection free, the second reader joins the first.
    drop(client);
    let second = lock.try_acquire(&locker).await;
    assert!(second.is_ok(), "a connection was free: {second:?}");
    drop((reader, second));
}
