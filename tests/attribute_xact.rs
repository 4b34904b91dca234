//! Live tests of `#[advisory_locked(xact = tx)]`: the lock is taken inside the
//! caller's transaction (`pg_advisory_xact_lock`), held while the body runs and
//! after it, and freed by the server at that transaction's commit or rollback.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_released_within_1s, holders, unique, AppError, Foreign};
use deadpool_postgres::{Client, Pool, Transaction};
use pglock::{advisory_locked, LockKey};

const SECOND: Duration = Duration::from_secs(1);

fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

async fn pid_of(tx: &Transaction<'_>) -> i32 {
    tx.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// Reports the transaction's backend and who holds the key while the body runs;
/// fails with the body's own error when asked to.
#[advisory_locked(key = "{name}", xact = tx)]
async fn in_tx(
    tx: &Transaction<'_>,
    name: &str,
    observer: &Client,
    fail: bool,
) -> Result<(i32, Vec<i32>), AppError> {
    let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let seen = holders(observer, LockKey::from_name(name)).await;
    if fail {
        return Err(AppError::Body("the body failed"));
    }
    Ok((pid, seen))
}

#[tokio::test]
async fn held_while_the_body_runs_and_until_commit() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-commit");
    let key = key_of(&name);
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();

    let (pid, seen) = in_tx(&tx, &name, &observer, false).await.unwrap();
    assert_eq!(
        seen,
        [pid],
        "the transaction's session holds the key in the body"
    );
    // The fn returned, but the transaction is open: the lock is still held.
    assert_eq!(holders(&observer, key).await, [pid], "held until commit");
    tx.commit().await.unwrap();
    assert_released_within_1s(&observer, key, "after commit").await;
}

#[tokio::test]
async fn held_until_rollback_even_when_the_body_fails() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-rollback");
    let key = key_of(&name);
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let pid = pid_of(&tx).await;

    let err = in_tx(&tx, &name, &observer, true).await.unwrap_err();
    assert!(matches!(err, AppError::Body("the body failed")), "{err:?}");
    // The fn does not end the transaction, so the lock outlives its error...
    assert_eq!(holders(&observer, key).await, [pid]);
    // ...until the caller rolls back.
    tx.rollback().await.unwrap();
    assert_released_within_1s(&observer, key, "after rollback").await;

    // A transaction dropped without commit or rollback is rolled back: freed too.
    let tx = client.transaction().await.unwrap();
    in_tx(&tx, &name, &observer, false).await.unwrap();
    assert_eq!(holders(&observer, key).await.len(), 1);
    drop(tx);
    assert_released_within_1s(&observer, key, "after the transaction was dropped").await;
}

#[advisory_locked(key = "{name}", xact = tx)]
async fn try_in_tx(tx: &Transaction<'_>, name: &str, ran: &AtomicUsize) -> Result<u8, AppError> {
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(1)
}

#[tokio::test]
async fn busy_at_once_when_held_elsewhere() {
    let pool = common::pool(4);
    let name = unique("xact-busy");
    let ran = AtomicUsize::new(0);
    let mut client = pool.get().await.unwrap();

    // Held by another session's session lock.
    let holder = Foreign::holding(key_of(&name)).await;
    let tx = client.transaction().await.unwrap();
    let started = Instant::now();
    let err = try_in_tx(&tx, &name, &ran).await.unwrap_err();
    assert!(err.lock().is_busy(), "{err:?}");
    assert!(err.lock().to_string().contains(&name), "{}", err.lock());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Busy without waiting"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the body must not run");
    // pg_try_advisory_xact_lock fails without an error: the transaction goes on.
    tx.query_one("SELECT 1", &[]).await.unwrap();
    tx.rollback().await.unwrap();
    holder.unlock(key_of(&name)).await;

    // Held by another transaction's xact lock, until that one commits.
    let mut other = pool.get().await.unwrap();
    let other_tx = other.transaction().await.unwrap();
    try_in_tx(&other_tx, &name, &ran).await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert!(try_in_tx(&tx, &name, &ran)
        .await
        .unwrap_err()
        .lock()
        .is_busy());
    other_tx.commit().await.unwrap();
    try_in_tx(&tx, &name, &ran).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}

#[advisory_locked(key = "{name}", xact = tx, wait)]
async fn wait_in_tx(tx: &Transaction<'_>, name: &str, ran: &AtomicUsize) -> Result<u8, AppError> {
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(2)
}

#[tokio::test]
async fn wait_waits_in_the_transaction_then_proceeds() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-wait");
    let key = key_of(&name);
    let ran = Arc::new(AtomicUsize::new(0));
    let holder = Foreign::holding(key).await;

    // Spawned: the future of an xact fn is Send.
    let call = tokio::spawn({
        let (pool, name, ran) = (pool.clone(), name.clone(), ran.clone());
        async move {
            let mut client = pool.get().await.unwrap();
            let tx = client.transaction().await.unwrap();
            let pid = pid_of(&tx).await;
            let out = wait_in_tx(&tx, &name, &ran).await;
            let held_by = holders(&pool.get().await.unwrap(), LockKey::from_name(&name)).await;
            tx.commit().await.unwrap();
            (out, pid, held_by)
        }
    });
    // Still waiting, on the server, while the other session holds it.
    common::assert_waiting(&observer, key, "the transaction's wait").await;
    assert!(!call.is_finished(), "must wait while the lock is held");
    assert_eq!(ran.load(Ordering::SeqCst), 0);

    holder.unlock(key).await;
    let (out, pid, held_by) = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("granted once released")
        .unwrap();
    assert_eq!(out.unwrap(), 2);
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(held_by, [pid], "granted to the waiting transaction");
    assert_released_within_1s(&observer, key, "after commit").await;
}

#[advisory_locked(key = "{name}", xact = tx, skip)]
async fn skip_in_tx(
    tx: &Transaction<'_>,
    name: &str,
    ran: &AtomicUsize,
) -> Result<Vec<u8>, AppError> {
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(vec![1, 2])
}

#[tokio::test]
async fn skip_returns_default_without_running_the_body() {
    let pool = common::pool(4);
    let name = unique("xact-skip");
    let ran = AtomicUsize::new(0);
    let mut client = pool.get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    assert_eq!(skip_in_tx(&tx, &name, &ran).await.unwrap(), [1, 2]);
    tx.commit().await.unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);

    let holder = Foreign::holding(key_of(&name)).await;
    let tx = client.transaction().await.unwrap();
    assert_eq!(
        skip_in_tx(&tx, &name, &ran).await.unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1, "a skipped body must not run");
    tx.commit().await.unwrap();
    holder.unlock(key_of(&name)).await;
}

#[advisory_locked(key = "{name}", xact = tx, shared)]
async fn read_in_tx(tx: &Transaction<'_>, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[tokio::test]
async fn shared_xact_locks_coexist_and_keep_an_exclusive_one_out() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-shared");
    let key = key_of(&name);
    let ran = AtomicUsize::new(0);
    let (mut a, mut b, mut c) = (
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
        pool.get().await.unwrap(),
    );
    let (ta, tb) = (
        a.transaction().await.unwrap(),
        b.transaction().await.unwrap(),
    );
    read_in_tx(&ta, &name).await.unwrap();
    read_in_tx(&tb, &name).await.unwrap();
    let mut expected = vec![pid_of(&ta).await, pid_of(&tb).await];
    expected.sort();
    assert_eq!(
        holders(&observer, key).await,
        expected,
        "two shared holders"
    );
    let tc = c.transaction().await.unwrap();
    assert!(try_in_tx(&tc, &name, &ran)
        .await
        .unwrap_err()
        .lock()
        .is_busy());
    ta.commit().await.unwrap();
    tb.rollback().await.unwrap();
    try_in_tx(&tc, &name, &ran).await.unwrap();
    tc.commit().await.unwrap();
    assert_released_within_1s(&observer, key, "after both ended").await;
}

/// The same signature with a plain `tokio_postgres` transaction.
#[advisory_locked(key = "{name}", xact = tx)]
async fn in_plain_tx(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    observer: &Client,
) -> Result<Vec<i32>, AppError> {
    Ok(holders(observer, LockKey::from_name(name)).await)
}

#[tokio::test]
async fn a_tokio_postgres_transaction_works_too() {
    let pool = common::pool(2);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-plain");
    let (mut client, connection) = pglock::testdb::shared()
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tx = client.transaction().await.unwrap();
    let pid: i32 = tx
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_plain_tx(&tx, &name, &observer).await.unwrap(), [pid]);
    tx.commit().await.unwrap();
    assert_released_within_1s(&observer, key_of(&name), "after commit").await;
}

/// An xact fn that calls another on the same transaction and key.
#[advisory_locked(key = "{name}", xact = tx, wait)]
async fn outer_in_tx(tx: &Transaction<'_>, name: &str, ran: &AtomicUsize) -> Result<u8, AppError> {
    let inner = tokio::time::timeout(SECOND, wait_in_tx(tx, name, ran))
        .await
        .expect("an xact lock is re-entrant within its transaction")?;
    Ok(inner + 1)
}

#[tokio::test]
async fn nested_in_the_same_transaction_is_reentrant() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-reentrant");
    let ran = AtomicUsize::new(0);
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    assert_eq!(outer_in_tx(&tx, &name, &ran).await.unwrap(), 3);
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the inner body ran");
    assert_eq!(holders(&observer, key_of(&name)).await, [pid_of(&tx).await]);
    tx.commit().await.unwrap();
    assert_released_within_1s(&observer, key_of(&name), "after commit").await;
}

/// A session lock on `name`, whose body calls an xact fn on the same key in a
/// transaction of its own.
#[advisory_locked(key = "{name}", wait)]
async fn session_then_xact(pool: &Pool, name: &str, wait: bool) -> Result<(), AppError> {
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await?;
    let ran = AtomicUsize::new(0);
    let inner = if wait {
        tokio::time::timeout(SECOND, wait_in_tx(&tx, name, &ran))
            .await
            .expect("refused at once: the enclosing body holds the key on another session")
    } else {
        try_in_tx(&tx, name, &ran).await
    };
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    inner.map(drop)
}

#[tokio::test]
async fn xact_inside_a_body_holding_the_key_would_deadlock_or_is_busy() {
    let pool = common::pool(4);
    let name = unique("xact-in-session");
    let err = session_then_xact(&pool, &name, true).await.unwrap_err();
    assert!(
        matches!(err.lock(), pglock::Error::WouldDeadlock { .. }),
        "{err:?}"
    );
    assert!(err.lock().to_string().contains(&name), "{}", err.lock());
    let err = session_then_xact(&pool, &name, false).await.unwrap_err();
    assert!(err.lock().is_busy(), "{err:?}");
}

#[tokio::test]
async fn the_transactions_own_lock_timeout_bounds_wait_and_aborts_it() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("xact-lock-timeout");
    let key = key_of(&name);
    let ran = AtomicUsize::new(0);
    let holder = Foreign::holding(key).await;
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL lock_timeout = '200ms'")
        .await
        .unwrap();

    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), wait_in_tx(&tx, &name, &ran))
        .await
        .expect("the transaction's lock_timeout ends the wait")
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    match err.lock() {
        pglock::Error::Timeout { after: None, .. } => {}
        other => panic!("expected the server's Timeout, got {other:?}"),
    }
    assert!(err.lock().to_string().contains(&name), "{}", err.lock());
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the body must not run");
    // A failed statement aborts the transaction: the caller must roll back.
    let aborted = tx.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        aborted.code(),
        Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION),
        "{aborted}"
    );
    tx.rollback().await.unwrap();
    assert_eq!(holders(&observer, key).await, [holder.pid]);
    holder.unlock(key).await;
}

/// `(message, how)` of the events about the lock `name`.
fn traced(name: &str) -> Vec<(String, String)> {
    common::capture::Capture::global()
        .about(name)
        .iter()
        .map(|e| {
            let field = |key| e.field(key).unwrap_or("").to_string();
            (field("message"), field("how"))
        })
        .collect()
}

#[tokio::test]
async fn xact_acquisitions_are_traced_like_every_other() {
    common::capture::Capture::global();
    let pool = common::pool(4);
    let name = unique("xact-traced");
    let ran = AtomicUsize::new(0);
    let mut client = pool.get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    try_in_tx(&tx, &name, &ran).await.unwrap();
    wait_in_tx(&tx, &name, &ran).await.unwrap();
    tx.commit().await.unwrap();
    let holder = Foreign::holding(key_of(&name)).await;
    let tx = client.transaction().await.unwrap();
    try_in_tx(&tx, &name, &ran).await.unwrap_err();
    tx.rollback().await.unwrap();
    holder.unlock(key_of(&name)).await;

    let acquired = "advisory lock acquired".to_owned();
    assert_eq!(
        traced(&name),
        [
            (acquired.clone(), "xact try".to_owned()),
            (acquired, "xact wait".to_owned()),
            ("advisory lock busy".to_owned(), "xact try".to_owned()),
        ]
    );
}
