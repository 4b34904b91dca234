//! The spans the runtime opens, so that a tracing-opentelemetry user sees lock waits
//! and holds in traces: `pglock.wait` from the start of an acquisition until it is
//! granted (or refused), `pglock.hold` from the grant until the guard lets go (on
//! release, on drop, and when the lock was lost), each with the lock's name, key,
//! mode, source and call site. Checked against the real server, with a subscriber
//! that records every span's fields and whether it is still open.

mod common;

use std::pin::pin;
use std::time::Duration;

use common::capture::{Capture, CapturedSpan};
use common::{assert_waiting, unique, Foreign};
use pglock::{advisory_locked, AdvisoryLock, Locker};

fn one(spans: Vec<CapturedSpan>, what: &str) -> CapturedSpan {
    assert_eq!(spans.len(), 1, "one {what} span: {spans:?}");
    spans.into_iter().next().unwrap()
}

#[tokio::test]
async fn the_wait_span_is_open_while_waiting_and_closes_when_granted() {
    let capture = Capture::global();
    let pool = common::pool(2);
    let observer = common::observer().await;
    let name = unique("spans-wait");
    let lock = AdvisoryLock::new(name.as_str());
    let foreign = Foreign::holding(lock.key()).await;
    let mut waiting = pin!(lock.acquire(&pool));
    tokio::select! {
        biased;
        _ = &mut waiting => panic!("granted while held elsewhere"),
        _ = assert_waiting(&observer, lock.key(), "the acquisition") => {}
    }
    let wait = one(capture.spans("pglock.wait", &name), "wait");
    assert!(!wait.closed, "open while the server queues the request");
    assert!(
        capture.spans("pglock.hold", &name).is_empty(),
        "not held yet"
    );

    foreign.unlock(lock.key()).await;
    let guard = waiting.await.unwrap();
    let wait = one(capture.spans("pglock.wait", &name), "wait");
    assert!(wait.closed, "closed once granted");
    assert_eq!(wait.field("outcome"), Some("acquired"));
    assert_eq!(wait.field("key"), Some(lock.key().to_string().as_str()));
    assert_eq!(wait.field("mode"), Some("Exclusive"));
    assert_eq!(wait.field("source"), Some("pool"));
    let site = wait.field("site").unwrap();
    assert!(
        site.contains("spans.rs:"),
        "the caller's file and line: {site}"
    );
    let hold = one(capture.spans("pglock.hold", &name), "hold");
    assert!(!hold.closed, "open while the guard holds the lock");

    guard.release().await.unwrap();
    let hold = one(capture.spans("pglock.hold", &name), "hold");
    assert!(hold.closed, "closed at release");
    assert_eq!(hold.field("lost"), Some("false"));
    assert_eq!(hold.field("source"), Some("pool"));
}

#[tokio::test]
async fn a_refused_acquisition_closes_its_wait_span_with_the_outcome_and_holds_nothing() {
    let capture = Capture::global();
    let pool = common::pool(2);
    let name = unique("spans-busy");
    let lock = AdvisoryLock::new(name.as_str()).shared();
    let _foreign = Foreign::holding(lock.key()).await;
    assert!(lock.try_acquire(&pool).await.unwrap_err().is_busy());
    let timeout = lock.acquire_timeout(&pool, Duration::from_millis(20)).await;
    assert!(timeout.unwrap_err().is_timeout());

    let waits = capture.spans("pglock.wait", &name);
    let outcomes: Vec<_> = waits
        .iter()
        .map(|w| (w.closed, w.field("outcome")))
        .collect();
    assert_eq!(outcomes, [(true, Some("busy")), (true, Some("timeout"))]);
    assert_eq!(waits[0].field("mode"), Some("Shared"));
    assert!(capture.spans("pglock.hold", &name).is_empty());
}

#[tokio::test]
async fn a_dropped_locker_guard_closes_its_hold_span() {
    let capture = Capture::global();
    let locker = Locker::new(common::pool(2));
    let name = unique("spans-locker");
    let guard = AdvisoryLock::new(name.as_str())
        .acquire(&locker)
        .await
        .unwrap();
    let hold = one(capture.spans("pglock.hold", &name), "hold");
    assert!(!hold.closed);
    assert_eq!(hold.field("source"), Some("locker"));
    drop(guard);
    let hold = one(capture.spans("pglock.hold", &name), "hold");
    assert!(hold.closed, "closed on drop");
    assert_eq!(hold.field("lost"), Some("false"));
}

#[tokio::test]
async fn a_lost_lock_closes_its_hold_span_marked_lost() {
    let capture = Capture::global();
    let pool = common::pool(2);
    let observer = common::observer().await;
    let name = unique("spans-lost");
    let guard = AdvisoryLock::new(name.as_str())
        .try_acquire(&pool)
        .await
        .unwrap();
    let holders = common::holders(&observer, guard.lock().key()).await;
    assert_eq!(holders.len(), 1, "held: {holders:?}");
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&holders[0]])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .expect("the loss is noticed");
    assert!(!one(capture.spans("pglock.hold", &name), "hold").closed);
    drop(guard);
    let hold = one(capture.spans("pglock.hold", &name), "hold");
    assert!(hold.closed);
    assert_eq!(hold.field("lost"), Some("true"));
}

/// What the body saw of its own lock's spans.
#[advisory_locked(key = "spans-body:{tag}", pool = pool)]
async fn body_sees_its_hold(
    pool: &deadpool_postgres::Pool,
    tag: &str,
) -> Result<(bool, bool), pglock::Error> {
    let name = format!("spans-body:{tag}");
    let capture = Capture::global();
    let wait_closed = one(capture.spans("pglock.wait", &name), "wait").closed;
    let hold_open = !one(capture.spans("pglock.hold", &name), "hold").closed;
    Ok((wait_closed, hold_open))
}

#[tokio::test]
async fn the_hold_span_of_an_attribute_fn_covers_its_body_and_names_the_fn() {
    let capture = Capture::global();
    let pool = common::pool(2);
    let tag = unique("t");
    let (wait_closed, hold_open) = body_sees_its_hold(&pool, &tag).await.unwrap();
    assert!(wait_closed, "the wait is over when the body runs");
    assert!(hold_open, "the body runs inside the hold");
    let name = format!("spans-body:{tag}");
    let hold = one(capture.spans("pglock.hold", &name), "hold");
    assert!(hold.closed, "closed when the fn returned");
    let site = hold.field("site").unwrap();
    assert!(site.contains("body_sees_its_hold"), "the fn: {site}");
    assert!(site.contains("spans.rs:"), "its file: {site}");
}
