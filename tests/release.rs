//! No lock is left behind on any path: a guard dropped without `release`, a guard
//! dropped by a panicking task, a wait whose future is dropped, a wait that times
//! out. Each is checked in `pg_locks` from a connection of its own, on a pool with
//! deadpool's default `RecyclingMethod::Fast` (which does not clean connections).
//! Each hazard is also shown happening without the library (the control tests), so
//! the checks are known to be able to fail.

mod common;

use std::time::Duration;

use common::{gone_within, lock_rows, unique, waiter_within, Foreign};
use pglock::AdvisoryLock;

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn dropped_guard_frees_the_lock_and_the_pooled_connection() {
    let pool = common::pool(1);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("dropped-guard"));
    let guard = lock.try_acquire(&pool).await.unwrap();
    assert_eq!(lock_rows(&observer, lock.key()).await.len(), 1);
    drop(guard);
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
    // The pool has one connection: the one that held the lock. It holds nothing.
    let client = pool.get().await.unwrap();
    assert_eq!(common::advisory_locks_of(&client).await, 0);
}

#[tokio::test]
async fn control_a_pooled_connection_returned_with_a_lock_keeps_it() {
    // What the library prevents: with RecyclingMethod::Fast, a connection dropped
    // back into the pool while holding a session lock hands the lock to its next user.
    let pool = common::pool(1);
    let key = AdvisoryLock::new(unique("control-dropped")).key();
    let pglock::LockKey::BigInt(k) = key else {
        unreachable!()
    };
    let client = pool.get().await.unwrap();
    client
        .execute("SELECT pg_advisory_lock($1)", &[&k])
        .await
        .unwrap();
    drop(client);
    let next_user = pool.get().await.unwrap();
    assert_eq!(
        common::advisory_locks_of(&next_user).await,
        1,
        "the lock leaked to the next user"
    );
    next_user
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn guard_dropped_by_a_panicking_task_frees_the_lock() {
    let pool = common::pool(1);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("panic"));
    let task = tokio::spawn({
        let (pool, lock) = (pool.clone(), lock.clone());
        async move {
            let _guard = lock.try_acquire(&pool).await.unwrap();
            panic!("the body fails while holding the lock");
        }
    });
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
    let client = pool.get().await.unwrap();
    assert_eq!(common::advisory_locks_of(&client).await, 0);
}

#[tokio::test]
async fn dropped_wait_is_cancelled_on_the_server_and_never_granted_later() {
    let pool = common::pool(1);
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let lock = AdvisoryLock::new(unique("dropped-wait"));
    foreign.lock(lock.key()).await;

    let wait = tokio::spawn({
        let (pool, lock) = (pool.clone(), lock.clone());
        async move { lock.acquire(&pool).await.map(drop) }
    });
    let waiter = waiter_within(&observer, lock.key(), SECOND).await;
    assert!(waiter.is_some(), "our wait is queued on the server");
    wait.abort();
    assert!(wait.await.unwrap_err().is_cancelled());

    assert_nothing_of_ours_waits_or_is_granted_later(&pool, &observer, &foreign, &lock).await;
}

#[tokio::test]
async fn control_a_dropped_raw_wait_stays_queued_and_is_granted_later() {
    // What the library prevents: dropping a tokio-postgres future does not stop the
    // server, which keeps the wait and later grants the lock to a pooled connection.
    let pool = common::pool(1);
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let key = AdvisoryLock::new(unique("control-wait")).key();
    let pglock::LockKey::BigInt(k) = key else {
        unreachable!()
    };
    foreign.lock(key).await;
    let wait = tokio::spawn({
        let pool = pool.clone();
        async move {
            let client = pool.get().await.unwrap();
            client
                .execute("SELECT pg_advisory_lock($1)", &[&k])
                .await
                .unwrap();
        }
    });
    assert!(waiter_within(&observer, key, SECOND).await.is_some());
    wait.abort();
    let _ = wait.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        waiter_within(&observer, key, SECOND).await.is_some(),
        "the abandoned wait is still queued"
    );
    foreign.unlock(key).await;
    // The wait is granted to a session nobody owns any more.
    let granted = tokio::time::timeout(SECOND, async {
        loop {
            let rows = lock_rows(&observer, key).await;
            if rows.iter().any(|r| r.granted) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the abandoned wait was granted");
    assert_eq!(granted.len(), 1);
    let client = pool.get().await.unwrap();
    client
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn timed_out_wait_leaves_no_waiter_and_is_never_granted_later() {
    let pool = common::pool(1);
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let lock = AdvisoryLock::new(unique("timeout"));
    foreign.lock(lock.key()).await;

    let err = lock
        .acquire_timeout(&pool, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("200ms"), "{err}");

    assert_nothing_of_ours_waits_or_is_granted_later(&pool, &observer, &foreign, &lock).await;
}

/// The `lock_timeout` race: a release at the moment the limit runs out may grant
/// the lock just as we cancel. Whatever `acquire_timeout` reports must be what the
/// server did: `Ok` means we hold it, `Timeout` means nobody of ours does.
#[tokio::test]
async fn timeout_at_the_moment_of_release_reports_what_the_server_did() {
    let pool = common::pool(2);
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let (mut granted, mut timed_out) = (0, 0);
    for round in 0..40_u64 {
        let lock = AdvisoryLock::new(unique("race"));
        foreign.lock(lock.key()).await;
        let limit = Duration::from_millis(40);
        let attempt = tokio::spawn({
            let (pool, lock) = (pool.clone(), lock.clone());
            async move { lock.acquire_timeout(&pool, limit).await }
        });
        // Release around the moment the limit runs out, a little earlier or later
        // each round.
        tokio::time::sleep(Duration::from_millis(30 + round % 20)).await;
        foreign.unlock(lock.key()).await;
        match attempt.await.unwrap() {
            Ok(guard) => {
                granted += 1;
                let rows = lock_rows(&observer, lock.key()).await;
                assert!(
                    rows.iter().any(|r| r.granted && r.pid != foreign.pid),
                    "Ok, so we must hold it: {rows:?}"
                );
                guard.release().await.unwrap();
            }
            Err(e) => {
                assert!(e.is_timeout(), "{e:?}");
                timed_out += 1;
                assert_eq!(
                    stays_free_for(&observer, &lock, Duration::from_millis(150)).await,
                    vec![],
                    "Timeout, so nothing of ours holds it"
                );
            }
        }
    }
    println!("granted {granted}, timed out {timed_out}");
}

/// After a wait of ours was given up while `foreign` holds `lock`: the server-side
/// wait is gone (only the foreign holder is left), nobody of ours is granted the lock
/// once the holder lets go, and the pooled connection holds nothing.
async fn assert_nothing_of_ours_waits_or_is_granted_later(
    pool: &deadpool_postgres::Pool,
    observer: &tokio_postgres::Client,
    foreign: &Foreign,
    lock: &AdvisoryLock,
) {
    let rows = settled_rows(observer, lock.key(), 1).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].pid, foreign.pid);
    foreign.unlock(lock.key()).await;
    assert_eq!(stays_free(observer, lock).await, vec![]);
    let client = pool.get().await.unwrap();
    assert_eq!(common::advisory_locks_of(&client).await, 0);
}

/// Rows for `key` once the expected count is reached (or after a second).
async fn settled_rows(
    observer: &tokio_postgres::Client,
    key: pglock::LockKey,
    expected: usize,
) -> Vec<common::LockRow> {
    let deadline = tokio::time::Instant::now() + SECOND;
    loop {
        let rows = lock_rows(observer, key).await;
        if rows.len() == expected || tokio::time::Instant::now() >= deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Samples `pg_locks` for half a second after a release: the key must stay free
/// (a leaked wait would be granted within moments). Returns any rows seen.
async fn stays_free(
    observer: &tokio_postgres::Client,
    lock: &AdvisoryLock,
) -> Vec<common::LockRow> {
    stays_free_for(observer, lock, Duration::from_millis(500)).await
}

async fn stays_free_for(
    observer: &tokio_postgres::Client,
    lock: &AdvisoryLock,
    window: Duration,
) -> Vec<common::LockRow> {
    let samples = (window.as_millis() / 50).max(1);
    for _ in 0..samples {
        let rows = lock_rows(observer, lock.key()).await;
        if !rows.is_empty() {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vec![]
}
