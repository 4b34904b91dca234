//! Guarantee 8 for cancellation: over a TLS-only cluster (TCP clients must use TLS, as
//! managed PostgreSQL services demand) a wait whose future is dropped leaves no waiter
//! on the server, through a Pool and through a Locker's server waiter.

mod common;

use std::time::Duration;

use common::{assert_waiting, gone_within, tls_observer};
use pglock::testdb::{Cluster, Tls};
use pglock::{AdvisoryLock, Locker};

/// Drops `wait` once the server shows it queued for `lock`, then checks that
/// nothing but `holder_pid` is left on the key.
async fn drop_queued_wait<F: std::future::Future>(
    observer: &tokio_postgres::Client,
    lock: &AdvisoryLock,
    wait: F,
    what: &str,
) {
    let mut wait = Box::pin(wait);
    tokio::select! {
        _ = &mut wait => panic!("{what}: the wait ended although the key is held"),
        _ = assert_waiting(observer, lock.key(), what) => {}
    }
    drop(wait);
    let left: Vec<_> = gone_within(observer, lock.key(), Duration::from_secs(5))
        .await
        .into_iter()
        .filter(|row| !row.granted)
        .collect();
    assert!(
        left.is_empty(),
        "{what}: a waiter is left on the server: {left:?}"
    );
}

#[tokio::test]
async fn a_dropped_pool_wait_over_tls_leaves_no_waiter() {
    let cluster = Cluster::builder().tls(Tls::Required).start().unwrap();
    let pool = cluster.db().tls_pool(4).unwrap();
    let observer = tls_observer(&cluster).await;
    let lock = AdvisoryLock::new("tls-cancel:pool");
    let holder = lock.try_acquire(&pool).await.unwrap();

    for limit in [None, Some(Duration::from_secs(60))] {
        let wait = async {
            match limit {
                None => lock.acquire(&pool).await,
                Some(limit) => lock.acquire_timeout(&pool, limit).await,
            }
        };
        drop_queued_wait(&observer, &lock, wait, &format!("pool wait {limit:?}")).await;
    }
    holder.release().await.unwrap();
    let again = lock.try_acquire(&pool).await.unwrap();
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_dropped_locker_wait_over_tls_leaves_no_waiter() {
    let cluster = Cluster::builder().tls(Tls::Required).start().unwrap();
    let pool = cluster.db().tls_pool(6).unwrap();
    let observer = tls_observer(&cluster).await;
    let lock = AdvisoryLock::new("tls-cancel:locker");
    // Held from the pool, so the Locker's request queues on the server.
    let holder = lock.try_acquire(&pool).await.unwrap();
    let locker = Locker::new(pool.clone());

    drop_queued_wait(&observer, &lock, lock.acquire(&locker), "locker wait").await;
    holder.release().await.unwrap();
    let again = lock.try_acquire(&locker).await.unwrap();
    drop(again);
}
