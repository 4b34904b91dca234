//! Live tests: the lock an annotated fn takes is released on every way out of its
//! body (a value, an `Err`, `?`, a panic in a spawned task, the future dropped
//! mid-body), as the server sees it: `pg_locks` shows no holder within a second.
//! Each test first shows the lock *was* held inside the body, so that "released"
//! cannot pass for a lock never taken.

mod common;

use std::time::Duration;

use common::{assert_released_within_1s, holders, unique, AppError, Exit};
use deadpool_postgres::{Client, Pool};
use pglock::{advisory_locked, LockKey};
use tokio::sync::oneshot;

#[advisory_locked(key = "{name}", guard = conn)]
async fn body(
    pool: &Pool,
    name: &str,
    exit: Exit,
    inside: oneshot::Sender<Vec<i32>>,
    observer: &Client,
) -> Result<u32, AppError> {
    // Who holds the key, seen from another session, while the body runs; and the
    // pid of the session the lock lives on.
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let mut seen = holders(observer, LockKey::from_name(name)).await;
    seen.push(pid);
    inside.send(seen).unwrap();
    common::leave!(exit)
}

/// Checks what the body reported: exactly its own session held the key.
fn assert_held_inside(seen: Vec<i32>, exit: Exit) {
    let (holder, pid) = (&seen[..seen.len() - 1], seen[seen.len() - 1]);
    assert_eq!(holder, [pid], "{exit:?}: the body's session holds the key");
}

async fn setup(label: &str) -> (Pool, Client, String, LockKey) {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique(label);
    let key = LockKey::from_name(&name);
    (pool, observer, name, key)
}

#[tokio::test]
async fn released_after_a_value() {
    let (pool, observer, name, key) = setup("release-value").await;
    let (tx, rx) = oneshot::channel();
    let out = body(&pool, &name, Exit::Value, tx, &observer).await;
    assert_eq!(out.unwrap(), 1);
    assert_held_inside(rx.await.unwrap(), Exit::Value);
    assert_released_within_1s(&observer, key, "after Ok").await;
}

#[tokio::test]
async fn released_after_err_and_the_bodys_error_is_kept() {
    let (pool, observer, name, key) = setup("release-err").await;
    let (tx, rx) = oneshot::channel();
    let out = body(&pool, &name, Exit::Err, tx, &observer).await;
    assert!(
        matches!(out, Err(AppError::Body("returned Err"))),
        "{out:?}"
    );
    assert_held_inside(rx.await.unwrap(), Exit::Err);
    assert_released_within_1s(&observer, key, "after Err").await;
}

#[tokio::test]
async fn released_after_question_mark() {
    let (pool, observer, name, key) = setup("release-question").await;
    let (tx, rx) = oneshot::channel();
    let out = body(&pool, &name, Exit::Question, tx, &observer).await;
    assert!(matches!(out, Err(AppError::Body("via ?"))), "{out:?}");
    assert_held_inside(rx.await.unwrap(), Exit::Question);
    assert_released_within_1s(&observer, key, "after ?").await;
}

#[tokio::test]
async fn released_after_a_panic_in_a_spawned_task() {
    let (pool, observer, name, key) = setup("release-panic").await;
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        let observer = pool.get().await.unwrap();
        async move { body(&pool, &name, Exit::Panic, tx, &observer).await }
    });
    let err = task.await.unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    assert_held_inside(rx.await.unwrap(), Exit::Panic);
    assert_released_within_1s(&observer, key, "after a panic").await;
}

#[tokio::test]
async fn released_when_the_future_is_dropped_mid_body() {
    let (pool, observer, name, key) = setup("release-drop").await;
    let (tx, rx) = oneshot::channel();
    let call = body(&pool, &name, Exit::Hang, tx, &observer);
    tokio::select! {
        out = call => panic!("the body hangs, yet it returned {out:?}"),
        seen = rx => assert_held_inside(seen.unwrap(), Exit::Hang),
    }
    // `call` was dropped with the select, in the middle of its body.
    assert_released_within_1s(&observer, key, "after the future was dropped").await;

    // And the key is free for the next caller at once.
    let (tx, _rx) = oneshot::channel();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        body(&pool, &name, Exit::Value, tx, &observer),
    )
    .await
    .unwrap();
    assert_eq!(out.unwrap(), 1);
}
