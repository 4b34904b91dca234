//! PostgreSQL's errors reach the caller as the `Error` variant that says what
//! happened, naming the lock: the server's lock_timeout, a terminated session,
//! a deadlock, a wait for a key the task holds itself.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{unique, Foreign};
use pglock::__private::{run, OnLost};
use pglock::{AdvisoryLock, Error};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn the_servers_lock_timeout_is_a_timeout() {
    let mut config = pglock::testdb::shared().config();
    config.options("-c lock_timeout=100ms");
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .unwrap();
    let foreign = Foreign::connect().await;
    let lock = AdvisoryLock::new(unique("server-lock-timeout"));
    foreign.lock(lock.key()).await;
    match lock.acquire(&pool).await {
        Err(e @ Error::Timeout { after: None, .. }) => {
            assert!(e.is_timeout());
            let message = e.to_string();
            assert!(message.contains("lock_timeout"), "{message}");
            assert!(message.contains(lock.name().unwrap()), "{message}");
        }
        other => panic!("expected the server's Timeout, got {other:?}"),
    }
    foreign.unlock(lock.key()).await;
}

#[tokio::test]
async fn a_session_terminated_while_waiting_is_disconnected() {
    let pool = common::pool(2);
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let lock = AdvisoryLock::new(unique("terminated-wait"));
    foreign.lock(lock.key()).await;
    let wait = tokio::spawn({
        let (pool, lock) = (pool.clone(), lock.clone());
        async move { lock.acquire(&pool).await.map(drop) }
    });
    let waiter = common::waiter_within(&observer, lock.key(), SECOND)
        .await
        .unwrap();
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&waiter.pid])
        .await
        .unwrap();
    let err = wait.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(err.to_string().contains(lock.name().unwrap()), "{err}");
    foreign.unlock(lock.key()).await;
}

#[tokio::test]
async fn a_terminated_holder_is_lost_and_its_release_says_so() {
    let pool = common::pool(2);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("terminated-holder"));
    let guard = lock.try_acquire(&pool).await.unwrap();
    assert!(!guard.is_lost());
    let pid: i32 = guard
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    tokio::time::timeout(SECOND, guard.lost())
        .await
        .expect("lost() fires within a second");
    assert!(guard.is_lost());
    let err = guard.release().await.unwrap_err();
    assert!(err.is_lost(), "{err:?}");
    // The pool does not hand out the dead connection again.
    let client = pool.get().await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
}

/// Task A holds K1 and waits for K2 while task B holds K2 and waits for K1. The
/// nested waits run on the outer locks' sessions, so the server sees the cycle and
/// picks a victim: one task gets `Deadlock`, the other its lock.
#[tokio::test]
async fn a_deadlock_is_reported_to_one_side_and_the_other_proceeds() {
    let pool = common::pool(4);
    let observer = common::observer().await;
    let k1 = AdvisoryLock::new(unique("deadlock-1"));
    let k2 = AdvisoryLock::new(unique("deadlock-2"));
    let both_hold = Arc::new(tokio::sync::Barrier::new(2));
    let side = |first: AdvisoryLock, second: AdvisoryLock| {
        let (pool, both_hold) = (pool.clone(), both_hold.clone());
        tokio::spawn(async move {
            let outer = first.acquire(&pool).await.unwrap();
            run(&outer, OnLost::Abort, async {
                both_hold.wait().await;
                second.acquire(&pool).await.map(drop)
            })
            .await
            .unwrap()
        })
    };
    let a = side(k1.clone(), k2.clone());
    let b = side(k2.clone(), k1.clone());
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("the server's deadlock detector ends the cycle (deadlock_timeout is 1s)");
    let victim = match (a, b) {
        (Err(e), Ok(())) | (Ok(()), Err(e)) => e,
        other => panic!("expected one Deadlock and one success, got {other:?}"),
    };
    assert!(matches!(victim, Error::Deadlock { .. }), "{victim:?}");
    assert!(victim.to_string().contains("deadlock"), "{victim}");
    for lock in [&k1, &k2] {
        assert_eq!(
            common::gone_within(&observer, lock.key(), SECOND).await,
            vec![]
        );
    }
}

#[tokio::test]
async fn waiting_for_a_key_the_task_holds_would_deadlock_and_trying_is_busy() {
    let pool = common::pool(4);
    let lock = AdvisoryLock::new(unique("reentrant"));
    let outer = lock.acquire(&pool).await.unwrap();
    let (waited, tried) = run(&outer, OnLost::Abort, async {
        let waited = tokio::time::timeout(SECOND, lock.acquire(&pool))
            .await
            .expect("fails at once, never hangs");
        (waited.map(drop), lock.try_acquire(&pool).await.map(drop))
    })
    .await
    .unwrap();
    let waited = waited.unwrap_err();
    assert!(matches!(waited, Error::WouldDeadlock { .. }), "{waited:?}");
    assert!(
        waited.to_string().contains(lock.name().unwrap()),
        "{waited}"
    );
    assert!(tried.unwrap_err().is_busy());
    // A different task is not nested: it waits as normal, and gets the lock on release.
    let other = tokio::spawn({
        let (pool, lock) = (pool.clone(), lock.clone());
        async move { lock.acquire(&pool).await.map(drop) }
    });
    let observer = common::observer().await;
    common::assert_waiting(&observer, lock.key(), "the other task").await;
    assert!(!other.is_finished(), "the other task waits");
    outer.release().await.unwrap();
    tokio::time::timeout(SECOND, other)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
