//! Guarantee 12, hostile session settings end cleanly: a tiny `statement_timeout`
//! (during a wait and during the body), `idle_session_timeout` (on a Pool's
//! session and on a Locker's lock session),
//! `idle_in_transaction_session_timeout` (the body leaves a transaction open on the
//! guard's session), and an aborted transaction left on the locked session each end
//! in a named `Error` or a released lock: never a panic, a hang, or a guard that
//! believes it holds a lock the server freed. Every outcome is checked in
//! `pg_locks`. (A lock held by a prepared transaction: `prepared_xacts.rs`.)

mod common;

use common::{unique, Foreign};
use deadpool_postgres::{Manager, Pool};
use pglock::{AdvisoryLock, Error, LockKey, Locker};
use tokio_postgres::NoTls;

/// A pool on the shared test database whose sessions start with `settings`
/// (`-c name=value ...`).
fn pool_with(settings: &str) -> Pool {
    let mut config = pglock::testdb::shared().config();
    config.options(settings);
    Pool::builder(Manager::new(config, NoTls))
        .max_size(4)
        .build()
        .unwrap()
}

fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

/// Bounds a step that must end by itself: a hang fails the test, not the suite.
async fn ends<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(common::pg_locks::PATIENCE, step)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: still running after {:?}",
                common::pg_locks::PATIENCE
            )
        })
}

#[tokio::test]
async fn a_statement_timeout_ends_a_wait_with_an_error_and_no_waiter() {
    let pool = pool_with("-c statement_timeout=200ms");
    let locker = Locker::new(pool.clone());
    let observer = common::observer().await;
    let name = unique("statement-timeout-wait");
    let key = key_of(&name);
    let holder = Foreign::holding(key).await;
    let lock = AdvisoryLock::new(name.as_str());
    for (through, result) in [
        (
            "pool",
            ends("pool wait", lock.acquire(&pool)).await.map(drop),
        ),
        (
            "locker",
            ends("locker wait", lock.acquire(&locker)).await.map(drop),
        ),
    ] {
        let error = result.expect_err("the key is held elsewhere");
        assert!(
            matches!(error, Error::Db { .. } | Error::Timeout { .. }),
            "{through}: {error:?}"
        );
        // No waiter of ours left queued, and no second holder.
        let rows = common::lock_rows(&observer, key).await;
        assert_eq!(
            rows.iter().map(|r| (r.pid, r.granted)).collect::<Vec<_>>(),
            [(holder.pid, true)],
            "{through}"
        );
    }
    holder.unlock(key).await;
    // The sessions still serve: the next acquisition works.
    ends("after", lock.try_acquire(&pool))
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    common::assert_released_within_1s(&observer, key, "release").await;
}

#[tokio::test]
async fn a_statement_timeout_in_the_body_leaves_a_working_release() {
    let pool = pool_with("");
    let observer = common::observer().await;
    let name = unique("statement-timeout-body");
    let key = key_of(&name);
    let guard = AdvisoryLock::new(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap();
    // The body makes its own session hostile: every statement from now on, the
    // unlock included, is cancelled after 1 ms.
    guard
        .batch_execute("SET statement_timeout = '1ms'")
        .await
        .unwrap();
    let slow = guard.execute("SELECT pg_sleep(1)", &[]).await;
    assert_eq!(
        slow.unwrap_err().code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "the premise: the body's statement was cancelled by statement_timeout"
    );
    assert_eq!(common::holders(&observer, key).await.len(), 1, "still held");
    // Released (the unlock ran) or an error (then the session is closed): the key
    // ends free either way.
    let _ = ends("release", guard.release()).await;
    common::assert_released_within_1s(&observer, key, "release under statement_timeout").await;
}

#[tokio::test]
async fn an_idle_session_timeout_is_a_lost_lock() {
    a_server_timeout_is_a_lost_lock("-c idle_session_timeout=300ms", "idle-session", "").await;
}

#[tokio::test]
async fn an_idle_transaction_timeout_in_the_body_is_a_lost_lock() {
    a_server_timeout_is_a_lost_lock(
        "-c idle_in_transaction_session_timeout=300ms",
        "idle-in-transaction",
        "BEGIN",
    )
    .await;
}

/// Holds a lock on a session running with `options`, runs `body` on it (empty for
/// nothing), and expects the server to end the session: the guard reports the loss,
/// the key is free, and the release says the lock was lost.
async fn a_server_timeout_is_a_lost_lock(options: &str, name: &str, body: &str) {
    let pool = pool_with(options);
    let observer = common::observer().await;
    let name = unique(name);
    let key = key_of(&name);
    let guard = AdvisoryLock::new(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap();
    guard.batch_execute(body).await.unwrap();
    assert_eq!(common::holders(&observer, key).await.len(), 1, "held");
    ends("loss noticed", guard.lost()).await;
    assert!(guard.is_lost());
    assert!(
        common::holders(&observer, key).await.is_empty(),
        "the server freed it"
    );
    let error = ends("release", guard.release()).await.unwrap_err();
    assert!(error.is_lost(), "{error:?}");
}

/// The body leaves its transaction in the failed state: the unlock cannot run in
/// it, so the release must end the session (or roll back first), never report a
/// release that did not happen and never leave the key held.
#[tokio::test]
async fn an_aborted_transaction_left_by_the_body_still_ends_the_lock() {
    let pool = pool_with("");
    let observer = common::observer().await;
    for how in ["release", "drop"] {
        let name = unique("aborted-transaction");
        let key = key_of(&name);
        let guard = AdvisoryLock::new(name.as_str())
            .try_acquire(&pool)
            .await
            .unwrap();
        guard.batch_execute("BEGIN").await.unwrap();
        let failed = guard.execute("SELECT 1/0", &[]).await.unwrap_err();
        assert_eq!(
            failed.code(),
            Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO),
            "the premise: the transaction is aborted"
        );
        match how {
            "release" => {
                let _ = ends("release", guard.release()).await;
            }
            _ => drop(guard),
        }
        common::assert_released_within_1s(&observer, key, how).await;
        // The pool hands out no session left in that transaction.
        let client = pool.get().await.unwrap();
        client.execute("SELECT 1", &[]).await.unwrap();
    }
}

/// A Locker's lock session left idle is ended by the server's
/// `idle_session_timeout`: every guard on it reports the loss, the server holds
/// nothing for them, and the next acquisition of the same key gets a new session.
#[tokio::test]
async fn an_idle_session_timeout_on_a_locker_session_is_a_lost_lock_and_a_new_session() {
    let locker = Locker::builder(pool_with("-c idle_session_timeout=500ms"))
        .sessions(1)
        .build();
    let observer = common::observer().await;
    let names = [unique("idle-locker:a"), unique("idle-locker:b")];
    let locks = names
        .each_ref()
        .map(|name| AdvisoryLock::new(name.as_str()));
    let mut guards = Vec::new();
    for lock in &locks {
        guards.push(lock.try_acquire(&locker).await.unwrap());
    }
    let [pid] = common::holders(&observer, locks[0].key()).await[..] else {
        panic!("one backend holds the first lock");
    };
    assert_eq!(
        common::holders(&observer, locks[1].key()).await,
        [pid],
        "the premise: both locks on one lock session"
    );

    for guard in &guards {
        ends("loss noticed", guard.lost()).await;
        assert!(guard.is_lost());
    }
    assert!(
        common::backend_gone_within(&observer, pid, common::pg_locks::PATIENCE).await,
        "the server ended the idle lock session"
    );
    for lock in &locks {
        common::assert_released_within_1s(&observer, lock.key(), "idle session ended").await;
    }
    for guard in guards {
        let error = ends("release", guard.release()).await.unwrap_err();
        assert!(error.is_lost(), "{error:?}");
    }

    let again = ends("again", locks[0].try_acquire(&locker)).await.unwrap();
    let now = common::holders(&observer, locks[0].key()).await;
    assert!(
        now.len() == 1 && now[0] != pid,
        "a new session holds it: {now:?}, not {pid}"
    );
    again.release().await.unwrap();
    common::assert_released_within_1s(&observer, locks[0].key(), "released again").await;
}
