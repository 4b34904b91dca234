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

// Adversarial review of fused rows (an unlock and the try of its key right after it,
// sent as one relock row). Each test queues its requests by hand before the batch
// task runs (a current-thread runtime: it runs only when the test awaits), so the
// rows of the batch are known.

fn pending<F: Future + ?Sized>(future: std::pin::Pin<&mut F>) -> bool {
    future
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
}

async fn session_for(lock: &AdvisoryLock) -> std::sync::Arc<Session> {
    let pool = crate::testdb::shared().pool(1);
    Session::checkout_for(&pool, lock, Scope::Locker(LockerId::next()))
        .await
        .expect("a session")
}

async fn backend_pid(session: &Session) -> i32 {
    session
        .client()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0)
}

/// The `NULL` path of a fused row: the unlock finds the key not held (the Locker's
/// bookkeeping never queues such an unlock; the Batcher is driven here directly to
/// reach it). The unlock is told "not held", the try is sent again in the next
/// batch and granted, and the session's possible-hold count says one lock per lock
/// held.
#[tokio::test]
async fn a_fused_unlock_of_a_key_not_held_is_told_so_and_its_try_is_sent_again() {
    let lock = AdvisoryLock::new(unique("batch:fused-not-held"));
    let beside = AdvisoryLock::new(unique("batch:fused-not-held:beside"));
    let session = session_for(&lock).await;
    let batcher = Batcher::start(session.clone());

    let unlock = batcher.unlock(&lock);
    let mut try_again = Box::pin(batcher.try_lock(&lock));
    assert!(
        pending(try_again.as_mut()),
        "the try is queued behind the unlock"
    );
    let mut try_beside = Box::pin(batcher.try_lock(&beside));
    assert!(
        pending(try_beside.as_mut()),
        "a try of another key in the batch"
    );

    let unlocked = unlock.await.expect("answered");
    assert!(
        matches!(unlocked, Ok(false)),
        "the unlock found nothing held: {unlocked:?}"
    );
    assert!(try_again.await.expect("try"), "the key is free: granted");
    assert!(try_beside.await.expect("try"), "free");
    assert_eq!(session.held_count(&lock).await.expect("counted"), 1);
    assert_eq!(session.held_count(&beside).await.expect("counted"), 1);

    let unlocked = batcher.unlock(&beside).await.expect("answered");
    assert!(unlocked.expect("unlocked"), "held");
    assert!(
        session.counts_one_lock(),
        "one lock held, one possible hold counted"
    );
    let unlocked = batcher.unlock(&lock).await.expect("answered");
    assert!(unlocked.expect("unlocked"), "held");
    assert!(!batcher.is_unlocking(lock.key()), "no unlock left counted");
}

/// A fused try whose caller gave up before the batch ran: the relock grants the
/// key to nobody, and the batch task gives it back; the possible-hold count ends
/// right (one lock held, one counted).
#[tokio::test]
async fn a_fused_try_given_up_before_its_batch_leaves_nothing_held() {
    fused_try_given_up(false).await;
}

/// The same, the caller giving up after the grant was handed over, unread.
#[tokio::test]
async fn a_fused_try_given_up_after_its_answer_came_leaves_nothing_held() {
    fused_try_given_up(true).await;
}

async fn fused_try_given_up(after_the_answer: bool) {
    let lock = AdvisoryLock::new(unique(&format!("batch:fused-gave-up:{after_the_answer}")));
    let marker = AdvisoryLock::new(unique(&format!(
        "batch:fused-gave-up:{after_the_answer}:marker"
    )));
    let session = session_for(&lock).await;
    let batcher = Batcher::start(session.clone());
    assert!(batcher.try_lock(&lock).await.expect("try"), "free");
    assert!(session.counts_one_lock());

    let unlock = batcher.unlock(&lock);
    let mut gave_up = Some(Box::pin(batcher.try_lock(&lock)));
    let queued = gave_up.as_mut().map(|try_lock| pending(try_lock.as_mut()));
    assert_eq!(queued, Some(true), "fused behind the unlock");
    if after_the_answer {
        // Answered in order: once the marker's try is, the relock's grant was
        // handed over, unread.
        assert!(batcher.try_lock(&marker).await.expect("try"), "free");
    } else {
        let mut marker_try = Box::pin(batcher.try_lock(&marker));
        assert!(pending(marker_try.as_mut()));
        // Given up before the batch task ran at all.
        gave_up = None;
        assert!(marker_try.await.expect("try"), "free");
    }
    drop(gave_up);
    let unlocked = unlock.await.expect("answered");
    assert!(
        unlocked.expect("unlock"),
        "the unlock's caller: it was held"
    );
    // Queued after whatever the give-up queued, so answered after it.
    let unlocked = batcher.unlock(&marker).await.expect("answered");
    assert!(unlocked.expect("unlocked"), "the marker was held");
    assert_eq!(
        session.held_count(&lock).await.expect("counted"),
        0,
        "a relock granted to nobody is given back"
    );
    assert!(!batcher.is_unlocking(lock.key()), "no unlock left counted");
    assert!(batcher.try_lock(&marker).await.expect("try"), "free again");
    assert!(
        session.counts_one_lock(),
        "one lock held (the marker), one possible hold counted"
    );
    drop(batcher.unlock(&marker).await);
}

/// A batch with a fused row sent on a session whose backend was ended behind its
/// back: every caller gets an error (none is told it holds a key), and the session
/// is retired, so no guard trusts it again.
#[tokio::test]
async fn a_batch_with_a_fused_row_on_an_ended_backend_tells_every_caller_an_error() {
    let lock = AdvisoryLock::new(unique("batch:fused-ended"));
    let beside = AdvisoryLock::new(unique("batch:fused-ended:beside"));
    let session = session_for(&lock).await;
    let pid = backend_pid(&session).await;
    let batcher = Batcher::start(session.clone());
    assert!(batcher.try_lock(&lock).await.expect("try"), "free");

    let observer = crate::testdb::shared().connect().await.expect("observer");
    let ended: bool = observer
        .query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid])
        .await
        .expect("terminate")
        .get(0);
    assert!(ended, "the lock session's backend is gone");
    // Queued after the backend ended: the batch task runs only at the awaits below.
    let unlock = batcher.unlock(&lock);
    let mut try_again = Box::pin(batcher.try_lock(&lock));
    assert!(pending(try_again.as_mut()));
    let mut try_beside = Box::pin(batcher.try_lock(&beside));
    assert!(pending(try_beside.as_mut()));

    let unlocked = unlock.await.expect("answered");
    let again = try_again.await;
    let beside_answer = try_beside.await;
    assert!(unlocked.is_err(), "the unlock: {unlocked:?}");
    assert!(again.is_err(), "the fused try: {again:?}");
    assert!(beside_answer.is_err(), "the try beside: {beside_answer:?}");
    assert!(!session.is_reusable(), "the session is retired");
    assert!(!batcher.is_unlocking(lock.key()), "no unlock left counted");
}

/// One key of each kind (bigint or pair, exclusive or shared), each given back and
/// taken again in one batch (four fused rows, each its own relock code), with or
/// without another session waiting for each key in the server's queue: with one,
/// the unlock grants it the key and the try is refused; without, the try gets the
/// key back. Every unlock's caller hears "held".
#[tokio::test]
async fn fused_rows_of_every_kind_of_key_go_first_to_the_waiters_of_another_session() {
    for waiters in [false, true] {
        fused_rows_of_every_kind(waiters).await;
    }
}

async fn fused_rows_of_every_kind(waiters: bool) {
    use crate::key::LockKey;
    let pid = i32::try_from(std::process::id()).expect("a pid");
    let tag = i32::from(waiters);
    let exclusive = [
        AdvisoryLock::new(unique(&format!("batch:fused-kinds:{waiters}"))),
        AdvisoryLock::new(LockKey::Pair(pid, 7_000 + tag)),
    ];
    let shared = [
        AdvisoryLock::new(unique(&format!("batch:fused-kinds:shared:{waiters}"))).shared(),
        AdvisoryLock::new(LockKey::Pair(pid, 7_100 + tag)).shared(),
    ];
    let locks: Vec<_> = exclusive.into_iter().chain(shared).collect();
    let session = session_for(&locks[0]).await;
    let batcher = Batcher::start(session.clone());
    for lock in &locks {
        assert!(batcher.try_lock(lock).await.expect("try"), "free");
    }
    let mut elsewhere = Vec::new();
    if waiters {
        let observer = crate::testdb::shared().connect().await.expect("observer");
        let mut pids = Vec::new();
        for lock in &locks {
            let client =
                std::sync::Arc::new(crate::testdb::shared().connect().await.expect("client"));
            pids.push(
                client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .expect("pid")
                    .get::<_, i32>(0),
            );
            // Plain integers: nothing to quote.
            let sql = match lock.key() {
                LockKey::BigInt(k) => format!("SELECT pg_advisory_lock({k}::int8)"),
                LockKey::Pair(a, b) => format!("SELECT pg_advisory_lock({a}, {b})"),
            };
            let waiting = tokio::spawn({
                let client = client.clone();
                async move { client.batch_execute(&sql).await }
            });
            elsewhere.push((client, waiting));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: i64 = observer
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                     AND NOT granted AND pid = ANY($1)",
                    &[&pids],
                )
                .await
                .expect("pg_locks")
                .get(0);
            if waiting == 4 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{waiting} of 4 wait");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    let unlocks: Vec<_> = locks.iter().map(|lock| batcher.unlock(lock)).collect();
    let mut tries: Vec<_> = locks
        .iter()
        .map(|lock| Box::pin(batcher.try_lock(lock)))
        .collect();
    for try_lock in &mut tries {
        assert!(pending(try_lock.as_mut()), "queued behind its unlock");
    }
    for (lock, unlocked) in locks.iter().zip(unlocks) {
        let unlocked = unlocked.await.expect("answered");
        assert!(matches!(unlocked, Ok(true)), "{}: {unlocked:?}", lock.key());
    }
    for (lock, try_lock) in locks.iter().zip(tries) {
        let again = try_lock.await.expect("try");
        assert_eq!(again, !waiters, "{} taken again", lock.key());
        let held = session.held_count(lock).await.expect("counted");
        assert_eq!(held, i64::from(!waiters), "{} in the server", lock.key());
    }
    for (_client, waiting) in elsewhere {
        waiting
            .await
            .expect("joined")
            .expect("the other session got the key");
    }
    if !waiters {
        for lock in &locks {
            let unlocked = batcher.unlock(lock).await.expect("answered");
            assert!(unlocked.expect("unlocked"), "held");
        }
    }
}
