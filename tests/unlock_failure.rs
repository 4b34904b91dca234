//! A guard dropped without `release()` queues its unlock; when that unlock fails,
//! the failure is logged and the connection is closed, never handed out again.

mod common;

use std::time::Duration;

use common::capture::Capture;
use common::unique;
use pglock::AdvisoryLock;
use tracing::Level;

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_queued_unlock_is_logged_and_its_connection_discarded() {
    let capture = Capture::global();
    let observer = common::observer().await;
    let pool = common::pool(1);
    let name = unique("failed-unlock");
    let lock = AdvisoryLock::new(name.as_str());

    let guard = lock.try_acquire(&pool).await.unwrap();
    let locked_pid = backend_pid(&guard).await;
    // Behind the library's back: the session no longer holds the lock, so the
    // unlock queued when the guard is dropped finds nothing to unlock.
    guard
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    assert!(common::lock_rows(&observer, lock.key()).await.is_empty());
    drop(guard);

    // The pool has one slot: it is free again only once the session is let go, so
    // this waits for the queued unlock's task to finish.
    let next = tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .expect("the connection of the failed unlock was never let go")
        .unwrap();
    let next_pid = backend_pid(&next).await;
    assert_ne!(
        next_pid, locked_pid,
        "the connection whose unlock failed went back to the pool"
    );

    // (a) logged: a warning naming the lock.
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

    // (b) discarded: its backend is gone from the server, not idle in some pool.
    assert!(
        common::backend_gone_within(&observer, locked_pid, Duration::from_secs(5)).await,
        "backend {locked_pid} is still connected 5 s after its unlock failed"
    );
}
