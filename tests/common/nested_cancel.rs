//! A nested wait dropped while its body's own query runs on the same session: the
//! cancel must reach the wait, never the query (guarantees 8 and 9).

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, LockKey};
use tokio_postgres::Client;

use super::backend::{assert_running, pid_of};
use super::{lock_rows, pg_locks, AppError, LockRow};

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
    observer: &Client,
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
async fn seen_waiting(observer: &Client, key: LockKey, pid: i32) -> bool {
    for _ in 0..2000 {
        let rows = lock_rows(observer, key).await;
        if rows.iter().any(|row| row.pid == pid && !row.granted) {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// On `pool` (of one connection, so the warm-up and the body share a session): the
/// nested wait's statement is prepared first, so in the body the wait is sent at
/// its first poll instead of being dropped while a prepare queues; then `hold_inner`
/// has `inner` held elsewhere, the body runs, and its own query must not have been
/// cancelled, the nested wait must have reached the server, and no waiter may be
/// left for `inner`.
pub async fn assert_a_dropped_nested_wait_spares_the_body<H>(
    pool: &Pool,
    observer: &Client,
    (outer, inner): (&str, &str),
    hold_inner: impl Future<Output = H>,
) {
    nested_wait(pool, inner).await.unwrap();
    let holder = hold_inner.await;

    let result = body_beside_a_dropped_nested_wait(pool, outer, inner, observer).await;
    let seen = match result {
        Ok(seen) => seen,
        Err(e) => panic!("the body's own query was cancelled: {e:?}"),
    };
    assert!(
        seen,
        "the nested wait never reached the server: nothing was cancelled"
    );

    // The nested wait reached the server after the body's query; it is cancelled there.
    let no_waiter = |rows: Vec<LockRow>| {
        if rows.iter().all(|row| row.granted) {
            Ok(())
        } else {
            Err(rows)
        }
    };
    let inner_key = AdvisoryLock::new(inner).key();
    let left = pg_locks::poll(observer, inner_key, Duration::from_secs(10), no_waiter).await;
    assert!(
        left.is_ok(),
        "the dropped nested wait left a waiter: {left:?}"
    );
    drop(holder);
}
