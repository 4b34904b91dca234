//! Batches against a live server, with the races made deterministic by the order in
//! which one session's batch task answers.

use std::future::Future;
use std::task::{Context, Waker};

use super::Batcher;
use crate::lock::AdvisoryLock;
use crate::scope::{LockerId, Scope};
use crate::session::Session;

fn unique(name: &str) -> String {
    format!("{name}:{}", std::process::id())
}

#[tokio::test]
async fn a_try_granted_to_a_caller_that_gave_up_after_the_answer_came_is_unlocked() {
    let first = AdvisoryLock::new(unique("batch:abandoned-answer"));
    let second = AdvisoryLock::new(unique("batch:abandoned-answer:after"));
    let pool = crate::testdb::shared().pool(1);
    let session = Session::checkout_for(&pool, &first, Scope::Locker(LockerId::next()))
        .await
        .expect("a session");
    let batcher = Batcher::start(session.clone());

    // The first try is sent and its caller waits; nothing wakes it meanwhile.
    let mut gave_up = Box::pin(batcher.try_lock(&first));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(gave_up.as_mut().poll(&mut cx).is_pending());
    // The batch task answers in order: once the second try is answered, the
    // first try's grant has been handed over, and sits unread.
    assert!(batcher.try_lock(&second).await.expect("try"), "free");
    drop(gave_up);
    // Anything queued after the drop runs after what the drop queued.
    let unlocked = batcher.unlock(&second).await.expect("answered");
    assert!(unlocked.expect("unlocked"), "the second try held its key");
    assert_eq!(
        session.held_count(&first).await.expect("counted"),
        0,
        "a grant nobody read is given back, not kept by the lock session"
    );
}

#[tokio::test]
async fn a_try_read_by_its_caller_stays_held() {
    let lock = AdvisoryLock::new(unique("batch:read-answer"));
    let pool = crate::testdb::shared().pool(1);
    let session = Session::checkout_for(&pool, &lock, Scope::Locker(LockerId::next()))
        .await
        .expect("a session");
    let batcher = Batcher::start(session.clone());
    let granted = batcher.try_lock(&lock).await.expect("try");
    assert!(granted, "free");
    assert_eq!(session.held_count(&lock).await.expect("counted"), 1);
    let unlocked = batcher.unlock(&lock).await.expect("answered");
    assert!(unlocked.expect("unlocked"), "it was held");
}
