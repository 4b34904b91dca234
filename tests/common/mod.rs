//! Helpers shared by the live tests: a pool on the test database, and views of
//! `pg_locks` / `pg_stat_activity` read from a connection of their own.
#![allow(dead_code)] // each test binary uses a different part

pub mod capture;

use std::time::Duration;

use deadpool_postgres::Pool;
use pglock::LockKey;
use tokio::time::Instant;

/// A pool on the test database (`DATABASE_URL` or the throwaway cluster).
pub fn pool(max_size: usize) -> Pool {
    pglock::testdb::shared().pool(max_size)
}

/// A pool whose connections carry `application_name = name`, so the test can find
/// its backends in `pg_stat_activity`.
pub fn named_pool(max_size: usize, name: &str) -> Pool {
    let mut config = pglock::testdb::shared().config();
    config.application_name(name);
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    Pool::builder(manager).max_size(max_size).build().unwrap()
}

/// A plain connection of its own, for watching the server from outside the library.
pub async fn observer() -> tokio_postgres::Client {
    let (client, connection) = pglock::testdb::shared()
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("observer connection");
    tokio::spawn(connection);
    client
}

/// `pg_locks`' columns for a key: (classid, objid, objsubid).
pub fn columns(key: LockKey) -> (i64, i64, i16) {
    match key {
        LockKey::BigInt(k) => ((k as u64 >> 32) as i64, (k as u64 & 0xffff_ffff) as i64, 1),
        LockKey::Pair(a, b) => (a as u32 as i64, b as u32 as i64, 2),
    }
}

/// One row of `pg_locks` for an advisory key.
#[derive(Debug, Clone, PartialEq)]
pub struct LockRow {
    pub pid: i32,
    pub mode: String,
    pub granted: bool,
}

/// Who holds or waits for `key`, as the server sees it.
pub async fn lock_rows(observer: &tokio_postgres::Client, key: LockKey) -> Vec<LockRow> {
    let (classid, objid, objsubid) = columns(key);
    observer
        .query(
            "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
             AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = $3::int2 ORDER BY pid",
            &[&classid, &objid, &objsubid],
        )
        .await
        .expect("read pg_locks")
        .into_iter()
        .map(|row| LockRow {
            pid: row.get(0),
            mode: row.get(1),
            granted: row.get(2),
        })
        .collect()
}

/// Polls `pg_locks` until nobody holds or waits for `key`, for at most `within`.
/// Returns what it saw last (empty when the key was freed in time).
pub async fn gone_within(
    observer: &tokio_postgres::Client,
    key: LockKey,
    within: Duration,
) -> Vec<LockRow> {
    let deadline = Instant::now() + within;
    loop {
        let rows = lock_rows(observer, key).await;
        if rows.is_empty() || Instant::now() >= deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `key` has a waiter (an ungranted row), for at most `within`.
pub async fn waiter_within(
    observer: &tokio_postgres::Client,
    key: LockKey,
    within: Duration,
) -> Option<LockRow> {
    let deadline = Instant::now() + within;
    loop {
        let rows = lock_rows(observer, key).await;
        if let Some(waiter) = rows.into_iter().find(|r| !r.granted) {
            return Some(waiter);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Advisory locks held by the session of `client`.
pub async fn advisory_locks_of(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("count own locks")
        .get(0)
}

/// A lock name no other test uses, so tests can run side by side on one database.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Holds `key` from a plain connection of its own, outside the library.
pub struct Foreign {
    pub client: tokio_postgres::Client,
    pub pid: i32,
}

impl Foreign {
    pub async fn connect() -> Foreign {
        let client = observer().await;
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        Foreign { client, pid }
    }

    pub async fn lock(&self, key: LockKey) {
        match key {
            LockKey::BigInt(k) => self
                .client
                .execute("SELECT pg_advisory_lock($1)", &[&k])
                .await
                .unwrap(),
            LockKey::Pair(a, b) => self
                .client
                .execute("SELECT pg_advisory_lock($1, $2)", &[&a, &b])
                .await
                .unwrap(),
        };
    }

    pub async fn unlock(&self, key: LockKey) {
        let freed: bool = match key {
            LockKey::BigInt(k) => self
                .client
                .query_one("SELECT pg_advisory_unlock($1)", &[&k])
                .await
                .unwrap()
                .get(0),
            LockKey::Pair(a, b) => self
                .client
                .query_one("SELECT pg_advisory_unlock($1, $2)", &[&a, &b])
                .await
                .unwrap()
                .get(0),
        };
        assert!(freed, "the foreign session held {key}");
    }
}

/// The path of an example binary of this package, built first: `cargo test` builds
/// the examples too, but running one test alone (`cargo test --test x`) does not, and
/// a stale example would test old code.
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = profile_dir.ends_with("release");
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "--example", name])
        .args(release.then_some("--release"))
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    assert!(
        path.exists(),
        "{} is missing after building it",
        path.display()
    );
    path
}
