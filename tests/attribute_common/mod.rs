//! What the attribute's live tests (`tests/attribute_*.rs`) share: an error type, a second session to hold
//! or observe locks from, and `pg_locks` as the judge of who holds what.
#![allow(dead_code)] // each test file uses its own part of this

use std::time::{Duration, Instant};

use deadpool_postgres::{Client, Pool};
use pglock::LockKey;

/// The error type of the annotated fns under test.
#[derive(Debug)]
pub enum AppError {
    Lock(pglock::Error),
    Db(deadpool_postgres::tokio_postgres::Error),
    /// The body's own failure, to tell it apart from the lock's.
    Body(&'static str),
}

impl From<pglock::Error> for AppError {
    fn from(e: pglock::Error) -> Self {
        AppError::Lock(e)
    }
}

impl From<deadpool_postgres::tokio_postgres::Error> for AppError {
    fn from(e: deadpool_postgres::tokio_postgres::Error) -> Self {
        AppError::Db(e)
    }
}

impl AppError {
    pub fn lock(&self) -> &pglock::Error {
        match self {
            AppError::Lock(e) => e,
            other => panic!("expected a lock error, got {other:?}"),
        }
    }
}

/// A pool on the shared test database.
pub fn pool(max_size: usize) -> Pool {
    pglock::testdb::shared().pool(max_size)
}

/// A name no other test (or concurrent run) uses.
pub fn unique(label: &str) -> String {
    format!("pglock-tests/attribute/{label}/{}", std::process::id())
}

/// `pg_locks` columns of a key: a bigint k is (high 32 bits, low 32 bits, 1) as
/// unsigned oids; a pair (a, b) is (a, b, 2).
pub fn pg_locks_columns(key: LockKey) -> (u32, u32, i16) {
    match key {
        LockKey::BigInt(k) => ((k >> 32) as u32, k as u32, 1),
        LockKey::Pair(a, b) => (a as u32, b as u32, 2),
    }
}

/// The pids holding `key` (granted), in any mode, in this database.
pub async fn holders(observer: &Client, key: LockKey) -> Vec<i32> {
    let (classid, objid, objsubid) = pg_locks_columns(key);
    observer
        .query(
            "SELECT pid FROM pg_locks \
              WHERE locktype = 'advisory' AND granted \
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND classid = $1 AND objid = $2 AND objsubid = $3 \
              ORDER BY pid",
            &[&classid, &objid, &objsubid],
        )
        .await
        .expect("pg_locks")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The advisory locks a backend holds, as `pg_locks` shows them.
pub async fn locks_of(observer: &Client, pid: i32) -> Vec<(u32, u32, i16)> {
    observer
        .query(
            "SELECT classid, objid, objsubid FROM pg_locks \
              WHERE locktype = 'advisory' AND granted AND pid = $1 \
              ORDER BY classid, objid, objsubid",
            &[&pid],
        )
        .await
        .expect("pg_locks")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Polls `pg_locks` until nobody holds `key`; panics if someone still does after
/// one second (a bound on the server's view, not a speed test).
pub async fn assert_released_within_1s(observer: &Client, key: LockKey, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let held = holders(observer, key).await;
        if held.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {key} is still held by {held:?} one second later"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A session of its own that takes `key` in plain SQL: "held elsewhere".
pub struct Holder {
    pub client: Client,
    key: LockKey,
}

impl Holder {
    pub async fn take(pool: &Pool, key: LockKey) -> Holder {
        let client = pool.get().await.expect("a connection");
        match key {
            LockKey::BigInt(k) => client.execute("SELECT pg_advisory_lock($1)", &[&k]).await,
            LockKey::Pair(a, b) => {
                client
                    .execute("SELECT pg_advisory_lock($1, $2)", &[&a, &b])
                    .await
            }
        }
        .expect("pg_advisory_lock");
        Holder { client, key }
    }

    pub async fn release(self) {
        match self.key {
            LockKey::BigInt(k) => {
                self.client
                    .execute("SELECT pg_advisory_unlock($1)", &[&k])
                    .await
            }
            LockKey::Pair(a, b) => {
                self.client
                    .execute("SELECT pg_advisory_unlock($1, $2)", &[&a, &b])
                    .await
            }
        }
        .expect("pg_advisory_unlock");
    }
}
