//! The seed's three tests, against the live server: the lock "goldleader" guards a
//! session we can query, excludes a second taker in this process, and excludes
//! another OS process until it is released.

mod common;

use std::process::Stdio;

use pglock::{AdvisoryLock, Error};

/// The three tests all use the key "goldleader"; they take turns.
static GOLDLEADER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn guard_runs_queries_on_the_locked_session() {
    let _turn = GOLDLEADER.lock().await;
    let pool = common::pool(4);
    let guard = AdvisoryLock::new("goldleader")
        .try_acquire(&pool)
        .await
        .unwrap();
    let one: i32 = guard.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(
        common::advisory_locks_of(&guard).await,
        1,
        "the guard's session holds the lock"
    );
    guard.release().await.unwrap();
}

#[tokio::test]
async fn second_try_acquire_in_scope_is_busy() {
    let _turn = GOLDLEADER.lock().await;
    let pool = common::pool(4);
    let lock = AdvisoryLock::new("goldleader");
    let guard = lock.try_acquire(&pool).await.unwrap();
    let second = lock.try_acquire(&pool).await;
    match second {
        Err(Error::Busy { lock: id }) => {
            assert_eq!(id.name(), Some("goldleader"));
            let message = Error::Busy { lock: id }.to_string();
            assert!(message.contains("`goldleader`"), "{message}");
            assert!(message.contains(&lock.key().to_string()), "{message}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    guard.release().await.unwrap();
    // Released: the same call now succeeds.
    lock.try_acquire(&pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn another_process_is_excluded_until_release() {
    let _turn = GOLDLEADER.lock().await;
    let pool = common::pool(4);
    let guard = AdvisoryLock::new("goldleader")
        .try_acquire(&pool)
        .await
        .unwrap();
    let (code, out) = try_lock_in_other_process("goldleader").await;
    assert_eq!(
        code,
        Some(3),
        "the other process must see the lock busy: {out}"
    );
    assert!(out.contains("busy"), "{out}");
    guard.release().await.unwrap();
    let (code, out) = try_lock_in_other_process("goldleader").await;
    assert_eq!(
        code,
        Some(0),
        "after release the other process gets it: {out}"
    );
}

/// Runs `examples/try_lock.rs` (built by cargo for the tests) as a separate process.
async fn try_lock_in_other_process(name: &str) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(common::example_binary("try_lock"))
        .args([pglock::testdb::shared().url(), name])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("spawn examples/try_lock");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}
