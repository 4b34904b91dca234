//! Guarantee 9, any `search_path`: sessions whose search_path puts a hostile schema
//! before `pg_catalog`, where look-alike advisory lock functions (and a text `=`)
//! always answer "granted" / "released" and do nothing. A raw unqualified call on
//! such a session is fooled (the control); pglock's statements are not: one holder
//! at a time, unlocks that really unlock, `holders()` that tells the truth, through
//! a Pool and a Locker. One throwaway cluster, judged by `pg_locks` from a session
//! with the default search_path.

mod common;

use std::time::Duration;

use common::backend::{assert_running, pid_of, running};
use deadpool_postgres::{Manager, Pool};
use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, LockKey, LockMode, Locker};
use tokio_postgres::NoTls;

/// Functions that claim every lock is granted and every unlock released, in both
/// key spaces and modes, plus an `=` on text that is always true.
const HOSTILE_SCHEMA: &str = r#"
CREATE SCHEMA evil;
CREATE FUNCTION evil.pg_try_advisory_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_try_advisory_lock(int, int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_try_advisory_lock_shared(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_try_advisory_xact_lock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_advisory_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT NULL::void';
CREATE FUNCTION evil.pg_advisory_lock(int, int) RETURNS void LANGUAGE sql AS 'SELECT NULL::void';
CREATE FUNCTION evil.pg_advisory_lock_shared(bigint) RETURNS void LANGUAGE sql AS 'SELECT NULL::void';
CREATE FUNCTION evil.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE sql AS 'SELECT NULL::void';
CREATE FUNCTION evil.pg_advisory_unlock(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_advisory_unlock(int, int) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_advisory_unlock_shared(bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION evil.pg_backend_pid() RETURNS int LANGUAGE sql AS 'SELECT 0';
CREATE FUNCTION evil.text_always_equal(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_always_equal);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
"#;

/// A pool whose every session runs with the hostile schema first.
fn hostile_pool(cluster: &Cluster, max_size: usize) -> Pool {
    let mut config = cluster.db().config();
    config.options("-c search_path=evil,pg_catalog");
    Pool::builder(Manager::new(config, NoTls))
        .max_size(max_size)
        .build()
        .unwrap()
}

async fn hostile_cluster_of(max_size: usize) -> (Cluster, Pool, tokio_postgres::Client) {
    let cluster = Cluster::start().unwrap();
    let observer = cluster.db().connect().await.unwrap();
    observer.batch_execute(HOSTILE_SCHEMA).await.unwrap();
    let pool = hostile_pool(&cluster, max_size);
    (cluster, pool, observer)
}

async fn hostile_cluster() -> (Cluster, Pool, tokio_postgres::Client) {
    hostile_cluster_of(4).await
}

async fn foreign_holding(cluster: &Cluster, key: i64) -> tokio_postgres::Client {
    let client = cluster.db().connect().await.unwrap();
    client
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    client
}

#[tokio::test]
async fn the_hostile_schema_fools_an_unqualified_call() {
    let (cluster, pool, observer) = hostile_cluster().await;
    let key = 9_001_i64;
    let _foreign = foreign_holding(&cluster, key).await;
    let session = pool.get().await.unwrap();
    let path: String = session
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(path, "evil,pg_catalog");
    let granted: bool = session
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(granted, "the look-alike answers 'granted'");
    let holders = common::holders(&observer, LockKey::BigInt(key)).await;
    assert_eq!(holders.len(), 1, "yet only the foreign session holds it");
}

#[tokio::test]
async fn a_pool_never_gets_a_second_holder_and_really_unlocks() {
    let (cluster, pool, observer) = hostile_cluster().await;
    let key = 9_002_i64;
    let lock = AdvisoryLock::new(key);
    let foreign = foreign_holding(&cluster, key).await;
    assert!(lock.try_acquire(&pool).await.unwrap_err().is_busy());
    assert!(lock
        .clone()
        .shared()
        .try_acquire(&pool)
        .await
        .unwrap_err()
        .is_busy());
    let limit = Duration::from_millis(200);
    assert!(lock
        .acquire_timeout(&pool, limit)
        .await
        .unwrap_err()
        .is_timeout());
    assert_eq!(
        common::holders(&observer, LockKey::BigInt(key)).await.len(),
        1
    );

    foreign
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let guard = lock.acquire(&pool).await.unwrap();
    let pid: i32 = observer
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_catalog.pg_advisory_lock%' \
               AND pid <> pg_backend_pid() ORDER BY state_change DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        common::holders(&observer, LockKey::BigInt(key)).await,
        vec![pid]
    );
    let listed = pglock::holders(&pool, key).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].pid, listed[0].granted), (pid, true));
    assert_eq!(listed[0].mode, LockMode::Exclusive);
    assert!(lock.try_acquire(&pool).await.unwrap_err().is_busy());

    guard.release().await.unwrap();
    common::assert_released_within_1s(&observer, LockKey::BigInt(key), "release").await;
    assert!(pglock::holders(&pool, key).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_locker_never_gets_a_second_holder_and_really_unlocks() {
    let (cluster, pool, observer) = hostile_cluster().await;
    let key = 9_003_i64;
    let lock = AdvisoryLock::new(key);
    let locker = Locker::new(pool.clone());
    let foreign = foreign_holding(&cluster, key).await;
    assert!(lock.try_acquire(&locker).await.unwrap_err().is_busy());
    let limit = Duration::from_millis(200);
    assert!(lock
        .acquire_timeout(&locker, limit)
        .await
        .unwrap_err()
        .is_timeout());
    foreign
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();

    let guard = lock.acquire(&locker).await.unwrap();
    assert_eq!(
        common::holders(&observer, LockKey::BigInt(key)).await.len(),
        1
    );
    // Held on the server: a plain session cannot take it.
    let other = cluster.db().connect().await.unwrap();
    let granted: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(!granted, "the Locker's lock is a real server lock");
    guard.release().await.unwrap();
    common::assert_released_within_1s(&observer, LockKey::BigInt(key), "locker release").await;
}

/// The backend pid of the session behind `client`.
const SLEEP: &str = "SELECT pg_catalog.pg_sleep(3)";

/// The session check before reuse compares `pg_stat_activity` text: under the
/// hostile `=` every session looked idle, and the try queued behind a dropped body's
/// `pg_sleep` (answering `Ok` once it ended). Judged by what the busy backend still
/// runs when the answer comes, not by a duration.
#[tokio::test]
async fn a_try_is_not_queued_behind_a_dropped_bodys_statement() {
    let (_cluster, pool, observer) = hostile_cluster().await;
    let lock = AdvisoryLock::new(9_004_i64);
    let guard = lock.try_acquire(&pool).await.unwrap();
    let busy = pid_of(&guard).await;
    let body = async move { guard.query(SLEEP, &[]).await };
    tokio::select! {
        _ = body => panic!("the body's statement ended before it was seen running"),
        () = assert_running(&observer, busy, SLEEP) => {}
    }

    let answer = lock.try_acquire(&pool).await;
    assert_eq!(
        running(&observer, busy).await.as_deref(),
        Some(SLEEP),
        "answered only after the dropped body's statement ended: {answer:?}"
    );
    assert!(
        matches!(&answer, Err(e) if e.is_busy()),
        "the busy session still holds the key: {answer:?}"
    );
}

/// The cancel of a dropped nested wait checks, in the same statement, that the
/// backend runs that wait: under the hostile `=` the check passed for any text and
/// the cancel hit the body's own query.
#[tokio::test]
async fn a_dropped_nested_wait_does_not_cancel_the_bodys_own_query() {
    let (cluster, pool, observer) = hostile_cluster_of(1).await;
    let (outer, inner) = ("search-path:outer", "search-path:inner");
    let LockKey::BigInt(raw) = AdvisoryLock::new(inner).key() else {
        unreachable!("a name hashes to a bigint key")
    };
    let hold_inner = foreign_holding(&cluster, raw);
    common::nested_cancel::assert_a_dropped_nested_wait_spares_the_body(
        &pool,
        &observer,
        (outer, inner),
        hold_inner,
    )
    .await;
}
