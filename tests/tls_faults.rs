//! Guarantee 8 for loss and leaks: over a TLS-only cluster (TCP clients must use TLS,
//! as managed PostgreSQL services demand) a terminated backend is reported lost within
//! a second, a backend that stops answering within the keepalive bound and its lock
//! then ends on the server (the side connection that ends it goes over TLS too), and
//! waits and tries dropped by a timeout leave no waiter and no lock, through a Pool
//! and a Locker. Each test starts a cluster of its own.

mod common;

use common::backend::signal;
use common::tls_observer;

use std::time::Duration;

use pglock::testdb::{Cluster, Tls};
use pglock::{AdvisoryLock, LockGuard, LockKey, Locker};
use tokio::task::JoinSet;
use tokio_postgres::Client;

const SECOND: Duration = Duration::from_secs(1);

fn tls_only_cluster() -> Cluster {
    Cluster::builder().tls(Tls::Required).start().unwrap()
}

async fn backend_pid(guard: &LockGuard) -> i32 {
    guard
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The one backend holding `key`, as `pg_locks` shows it.
async fn sole_holder(observer: &Client, key: LockKey, what: &str) -> i32 {
    let held = common::assert_held_by_at_least(observer, key, 1, what).await;
    assert_eq!(held.len(), 1, "{what}: one holder of {key}: {held:?}");
    held[0]
}

#[tokio::test]
async fn a_terminated_backend_over_tls_is_lost_within_a_second() {
    let cluster = tls_only_cluster();
    let pool = cluster.db().tls_pool(4).unwrap();
    let locker = Locker::new(pool.clone());
    let observer = tls_observer(&cluster).await;
    let (direct, shared) = (
        AdvisoryLock::new("tls-faults:terminated:pool"),
        AdvisoryLock::new("tls-faults:terminated:locker"),
    );
    let pool_guard = direct.try_acquire(&pool).await.unwrap();
    let locker_guard = shared.try_acquire(&locker).await.unwrap();
    let pool_pid = sole_holder(&observer, direct.key(), "pool guard").await;
    assert_eq!(pool_pid, backend_pid(&pool_guard).await);
    let locker_pid = sole_holder(&observer, shared.key(), "locker guard").await;
    let (pool_lost, locker_lost) = (pool_guard.lost(), locker_guard.lost());

    for pid in [pool_pid, locker_pid] {
        let ended: bool = observer
            .query_one("SELECT pg_catalog.pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(ended, "backend {pid} terminated");
    }
    tokio::time::timeout(SECOND, pool_lost)
        .await
        .expect("pool guard over TLS: lost within 1 s");
    tokio::time::timeout(SECOND, locker_lost)
        .await
        .expect("locker guard over TLS: lost within 1 s");
    assert!(pool_guard.release().await.unwrap_err().is_lost());
    assert!(locker_guard.release().await.unwrap_err().is_lost());
    for lock in [&direct, &shared] {
        common::assert_released_within_1s(&observer, lock.key(), "terminated").await;
    }
    // The same pool and Locker serve the keys again, on new backends.
    let again = direct.try_acquire(&pool).await.unwrap();
    assert_ne!(backend_pid(&again).await, pool_pid);
    again.release().await.unwrap();
    let again = shared.try_acquire(&locker).await.unwrap();
    assert_ne!(
        sole_holder(&observer, shared.key(), "locker again").await,
        locker_pid
    );
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_stopped_backend_over_tls_is_lost_within_the_keepalive_bound_and_its_lock_ends() {
    let cluster = tls_only_cluster();
    let keepalive = Duration::from_secs(2);
    let pool = cluster.db().tls_pool(4).unwrap();
    let locker = Locker::builder(pool.clone())
        .sessions(1)
        .keepalive(keepalive)
        .build();
    let observer = tls_observer(&cluster).await;
    let (direct, shared) = (
        AdvisoryLock::new("tls-faults:stopped:pool").keepalive(keepalive),
        AdvisoryLock::new("tls-faults:stopped:locker"),
    );
    let pool_guard = direct.try_acquire(&pool).await.unwrap();
    let locker_guard = shared.try_acquire(&locker).await.unwrap();
    let pool_pid = sole_holder(&observer, direct.key(), "pool guard").await;
    let locker_pid = sole_holder(&observer, shared.key(), "locker guard").await;
    let (pool_lost, locker_lost) = (pool_guard.lost(), locker_guard.lost());

    signal(pool_pid, "STOP");
    signal(locker_pid, "STOP");
    let noticed = tokio::time::timeout(keepalive + SECOND, async {
        tokio::join!(pool_lost, locker_lost);
    })
    .await;
    signal(pool_pid, "CONT");
    signal(locker_pid, "CONT");
    noticed.expect("both guards lost within the keepalive bound");
    assert!(pool_guard.is_lost() && locker_guard.is_lost());
    // The Locker guard is still alive, yet the server must not keep its lock: a lock
    // session declared lost is ended, over a TLS side connection.
    let left = common::gone_within(&observer, shared.key(), common::pg_locks::PATIENCE).await;
    assert!(
        left.is_empty(),
        "a lost lock session still holds its lock: {left:?}"
    );
    assert!(
        common::backend_gone_within(&observer, locker_pid, common::pg_locks::PATIENCE).await,
        "the lost lock session's backend {locker_pid} is ended"
    );
    assert!(locker_guard.release().await.unwrap_err().is_lost());
    // A Pool guard's session may carry the body's own transaction, so it is closed
    // (not ended from outside) when the guard lets go; then its lock ends too.
    assert!(pool_guard.release().await.unwrap_err().is_lost());
    let left = common::gone_within(&observer, direct.key(), common::pg_locks::PATIENCE).await;
    assert!(
        left.is_empty(),
        "a released lost pool session still holds its lock: {left:?}"
    );
    assert!(
        common::backend_gone_within(&observer, pool_pid, common::pg_locks::PATIENCE).await,
        "the lost pool session's backend {pool_pid} is closed"
    );
}

/// How the `i`th dropped call goes: a wait or a try, through the Pool or the Locker,
/// and a timeout from "before the request is out" to "long queued on the server".
fn dropped_call(
    i: u64,
    lock: &AdvisoryLock,
    pool: &deadpool_postgres::Pool,
    locker: &Locker,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let (lock, pool, locker) = (lock.clone(), pool.clone(), locker.clone());
    let limit = Duration::from_micros([0, 200, 1_000, 5_000, 40_000, 150_000][i as usize % 6]);
    async move {
        let call = async {
            match i % 4 {
                0 => lock.acquire(&pool).await.map(drop),
                1 => lock.try_acquire(&pool).await.map(drop),
                2 => lock.acquire(&locker).await.map(drop),
                _ => lock.try_acquire(&locker).await.map(drop),
            }
        };
        match tokio::time::timeout(limit, call).await {
            // Dropped by the timeout, or answered `Busy` in time.
            Err(_elapsed) => {}
            Ok(Err(error)) if error.is_busy() => {}
            Ok(outcome) => panic!("call {i}: the key is held elsewhere: {outcome:?}"),
        }
    }
}

/// Whether the server shows a waiter for `key` at some point until `stop`.
fn watch_for_waiters(
    observer: Client,
    key: LockKey,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<bool> {
    tokio::spawn(async move {
        loop {
            let rows = common::lock_rows(&observer, key).await;
            if rows.iter().any(|row| !row.granted) {
                return true;
            }
            tokio::select! {
                _ = &mut stop => return false,
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    })
}

#[tokio::test]
async fn fifty_dropped_waits_and_tries_over_tls_leave_no_waiter_and_no_lock() {
    let cluster = tls_only_cluster();
    let pool = cluster.db().tls_pool(8).unwrap();
    let locker = Locker::new(pool.clone());
    let observer = tls_observer(&cluster).await;
    const KEY: i64 = 8_001;
    let lock = AdvisoryLock::new(KEY);
    let foreign = tls_observer(&cluster).await;
    foreign
        .execute("SELECT pg_catalog.pg_advisory_lock($1)", &[&KEY])
        .await
        .unwrap();
    let foreign_pid: i32 = foreign
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        common::holders(&observer, lock.key()).await,
        [foreign_pid],
        "the premise: held elsewhere"
    );

    let (stop, stopped) = tokio::sync::oneshot::channel();
    let watcher = watch_for_waiters(tls_observer(&cluster).await, lock.key(), stopped);
    // Ten rounds of five calls at once, so Pool and Locker calls overlap.
    for round in 0..10 {
        let mut calls = JoinSet::new();
        for i in round * 5..round * 5 + 5 {
            calls.spawn(dropped_call(i, &lock, &pool, &locker));
        }
        while let Some(call) = calls.join_next().await {
            call.unwrap();
        }
    }
    let _ = stop.send(());
    assert!(
        watcher.await.unwrap(),
        "the premise: some dropped waits were queued on the server"
    );

    let only_the_foreign = |rows: Vec<common::LockRow>| {
        let left: Vec<_> = rows.iter().map(|r| (r.pid, r.granted)).collect();
        if left == [(foreign_pid, true)] {
            Ok(())
        } else {
            Err(rows)
        }
    };
    let left = common::pg_locks::poll(
        &observer,
        lock.key(),
        common::pg_locks::PATIENCE,
        only_the_foreign,
    )
    .await;
    assert!(left.is_ok(), "left on the server: {left:?}");
    assert_eq!(
        advisory_locks_but(&observer, foreign_pid).await,
        0,
        "no backend but the foreign one holds or awaits an advisory lock"
    );
    // The Locker's lock session goes back to the pool with it.
    drop(locker);
    every_pooled_connection_holds_nothing(&pool).await;
}

async fn advisory_locks_but(observer: &Client, pid: i32) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_locks \
              WHERE locktype = 'advisory' AND pid IS DISTINCT FROM $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0)
}

/// Takes every connection the pool has (up to its size) at once and checks that
/// none holds an advisory lock.
async fn every_pooled_connection_holds_nothing(pool: &deadpool_postgres::Pool) {
    let mut clients = Vec::new();
    for _ in 0..pool.status().max_size {
        let client = tokio::time::timeout(common::pg_locks::PATIENCE, pool.get())
            .await
            .expect("a connection from the pool")
            .unwrap();
        assert_eq!(
            common::advisory_locks_of(&client).await,
            0,
            "a pooled connection holds a lock"
        );
        clients.push(client);
    }
}
