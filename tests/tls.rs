//! pglock over TLS: a throwaway cluster that admits TCP clients only over TLS (as managed
//! PostgreSQL services do), and pools with `sslmode=require` whose connector trusts the CA
//! the cluster generated at start (see `pglock::testdb`).

use pglock::testdb::{Cluster, Tls};
use pglock::AdvisoryLock;

/// Whether the session behind `client` is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn tls_only_cluster() -> Cluster {
    Cluster::builder().tls(Tls::Required).start().unwrap()
}

#[tokio::test]
async fn lock_holders_and_unlock_over_a_tls_pool() {
    let cluster = tls_only_cluster();
    let pool = cluster.db().tls_pool(4).unwrap();
    let lock = AdvisoryLock::new("tls:lock-unlock");

    let guard = lock.try_acquire(&pool).await.unwrap();
    assert!(encrypted(&guard).await, "the guard's session is encrypted");
    let pid: i32 = guard
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let holders = pglock::holders(&pool, "tls:lock-unlock").await.unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].granted && holders[0].pid == pid, "{holders:?}");

    let second = lock.try_acquire(&pool).await;
    assert!(
        matches!(&second, Err(e) if e.is_busy()),
        "a second taker is refused: {second:?}"
    );

    guard.release().await.unwrap();
    assert!(pglock::holders(&pool, "tls:lock-unlock")
        .await
        .unwrap()
        .is_empty());
    let again = lock.try_acquire(&pool).await.unwrap();
    again.release().await.unwrap();
}

#[tokio::test]
async fn a_waiter_over_tls_is_granted_when_the_holder_releases() {
    let cluster = tls_only_cluster();
    let pool = cluster.db().tls_pool(4).unwrap();
    let lock = AdvisoryLock::new("tls:wait");
    let guard = lock.try_acquire(&pool).await.unwrap();

    let waiter = tokio::spawn({
        let (pool, lock) = (pool.clone(), lock.clone());
        async move { lock.acquire(&pool).await.map(|g| g.is_lost()) }
    });
    // The premise: the waiter really waits on the server before the holder lets go.
    loop {
        let holders = pglock::holders(&pool, "tls:wait").await.unwrap();
        if holders.iter().any(|h| !h.granted) {
            break;
        }
        tokio::task::yield_now().await;
    }
    guard.release().await.unwrap();
    assert!(!waiter.await.unwrap().unwrap(), "granted, not lost");
}

#[tokio::test]
async fn a_plain_pool_cannot_reach_the_tls_only_cluster() {
    let cluster = tls_only_cluster();
    let plain = cluster.db().pool(1);
    let err = AdvisoryLock::new("tls:plain")
        .try_acquire(&plain)
        .await
        .unwrap_err();
    let msg = format!("{err:?}");
    assert!(msg.contains("no encryption"), "{msg}");
}
