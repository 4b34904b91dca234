//! The Locker at scale against the live server: where a new lock goes (the lock
//! session holding fewest), and many requests sent together.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{named_pool, unique};
use pglock::{AdvisoryLock, LockKey, Locker, LockerGuard};

/// The advisory locks held by the backends of `application`, as key → pid.
async fn holders_by_key(observer: &tokio_postgres::Client, application: &str) -> HashMap<i64, i32> {
    observer
        .query(
            "SELECT (l.classid::int8 << 32) | l.objid::int8, l.pid FROM pg_locks l \
               JOIN pg_stat_activity a ON a.pid = l.pid \
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                AND a.application_name = $1",
            &[&application],
        )
        .await
        .expect("pg_locks")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// How many locks each backend in `by_key` holds, sorted.
fn counts(by_key: &HashMap<i64, i32>) -> Vec<usize> {
    let mut per_pid: HashMap<i32, usize> = HashMap::new();
    for pid in by_key.values() {
        *per_pid.entry(*pid).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_pid.into_values().collect();
    counts.sort_unstable();
    counts
}

async fn take(locker: &Locker, keys: std::ops::Range<i64>) -> Vec<(i64, LockerGuard)> {
    let mut guards = Vec::new();
    for key in keys {
        let guard = AdvisoryLock::new(LockKey::BigInt(key))
            .try_acquire(locker)
            .await
            .expect("a free key");
        guards.push((key, guard));
    }
    guards
}

/// Polls `pg_locks` until `application`'s backends hold exactly `expected` locks.
async fn held_becomes(
    observer: &tokio_postgres::Client,
    application: &str,
    expected: usize,
) -> HashMap<i64, i32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let held = holders_by_key(observer, application).await;
        if held.len() == expected {
            return held;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} locks held, {expected} expected",
            held.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_new_lock_goes_on_the_session_holding_fewest() {
    let application = unique("placement");
    let locker = Locker::builder(named_pool(8, &application))
        .sessions(4)
        .build();
    let observer = common::observer().await;
    let base = 1_i64 << 40 | i64::from(std::process::id()) << 8;

    let mut guards = take(&locker, base..base + 40).await;
    let placed = held_becomes(&observer, &application, 40).await;
    assert_eq!(
        counts(&placed),
        [10, 10, 10, 10],
        "spread evenly: {placed:?}"
    );
    assert_eq!(locker.locks_per_session(), [10, 10, 10, 10]);

    // Empty one session: the next ten locks all go there.
    let emptied = placed[&base];
    guards.retain(|(key, _)| placed[key] != emptied);
    held_becomes(&observer, &application, 30).await;
    let more = take(&locker, base + 40..base + 50).await;
    let placed = held_becomes(&observer, &application, 40).await;
    for (key, _) in &more {
        assert_eq!(
            placed[key], emptied,
            "key {key} went on the emptied session"
        );
    }
    drop((guards, more));
    held_becomes(&observer, &application, 0).await;
}
