//! A cluster whose shared lock table is small, filled through a Locker to all but a
//! few slots, so that a batch of tries fails in its middle; and the count of granted
//! advisory locks, which judges what callers were told.

use std::time::Duration;

use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, LockKey, Locker, LockerGuard};

/// Slots left free by [`fill_all_but_a_few`]: a burst of tries past them fails.
pub const LEFT_FREE: usize = 20;

/// A throwaway cluster with room for a few hundred locks, logging every statement
/// (with its parameters) so a test can read which rows went in one batch.
pub fn small_cluster() -> Cluster {
    Cluster::start_with(&[
        ("max_locks_per_transaction", "10"),
        ("max_connections", "20"),
        ("log_statement", "all"),
    ])
    .expect("a cluster with a small lock table")
}

/// Takes keys `(1, n)` through `locker` until the table is full, then lets go of
/// the last [`LEFT_FREE`]; returns the locks still held, once `pg_locks` agrees.
pub async fn fill_all_but_a_few(
    locker: &Locker,
    observer: &tokio_postgres::Client,
) -> Vec<(AdvisoryLock, LockerGuard)> {
    let mut held = Vec::new();
    loop {
        let lock = AdvisoryLock::new(LockKey::Pair(1, held.len() as i32));
        match lock.try_acquire(locker).await {
            Ok(guard) => held.push((lock, guard)),
            Err(pglock::Error::LockTableFull { .. }) => break,
            Err(error) => panic!("filling the lock table: {error}"),
        }
    }
    held.truncate(held.len() - LEFT_FREE);
    advisory_held_becomes(observer, held.len() as i64).await;
    held
}

/// Advisory locks granted to anyone; -1 while the table is too full to read
/// `pg_locks`.
pub async fn advisory_held(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
            &[],
        )
        .await
        .map_or(-1, |row| row.get(0))
}

/// Polls until [`advisory_held`] is `expected` (at most 5 s).
pub async fn advisory_held_becomes(client: &tokio_postgres::Client, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let held = advisory_held(client).await;
        if held == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{held} advisory locks held, {expected} expected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
