//! Loss is noticed, with the bounds the docs state: a terminated backend or a
//! restarted server within one second; a server that stops answering without
//! closing the socket within the keepalive bound; and the keepalive never takes a
//! body's own long statement or open transaction on the locked session for a stall.
//! Each test disturbs a throwaway cluster of its own.

mod common;

use common::backend::signal;

use std::time::Duration;

use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, LockGuard, Locker};

const SECOND: Duration = Duration::from_secs(1);

async fn backend_pid(guard: &LockGuard) -> i32 {
    guard
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_server_restart_is_noticed_within_a_second_and_the_pool_recovers() {
    let cluster = Cluster::start().unwrap();
    let pool = cluster.db().pool(4);
    let locker = Locker::new(pool.clone());
    let direct = AdvisoryLock::new("restart-direct")
        .try_acquire(&pool)
        .await
        .unwrap();
    let shared = AdvisoryLock::new("restart-locker")
        .try_acquire(&locker)
        .await
        .unwrap();
    let (direct_lost, shared_lost) = (direct.lost(), shared.lost());
    // An idle pooled connection, too: it must not be handed out dead afterwards.
    drop(pool.get().await.unwrap());

    cluster.restart().unwrap();
    tokio::time::timeout(SECOND, direct_lost)
        .await
        .expect("pool guard: lost within 1 s");
    tokio::time::timeout(SECOND, shared_lost)
        .await
        .expect("locker guard: lost within 1 s");
    assert!(direct.release().await.unwrap_err().is_lost());
    assert!(shared.release().await.unwrap_err().is_lost());

    // The next calls through the same pool and Locker succeed.
    let again = AdvisoryLock::new("restart-direct")
        .try_acquire(&pool)
        .await
        .unwrap();
    again.query_one("SELECT 1", &[]).await.unwrap();
    again.release().await.unwrap();
    AdvisoryLock::new("restart-locker")
        .try_acquire(&locker)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_stalled_backend_is_noticed_within_the_keepalive_bound() {
    let cluster = Cluster::start().unwrap();
    let pool = cluster.db().pool(4);
    let keepalive = Duration::from_secs(2);
    let guard = AdvisoryLock::new("stalled")
        .keepalive(keepalive)
        .try_acquire(&pool)
        .await
        .unwrap();
    let pid = backend_pid(&guard).await;
    let lost = guard.lost();
    signal(pid, "STOP");
    let started = tokio::time::Instant::now();
    let noticed = tokio::time::timeout(keepalive + SECOND, lost).await;
    let took = started.elapsed();
    signal(pid, "CONT");
    noticed.unwrap_or_else(|_| panic!("not noticed within {:?}", keepalive + SECOND));
    println!("stall noticed after {took:?} (keepalive {keepalive:?})");
    assert!(guard.is_lost());
    // Noticed by the keepalive, not by a closed socket: the connection was open.
    assert!(!guard.is_closed());
}

#[tokio::test]
async fn a_stalled_lock_session_is_noticed_by_every_locker_guard() {
    let cluster = Cluster::start().unwrap();
    let keepalive = Duration::from_secs(2);
    let locker = Locker::builder(cluster.db().pool(4))
        .sessions(1)
        .keepalive(keepalive)
        .build();
    let mut guards = Vec::new();
    for i in 0..5_i64 {
        guards.push(AdvisoryLock::new(i).try_acquire(&locker).await.unwrap());
    }
    let observer = cluster.db().connect().await.unwrap();
    let pid: i32 = observer
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let lost: Vec<_> = guards.iter().map(|g| g.lost()).collect();
    signal(pid, "STOP");
    let noticed = tokio::time::timeout(keepalive + SECOND, futures_all(lost)).await;
    signal(pid, "CONT");
    noticed.expect("every guard lost within the keepalive bound");
}

async fn futures_all(futures: Vec<impl std::future::Future<Output = ()>>) {
    for future in futures {
        future.await;
    }
}

/// The keepalive's ping waits behind the body's own statements on the locked
/// session; a long statement, an open transaction, even one in the failed state,
/// are not a stall.
#[tokio::test]
async fn the_keepalive_leaves_a_body_using_the_locked_session_alone() {
    let cluster = Cluster::start().unwrap();
    let pool = cluster.db().pool(4);
    let guard = AdvisoryLock::new("busy-body")
        .keepalive(Duration::from_secs(1))
        .try_acquire(&pool)
        .await
        .unwrap();
    let lost = guard.lost();
    guard.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    guard
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    // Three keepalive bounds long, inside the transaction.
    guard.execute("SELECT pg_sleep(3)", &[]).await.unwrap();
    assert!(!guard.is_lost(), "a long statement is not a stall");
    // A failed transaction, left idle for two bounds.
    assert!(guard.execute("SELECT 1/0", &[]).await.is_err());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !guard.is_lost(),
        "an idle failed transaction is not a stall"
    );
    guard.batch_execute("ROLLBACK").await.unwrap();
    guard
        .batch_execute("BEGIN; INSERT INTO t VALUES (2); COMMIT")
        .await
        .unwrap();
    let rows: i64 = guard
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 1,
        "the body's transactions did what it said, untouched by pings"
    );
    assert!(tokio::time::timeout(Duration::from_millis(10), lost)
        .await
        .is_err());
    guard.release().await.unwrap();
}
