//! Modes and scopes against the live server: shared vs exclusive, handoff to a
//! waiter queued in the server, transaction-scoped locks, hostile names.

mod common;

use std::time::Duration;

use common::{gone_within, lock_rows, unique};
use pglock::{AdvisoryLock, CallSite, LockKey};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn shared_holders_coexist_and_exclude_an_exclusive_one() {
    let pool = common::pool(4);
    let observer = common::observer().await;
    let name = unique("shared");
    let shared = AdvisoryLock::new(name.as_str()).shared();
    let exclusive = AdvisoryLock::new(name.as_str());

    let first = shared.try_acquire(&pool).await.unwrap();
    let second = shared.try_acquire(&pool).await.unwrap();
    let rows = lock_rows(&observer, shared.key()).await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.granted && r.mode == "ShareLock"),
        "{rows:?}"
    );
    assert!(exclusive.try_acquire(&pool).await.unwrap_err().is_busy());

    first.release().await.unwrap();
    assert!(
        exclusive.try_acquire(&pool).await.unwrap_err().is_busy(),
        "one shared holder is enough to keep it out"
    );
    second.release().await.unwrap();

    let held = exclusive.try_acquire(&pool).await.unwrap();
    assert!(
        shared.try_acquire(&pool).await.unwrap_err().is_busy(),
        "exclusive keeps shared out"
    );
    assert_eq!(
        lock_rows(&observer, exclusive.key()).await[0].mode,
        "ExclusiveLock"
    );
    held.release().await.unwrap();
}

#[tokio::test]
async fn a_waiter_queues_in_the_server_and_gets_the_lock_on_release() {
    let pool = common::pool(4);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("handoff"));
    let holder = lock.try_acquire(&pool).await.unwrap();

    let waiter = tokio::spawn({
        let (pool, lock) = (pool.clone(), lock.clone());
        async move {
            let guard = lock.acquire(&pool).await.unwrap();
            let pid: i32 = guard
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            (guard, pid)
        }
    });
    let queued = common::waiter_within(&observer, lock.key(), SECOND)
        .await
        .expect("the waiter is queued in the server");
    // Waiting in the server's lock queue, not polling: the backend sleeps on the lock.
    let row = observer
        .query_one(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1",
            &[&queued.pid],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, Option<String>>(0),
            row.get::<_, Option<String>>(1)
        ),
        (Some("Lock".into()), Some("advisory".into()))
    );

    holder.release().await.unwrap();
    let (guard, pid) = tokio::time::timeout(SECOND, waiter)
        .await
        .expect("handed off as soon as the holder released")
        .unwrap();
    assert_eq!(pid, queued.pid, "the queued session is the one that got it");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn xact_lock_is_freed_at_commit() {
    let pool = common::pool(2);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new(unique("xact-commit"));
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    lock.acquire_xact(&tx).await.unwrap();
    assert_eq!(lock_rows(&observer, lock.key()).await.len(), 1);
    let other = pool.get().await.unwrap();
    let other_tx_busy = {
        let mut other = other;
        let tx2 = other.transaction().await.unwrap();
        lock.try_acquire_xact(&tx2).await.unwrap_err()
    };
    assert!(other_tx_busy.is_busy(), "{other_tx_busy:?}");
    tx.commit().await.unwrap();
    assert_eq!(lock_rows(&observer, lock.key()).await, vec![]);
}

#[tokio::test]
async fn xact_lock_is_freed_at_rollback() {
    let pool = common::pool(2);
    let observer = common::observer().await;
    let lock = AdvisoryLock::new((7, unique("xact").len() as i32)).shared();
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    lock.try_acquire_xact(&tx).await.unwrap();
    let rows = lock_rows(&observer, lock.key()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].mode, "ShareLock");
    tx.rollback().await.unwrap();
    assert_eq!(lock_rows(&observer, lock.key()).await, vec![]);
    // And a transaction dropped without either is rolled back, freeing it too.
    let tx = client.transaction().await.unwrap();
    lock.acquire_xact(&tx).await.unwrap();
    drop(tx);
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
}

#[tokio::test]
async fn hostile_names_are_only_data() {
    static SITE: CallSite = CallSite {
        function: "hostile */ SELECT 1; /*",
        file: "tests/modes.rs",
        line: 1,
    };
    let pool = common::pool(2);
    let observer = common::observer().await;
    let table = format!("victim_{}", std::process::id());
    observer
        .batch_execute(&format!("CREATE TABLE IF NOT EXISTS {table} (id int)"))
        .await
        .unwrap();
    let names = [
        format!("'); DROP TABLE {table}; --"),
        format!("\"; DROP TABLE {table}; -- */ /* '"),
        "O'Brien \\ \"quoted\" $1 $$dollar$$".to_string(),
    ];
    for name in &names {
        let lock = AdvisoryLock::new(name.as_str()).at(&SITE);
        let guard = lock.acquire(&pool).await.unwrap();
        let rows = lock_rows(&observer, LockKey::from_name(name)).await;
        assert_eq!(
            rows.len(),
            1,
            "the key is the hash of the name, bound as data"
        );
        let text: String = observer
            .query_one("SELECT hashtextextended($1, 0)::text", &[name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(LockKey::BigInt(text.parse().unwrap()), lock.key());
        guard.release().await.unwrap();
    }
    let exists: bool = observer
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0);
    assert!(exists, "the table survived every name");
    observer
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .unwrap();
}
