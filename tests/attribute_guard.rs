//! Live test of `guard = name`: the body gets the guard, and queries through it run
//! on the very session that holds the lock.

mod common;

use common::{holders, unique, AppError};
use deadpool_postgres::{Client, Pool};
use pglock::{advisory_locked, LockGuard, LockKey};

#[advisory_locked(key = "{name}", guard = conn)]
async fn locked_session(
    pool: &Pool,
    name: &str,
    observer: &Client,
) -> Result<(i32, Vec<i32>), AppError> {
    let _: &LockGuard = conn; // the guard itself, not a copy of its client
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    // Holders of the key, as another session sees them, and what the locked
    // session itself says it holds.
    let held_by = holders(observer, LockKey::from_name(name)).await;
    let mine: i64 = conn
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
               AND pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(mine, 1, "the guard's session holds exactly this lock");
    Ok((pid, held_by))
}

#[tokio::test]
async fn guard_runs_queries_on_the_locked_session() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let observer_pid: i32 = observer
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let name = unique("guard");
    let (pid, held_by) = locked_session(&pool, &name, &observer).await.unwrap();
    assert_ne!(pid, observer_pid);
    assert_eq!(
        held_by,
        vec![pid],
        "pg_locks shows the guard's session as the holder"
    );
}
