//! What the runtime tells `tracing`: every acquisition (with its wait) and release
//! (with its hold time), named by lock, key and mode, at the level its outcome
//! deserves: debug for normal flow, info for a timeout, warn for a lost lock or a
//! would-be deadlock.

mod common;

use std::time::Duration;

use common::capture::{Capture, Captured};
use common::unique;
use pglock::__private::{run, OnLost};
use pglock::{AdvisoryLock, Locker};
use tracing::Level;

fn summary(events: &[Captured]) -> Vec<(Level, String)> {
    events
        .iter()
        .map(|e| (e.level, e.field("message").unwrap_or("").to_string()))
        .collect()
}

#[tokio::test]
async fn acquisition_and_release_report_wait_hold_key_and_mode() {
    let capture = Capture::global();
    let pool = common::pool(2);
    let name = unique("traced");
    let lock = AdvisoryLock::new(name.as_str());
    let guard = lock.try_acquire(&pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    guard.release().await.unwrap();

    let events = capture.about(&name);
    assert_eq!(
        summary(&events),
        vec![
            (Level::DEBUG, "advisory lock acquired".into()),
            (Level::DEBUG, "advisory lock released".into()),
        ]
    );
    let (acquired, released) = (&events[0], &events[1]);
    assert_eq!(acquired.field("key"), Some(lock.key().to_string().as_str()));
    assert_eq!(acquired.field("mode"), Some("Exclusive"));
    assert_eq!(acquired.field("how"), Some("try"));
    assert!(acquired.field("waited_us").is_some());
    let held_us: u64 = released.field("held_us").unwrap().parse().unwrap();
    assert!(
        held_us >= 20_000,
        "held at least the 20 ms slept: {held_us}"
    );
}

#[tokio::test]
async fn busy_timeout_would_deadlock_and_lost_are_reported_at_their_levels() {
    let capture = Capture::global();
    let pool = common::pool(4);
    let observer = common::observer().await;
    let name = unique("traced-outcomes");
    let lock = AdvisoryLock::new(name.as_str()).shared();
    let exclusive = AdvisoryLock::new(name.as_str());
    let held = lock.try_acquire(&pool).await.unwrap();
    assert!(exclusive.try_acquire(&pool).await.unwrap_err().is_busy());
    let timeout = exclusive
        .acquire_timeout(&pool, Duration::from_millis(50))
        .await;
    assert!(timeout.unwrap_err().is_timeout());
    let nested = run(&held, OnLost::Ignore, exclusive.acquire(&pool))
        .await
        .unwrap();
    assert!(nested.is_err());
    // The holder's backend dies: its guard reports the lost lock when let go.
    let pid: i32 = held
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(1), held.lost())
        .await
        .unwrap();
    drop(held);

    let events = capture.about(&name);
    assert_eq!(
        summary(&events),
        vec![
            (Level::DEBUG, "advisory lock acquired".into()),
            (Level::DEBUG, "advisory lock busy".into()),
            (Level::INFO, "advisory lock timed out".into()),
            (Level::WARN, "advisory lock not acquired".into()),
            (Level::WARN, "advisory lock was lost while held".into()),
        ]
    );
    assert_eq!(events[0].field("mode"), Some("Shared"));
    assert!(events[3].field("error").unwrap().contains("would deadlock"));
}

#[tokio::test]
async fn a_locker_reports_like_a_pool() {
    let capture = Capture::global();
    let locker = Locker::new(common::pool(2));
    let name = unique("traced-locker");
    let lock = AdvisoryLock::new(name.as_str());
    drop(lock.acquire(&locker).await.unwrap());
    assert_eq!(
        summary(&capture.about(&name)),
        vec![
            (Level::DEBUG, "advisory lock acquired".into()),
            (Level::DEBUG, "advisory lock released".into()),
        ]
    );
}
