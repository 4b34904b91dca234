//! Guarantee 10 (time limits are contracts) and the nested-wait cancel: a try or a
//! bounded wait never waits behind a statement another body left running on a session
//! we would reuse, nor behind our own unlock on a session whose backend stopped
//! answering (`SIGSTOP`, on a cluster of the test's own), a try never waits for a pool
//! connection to be freed, and cancelling a dropped nested wait never hits the body's
//! own query. The tests assert the mechanism (what the server shows while the answer comes),
//! never a duration.

mod common;

use std::time::Duration;

use common::{gone_within, observer, pool, unique, AppError, Foreign};
use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, Error, LockGuard};
use tokio_postgres::Client as Observer;

const SLEEP: &str = "SELECT pg_catalog.pg_sleep(3)";

/// The backend pid of the session behind `client`.
async fn pid_of(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// What backend `pid` runs now, if it is running a statement.
async fn running(observer: &Observer, pid: i32) -> Option<String> {
    observer
        .query_opt(
            "SELECT query FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
            &[&pid],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

/// Polls until backend `pid` is seen running `query`; fails the test otherwise.
async fn assert_running(observer: &Observer, pid: i32, query: &str) {
    for _ in 0..500 {
        if running(observer, pid).await.as_deref() == Some(query) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} was never seen running {query}");
}

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

#[advisory_locked(key = "{name}", wait)]
async fn nested_wait(pool: &Pool, name: &str) -> Result<(), AppError> {
    Ok(())
}

const BODY_QUERY: &str = "SELECT pg_catalog.pg_sleep(1)";

/// Holds `outer` and, on its session, runs its own query beside a nested wait for
/// `inner` (held elsewhere) that is dropped while the query runs. The nested wait is
/// then already sent, queued on the session behind the query (its statement was
/// prepared on this session before), so dropping it sends a cancel while the
/// body's query is what the backend runs. Returns the body's answer, and whether
/// the nested wait was then seen waiting in `pg_locks` (so it reached the server).
#[advisory_locked(key = "{outer}", pool = pool, guard = conn)]
async fn body_beside_a_dropped_nested_wait(
    pool: &Pool,
    outer: &str,
    inner: &str,
    observer: &Observer,
) -> Result<bool, AppError> {
    let pid = pid_of(conn).await;
    // Prepared first, so that the query goes out at its first poll, ahead of the
    // nested wait's statement on the same session.
    let statement = conn.prepare(BODY_QUERY).await?;
    let own_query = conn.query(&statement, &[]);
    let nested = async {
        tokio::select! {
            _ = nested_wait(pool, inner) => panic!("the nested wait ended though {inner} is held"),
            () = assert_running(observer, pid, BODY_QUERY) => {}
        }
    };
    let (answer, ()) = tokio::join!(own_query, nested);
    answer?;
    let inner_key = AdvisoryLock::new(inner).key();
    Ok(seen_waiting(observer, inner_key, pid).await)
}

/// Whether backend `pid` is seen waiting for `key` before that wait ends: read as
/// fast as the observer answers, since a cancel is due at any moment.
async fn seen_waiting(observer: &Observer, key: pglock::LockKey, pid: i32) -> bool {
    for _ in 0..2000 {
        let rows = common::lock_rows(observer, key).await;
        if rows.iter().any(|row| row.pid == pid && !row.granted) {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

#[tokio::test]
async fn a_dropped_nested_wait_does_not_cancel_the_bodys_own_query() {
    // One connection: the warm-up below and the body run on the same session.
    let pool = pool(1);
    let observer = observer().await;
    let (outer, inner) = (unique("limits:outer"), unique("limits:inner"));
    let inner_key = AdvisoryLock::new(&inner).key();
    // The nested wait's statement is prepared on the session now, so in the body the
    // wait is sent at its first poll instead of being dropped while a prepare queues.
    nested_wait(&pool, &inner).await.unwrap();
    let holder = Foreign::holding(inner_key).await;

    let result = body_beside_a_dropped_nested_wait(&pool, &outer, &inner, &observer).await;
    let seen = match result {
        Ok(seen) => seen,
        Err(e) => panic!("the body's own query was cancelled: {e:?}"),
    };
    assert!(
        seen,
        "the nested wait never reached the server: nothing was cancelled"
    );

    // The nested wait reached the server after the body's query; it is cancelled there.
    let no_waiter = |rows: Vec<common::LockRow>| {
        if rows.iter().all(|row| row.granted) {
            Ok(())
        } else {
            Err(rows)
        }
    };
    let left =
        common::pg_locks::poll(&observer, inner_key, Duration::from_secs(10), no_waiter).await;
    assert!(
        left.is_ok(),
        "the dropped nested wait left a waiter: {left:?}"
    );
    drop(holder);
}

/// Sends `signal` (`STOP`, `CONT`) to backend `pid`, as the server's own host would.
fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A backend stopped with `SIGSTOP` until this is dropped (a failed assertion
/// included): a stopped backend would keep the test's cluster from shutting down.
struct Stopped(i32);

impl Stopped {
    fn backend(pid: i32) -> Stopped {
        signal(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
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
