//! `pg_locks`, read from a connection of the test's own, as the judge of who holds
//! or waits for a key; and one bounded poll for every "until the server shows it".

use std::time::Duration;

use pglock::LockKey;
use tokio::time::Instant;
use tokio_postgres::Client;

/// How long a test waits for the server to show a state it expects: generous, as
/// the machine may be loaded; only a bug takes this long.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// `pg_locks`' columns for a key: (classid, objid, objsubid). A bigint k is (high
/// 32 bits, low 32 bits, 1) as unsigned oids; a pair (a, b) is (a, b, 2).
pub fn columns(key: LockKey) -> (u32, u32, i16) {
    match key {
        LockKey::BigInt(k) => ((k >> 32) as u32, k as u32, 1),
        LockKey::Pair(a, b) => (a as u32, b as u32, 2),
    }
}

/// One row of `pg_locks` for an advisory key.
#[derive(Debug, Clone, PartialEq)]
pub struct LockRow {
    pub pid: i32,
    pub mode: String,
    pub granted: bool,
}

/// Who holds or waits for `key` in this database, as the server sees it.
pub async fn lock_rows(observer: &Client, key: LockKey) -> Vec<LockRow> {
    let (classid, objid, objsubid) = columns(key);
    observer
        .query(
            "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory' \
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND classid = $1 AND objid = $2 AND objsubid = $3 ORDER BY pid",
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

/// The pids holding `key` (granted), in any mode.
pub async fn holders(observer: &Client, key: LockKey) -> Vec<i32> {
    lock_rows(observer, key)
        .await
        .into_iter()
        .filter(|row| row.granted)
        .map(|row| row.pid)
        .collect()
}

/// The advisory locks a backend holds, as their `pg_locks` columns.
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

/// Advisory locks held by the session of `client`.
pub async fn advisory_locks_of(client: &Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("count own locks")
        .get(0)
}

/// Reads `key`'s rows until `seen` finds what it looks for, for at most `within`;
/// else the rows it saw last.
pub async fn poll<T>(
    observer: &Client,
    key: LockKey,
    within: Duration,
    seen: impl Fn(Vec<LockRow>) -> Result<T, Vec<LockRow>>,
) -> Result<T, Vec<LockRow>> {
    let deadline = Instant::now() + within;
    loop {
        match seen(lock_rows(observer, key).await) {
            Ok(found) => return Ok(found),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Polls until nobody holds or waits for `key`, for at most `within`.
/// Returns what it saw last (empty when the key was freed in time).
pub async fn gone_within(observer: &Client, key: LockKey, within: Duration) -> Vec<LockRow> {
    let gone = |rows: Vec<LockRow>| if rows.is_empty() { Ok(()) } else { Err(rows) };
    poll(observer, key, within, gone)
        .await
        .err()
        .unwrap_or_default()
}

/// Polls `pg_stat_activity` until backend `pid` has left the server, for at most
/// `within`; whether it did (a session closed, not kept idle in some pool).
pub async fn backend_gone_within(observer: &Client, pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let alive: bool = observer
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&pid],
            )
            .await
            .expect("read pg_stat_activity")
            .get(0);
        if !alive {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails the test unless nobody holds or waits for `key` within one second (a
/// bound on the server's view, not a speed test).
pub async fn assert_released_within_1s(observer: &Client, key: LockKey, what: &str) {
    let left = gone_within(observer, key, Duration::from_secs(1)).await;
    assert!(
        left.is_empty(),
        "{what}: {key} is still held or awaited one second later: {left:?}"
    );
}

/// Polls until `key` has a waiter (an ungranted row), for at most `within`.
pub async fn waiter_within(observer: &Client, key: LockKey, within: Duration) -> Option<LockRow> {
    poll(observer, key, within, first_waiter).await.ok()
}

fn first_waiter(rows: Vec<LockRow>) -> Result<LockRow, Vec<LockRow>> {
    match rows.iter().position(|r| !r.granted) {
        Some(at) => Ok(rows[at].clone()),
        None => Err(rows),
    }
}

/// The first waiter for `key` the server shows; fails the test (naming `what`)
/// if none shows up within [`PATIENCE`].
pub async fn assert_waiting(observer: &Client, key: LockKey, what: &str) -> LockRow {
    match poll(observer, key, PATIENCE, first_waiter).await {
        Ok(row) => row,
        Err(rows) => panic!("{what}: no waiter for {key} in pg_locks after {PATIENCE:?}: {rows:?}"),
    }
}

/// The pids holding `key` once at least `n` do; fails the test (naming `what`) if
/// fewer do within [`PATIENCE`].
pub async fn assert_held_by_at_least(
    observer: &Client,
    key: LockKey,
    n: usize,
    what: &str,
) -> Vec<i32> {
    let held = |rows: Vec<LockRow>| {
        let pids: Vec<i32> = rows.iter().filter(|r| r.granted).map(|r| r.pid).collect();
        if pids.len() >= n {
            Ok(pids)
        } else {
            Err(rows)
        }
    };
    match poll(observer, key, PATIENCE, held).await {
        Ok(pids) => pids,
        Err(rows) => panic!("{what}: {key} not held by {n} after {PATIENCE:?}: {rows:?}"),
    }
}
