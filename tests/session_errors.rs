//! Guarantee 12 for settings that end the session: a guard whose session the server
//! ends for sitting idle (`idle_session_timeout`, `57P05`) sees the loss, names it,
//! and the lock is free on the server.

mod common;

use std::time::Duration;

use common::{gone_within, holders, observer, pool, unique};
use pglock::AdvisoryLock;

#[tokio::test]
async fn a_guard_idle_past_idle_session_timeout_is_lost_and_its_lock_freed() {
    let pool = pool(2);
    let observer = observer().await;
    let lock = AdvisoryLock::new(unique("session-errors:idle"));
    let guard = lock.try_acquire(&pool).await.unwrap();
    guard
        .batch_execute("SET idle_session_timeout = '300ms'")
        .await
        .unwrap();
    assert_eq!(
        holders(&observer, lock.key()).await.len(),
        1,
        "held before the idle time"
    );

    tokio::time::timeout(Duration::from_secs(10), guard.lost())
        .await
        .expect("lost() fires once the server ended the idle session");
    assert!(guard.is_lost());
    let left = gone_within(&observer, lock.key(), Duration::from_secs(5)).await;
    assert!(left.is_empty(), "the server freed the lock: {left:?}");
    let released = guard.release().await;
    assert!(
        matches!(&released, Err(e) if e.is_lost()),
        "releasing a lock whose session ended says so: {released:?}"
    );
    // The key is free for the next taker, and the pool hands out a live session.
    let again = lock.try_acquire(&pool).await.unwrap();
    again.release().await.unwrap();
}
