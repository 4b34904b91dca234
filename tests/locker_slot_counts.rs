//! A lock slot's count of held locks (which picks the session
//! for new locks) after its lock session is retired with a try still on its way.
//!
//! The schedule is fixed by hand on a current-thread runtime: the lock session's
//! batch statement is held at its parse by a lock on `pg_proc` (its first
//! multi-row batch prepares the statement, which reads the catalogue), and
//! cancelled there, which retires the session; a try queued behind that batch is
//! still granted on the retired session's live connection, and its caller hears
//! the grant only after a new acquisition has replaced the slot's session. The
//! grant is not counted on the new session, and the caller is told `LockLost`,
//! not handed a guard that is lost already.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{holders, unique};
use pglock::{AdvisoryLock, Locker, LockerGuard};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

fn poll_once<T>(f: &mut Boxed<T>) -> Poll<T> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn try_on(locker: &Locker, lock: &AdvisoryLock) -> Boxed<Result<LockerGuard, pglock::Error>> {
    let (lock, locker) = (lock.clone(), locker.clone());
    Box::pin(async move { lock.try_acquire(&locker).await })
}

/// Polls until `pid` waits for a relation lock (the batch's parse, on `pg_proc`).
async fn waits_on_a_relation(observer: &tokio_postgres::Client, pid: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = observer
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $1 \
                 AND locktype = 'relation' AND NOT granted)",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend {pid} never waited for the catalogue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails on main: the slot counts 2. `Sessions::try_lock` finds the slot of the
/// try's session before the try, and counts the grant on that slot after it,
/// though the slot's session was replaced meanwhile (its count started again
/// from 0); the grant's lock ends with the retired session, whose guards count
/// nothing off the new one. The slot then counts a lock for ever, and the slot
/// that holds fewest is the one new keys go to.
#[tokio::test]
async fn a_try_granted_on_a_retired_lock_session_is_not_counted_on_its_replacement() {
    let cluster = pglock::testdb::Cluster::start().unwrap();
    let observer = cluster.db().connect().await.unwrap();
    let locker = Locker::builder(cluster.db().pool(4)).sessions(1).build();
    let first = AdvisoryLock::new(unique("review-slots:first"));
    let guard = first.try_acquire(&locker).await.unwrap();
    let [old] = holders(&observer, first.key()).await[..] else {
        panic!("one lock session holds the first key");
    };
    assert_eq!(locker.locks_per_session(), [1]);

    // The catalogue locked: the session's first batch of two rows stops at its parse.
    observer
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_proc IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let (a, b) = (
        AdvisoryLock::new(unique("review-slots:a")),
        AdvisoryLock::new(unique("review-slots:b")),
    );
    let mut try_a = try_on(&locker, &a);
    let mut try_b = try_on(&locker, &b);
    assert!(poll_once(&mut try_a).is_pending());
    assert!(poll_once(&mut try_b).is_pending());
    waits_on_a_relation(&observer, old).await;
    // Queued behind the stopped batch, on the same session.
    let late = AdvisoryLock::new(unique("review-slots:late"));
    let mut try_late = try_on(&locker, &late);
    assert!(poll_once(&mut try_late).is_pending());

    // The cancel fails the batch in doubt: the session is retired.
    let cancelled: bool = observer
        .query_one("SELECT pg_cancel_backend($1)", &[&old])
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    observer.batch_execute("ROLLBACK").await.unwrap();
    // The late try still runs on the retired session's connection (granted, as
    // its lost guard shows below), before the backend is ended.
    assert!(
        common::backend_gone_within(&observer, old, Duration::from_secs(10)).await,
        "the retired session's backend is ended"
    );

    // A new acquisition opens a new lock session in the slot.
    let fresh = AdvisoryLock::new(unique("review-slots:fresh"));
    let fresh_guard = fresh.try_acquire(&locker).await.unwrap();
    let [new] = holders(&observer, fresh.key()).await[..] else {
        panic!("one session holds the fresh key");
    };
    assert_ne!(new, old, "the slot has a new session");
    let counted_fresh = locker.locks_per_session();

    // Only now does the late try's caller hear its grant.
    let late_answer = tokio::time::timeout(Duration::from_secs(10), try_late)
        .await
        .expect("answered");
    // Granted on the retired session: its caller is told the lock is lost, not
    // handed a guard that is lost already.
    assert!(
        matches!(&late_answer, Err(pglock::Error::LockLost { .. })),
        "the late try, on the retired session: {late_answer:?}"
    );
    let a_answer = try_a.await;
    let b_answer = try_b.await;
    println!(
        "a: {:?}, b: {:?}, late: {:?}, after the fresh key: {counted_fresh:?}, now: {:?}",
        a_answer.as_ref().map(LockerGuard::is_lost),
        b_answer.as_ref().map(LockerGuard::is_lost),
        late_answer.as_ref().map(LockerGuard::is_lost),
        locker.locks_per_session()
    );
    assert_eq!(
        locker.locks_per_session(),
        [1],
        "the new session holds one lock (the fresh key); a grant on the retired \
         session is not one of its locks"
    );
    drop((guard, late_answer, a_answer, b_answer));
    fresh_guard.release().await.unwrap();
    common::assert_released_within_1s(&observer, fresh.key(), "at the end").await;
    common::assert_released_within_1s(&observer, late.key(), "at the end").await;
    assert_eq!(locker.keys_in_use(), 0);
    assert_eq!(
        locker.locks_per_session(),
        [0],
        "nothing held, nothing counted"
    );
}
