//! A key held by a prepared transaction (`PREPARE TRANSACTION`), whose `pg_locks`
//! row has no pid: `holders()` reports it (named by its gid) instead of panicking,
//! and acquisitions through a Pool and a Locker see it held (`Busy`, `Timeout`)
//! until `ROLLBACK PREPARED` frees it. One throwaway cluster with prepared
//! transactions enabled.

mod common;

use std::time::Duration;

use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, LockKey, LockMode, Locker};

#[tokio::test]
async fn a_key_held_by_a_prepared_transaction_is_reported_and_respected() {
    let cluster = Cluster::builder()
        .setting("max_prepared_transactions", "4")
        .start()
        .unwrap();
    let pool = cluster.db().pool(4);
    let observer = cluster.db().connect().await.unwrap();
    let name = "prepared-holder";
    let key = LockKey::from_name(name);

    let preparer = cluster.db().connect().await.unwrap();
    preparer
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{name}', 0)); \
             PREPARE TRANSACTION 'pglock-test-gid'"
        ))
        .await
        .unwrap();
    // The premise: the server shows the key held with no backend behind it.
    assert_eq!(
        pids(&observer, key, "AND granted").await,
        vec![None],
        "held by the prepared transaction alone"
    );

    let holders = pglock::holders(&pool, name).await.unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    let holder = &holders[0];
    assert_eq!(holder.prepared.as_deref(), Some("pglock-test-gid"));
    assert_eq!(holder.pid, 0, "no backend holds it");
    assert!(holder.granted);
    assert_eq!(holder.mode, LockMode::Exclusive);

    let lock = AdvisoryLock::new(name);
    let busy = lock.try_acquire(&pool).await.unwrap_err();
    assert!(busy.is_busy(), "{busy:?}");
    let limit = Duration::from_millis(200);
    let timeout = lock.acquire_timeout(&pool, limit).await.unwrap_err();
    assert!(timeout.is_timeout(), "{timeout:?}");
    let locker = Locker::new(pool.clone());
    let busy = lock.try_acquire(&locker).await.unwrap_err();
    assert!(busy.is_busy(), "{busy:?}");
    let timeout = lock.acquire_timeout(&locker, limit).await.unwrap_err();
    assert!(timeout.is_timeout(), "{timeout:?}");
    // The timed-out waits left nothing queued: only the prepared transaction.
    assert_eq!(
        pids(&observer, key, "").await,
        vec![None],
        "no waiter left behind"
    );

    preparer
        .batch_execute("ROLLBACK PREPARED 'pglock-test-gid'")
        .await
        .unwrap();
    let guard = lock.try_acquire(&pool).await.unwrap();
    let holders = pglock::holders(&pool, name).await.unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].prepared, None);
    assert_ne!(holders[0].pid, 0);
    guard.release().await.unwrap();
}

/// The backends in `pg_locks` for `key` (`None`: a prepared transaction), with an
/// extra condition such as `AND granted`.
async fn pids(
    observer: &tokio_postgres::Client,
    key: LockKey,
    condition: &str,
) -> Vec<Option<i32>> {
    let (classid, objid, objsubid) = common::columns(key);
    let query = format!(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' {condition} \
           AND classid = $1 AND objid = $2 AND objsubid = $3"
    );
    observer
        .query(&query, &[&classid, &objid, &objsubid])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
