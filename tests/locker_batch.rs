//! The Locker at scale against the live server: where a new lock goes (the lock
//! session holding fewest); 5,000 locks taken and released together in few
//! statements (counted by `pg_stat_statements`); and a batch failing in its middle
//! (the lock table fills), where each caller still gets its own answer and nothing
//! is left held.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::counted::{self, calls};
use common::lock_table::{self, advisory_held, advisory_held_becomes};
use common::{named_pool, unique};
use futures_util::future::join_all;
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

/// Takes `keys` through `locker` all at once, each in a task of its own.
async fn take_concurrently(
    locker: &Locker,
    keys: impl Iterator<Item = LockKey>,
) -> Vec<Result<LockerGuard, pglock::Error>> {
    let tasks: Vec<_> = keys
        .map(|key| {
            let locker = locker.clone();
            tokio::spawn(async move { AdvisoryLock::new(key).try_acquire(&locker).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("the task ran"));
    }
    answers
}

/// What tells the Locker's batch statement from every other statement.
const BATCH_TEXT: &str = "pg_catalog.unnest($1::pg_catalog.int2[])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_locks_taken_together_go_in_few_statements() {
    let cluster = counted::start();
    let observer = counted::observer(&cluster).await;
    // The counter counts single statements one by one (the control of the count).
    counted::reset(&observer).await;
    for key in 0..100_i64 {
        observer
            .execute("SELECT pg_advisory_unlock($1::int8) /* control */", &[&key])
            .await
            .unwrap();
    }
    assert_eq!(calls(&observer, "/* control */").await, 100);

    let locker = Locker::new(cluster.db().pool(4));
    counted::reset(&observer).await;
    let keys = || (0..5_000).map(|k| LockKey::Pair(7, k));
    let guards: Vec<LockerGuard> = take_concurrently(&locker, keys())
        .await
        .into_iter()
        .map(|answer| answer.expect("a free key"))
        .collect();
    assert_eq!(advisory_held(&observer).await, 5_000, "every lock held");
    drop(guards);
    advisory_held_becomes(&observer, 0).await;

    let batches = calls(&observer, BATCH_TEXT).await;
    let singles = calls(&observer, "advisory").await - batches;
    println!("10,000 requests in {batches} batch statements and {singles} others");
    assert!(batches >= 2, "both the tries and the unlocks were batched");
    assert!(
        batches + singles <= 1_000,
        "10,000 requests went in {batches} batches and {singles} single statements"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_batch_past_the_lock_table_each_caller_gets_its_own_answer() {
    let cluster = lock_table::small_cluster();
    let locker = Locker::builder(cluster.db().pool(2)).sessions(1).build();
    let observer = cluster.db().connect().await.unwrap();
    // Room for a few more: a burst of tries then has to fail in its middle.
    let held: Vec<_> = lock_table::fill_all_but_a_few(&locker, &observer)
        .await
        .into_iter()
        .map(|(_, guard)| guard)
        .collect();

    let answers = take_concurrently(&locker, (0..200).map(|k| LockKey::Pair(2, k))).await;
    let mut granted = Vec::new();
    let mut full = 0;
    for answer in answers {
        match answer {
            Ok(guard) => granted.push(guard),
            Err(pglock::Error::LockTableFull { .. }) => full += 1,
            Err(error) => panic!(
                "each caller gets its own answer, not {error:?}; server log: {}",
                std::fs::read_to_string(cluster.data_dir().join("../server.log"))
                    .unwrap_or_default()
            ),
        }
    }
    println!("{} granted, {full} refused", granted.len());
    assert!(
        !granted.is_empty() && full > 0,
        "the burst filled the table"
    );
    assert_eq!(
        advisory_held(&observer).await,
        (held.len() + granted.len()) as i64,
        "held exactly by the callers told so"
    );
    assert!(granted.iter().chain(&held).all(|g| !g.is_lost()));
    drop((held, granted));
    advisory_held_becomes(&observer, 0).await;
}

/// Sixteen tasks on one lock session, each dropping its guard and trying its key
/// again at once: each queues an unlock and a try of one key back to back. A
/// batch has one row per key (an unlock and the try right after it share one, as
/// a relock: `locker_relock.rs`), and any other request for a key already in the
/// batch waits for the next one; the other keys' requests still go together, and
/// the server runs a few statements per round of the sixteen, not one per call
/// (as when a batch was cut at the first repeated key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_retaking_their_keys_at_once_still_share_statements() {
    let cluster = counted::start();
    let observer = counted::observer(&cluster).await;
    let locker = Locker::builder(cluster.db().pool(4)).sessions(1).build();
    // Warm: the lock session open and its statements prepared.
    drop(
        AdvisoryLock::new(LockKey::Pair(8, 0))
            .try_acquire(&locker)
            .await
            .unwrap(),
    );
    advisory_held_becomes(&observer, 0).await;
    counted::reset(&observer).await;
    const TASKS: i32 = 16;
    const ROUNDS: i64 = 200;
    let tasks: Vec<_> = (1..=TASKS)
        .map(|k| {
            let locker = locker.clone();
            tokio::spawn(async move {
                let lock = AdvisoryLock::new(LockKey::Pair(8, k));
                for _ in 0..ROUNDS {
                    drop(lock.try_acquire(&locker).await.expect("a key of its own"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("the task ran");
    }
    advisory_held_becomes(&observer, 0).await;
    let requests = 2 * TASKS as i64 * ROUNDS;
    let statements = calls(&observer, "advisory").await;
    println!("{requests} requests in {statements} statements");
    assert!(
        statements <= requests / 4,
        "{requests} requests went in {statements} statements"
    );
}

/// Keys dropped and taken again at once go in a batch as fused rows (an unlock and
/// a try of one key, the relock code in the batch's `$1`, read in the server log);
/// when that batch fails in its middle (the lock table fills), each fused row is read
/// back as its unlock, then its try, and every caller still gets its own answer. On
/// a current-thread runtime everything is queued before the batch task runs, so
/// the rows go in one batch.
#[tokio::test]
async fn fused_rows_in_a_batch_past_the_lock_table_give_each_caller_its_own_answer() {
    let cluster = lock_table::small_cluster();
    let locker = Locker::builder(cluster.db().pool(2)).sessions(1).build();
    let observer = cluster.db().connect().await.unwrap();
    let mut held = lock_table::fill_all_but_a_few(&locker, &observer).await;

    let retaken: Vec<_> = held.split_off(held.len() - 10);
    let (locks, guards): (Vec<_>, Vec<_>) = retaken.into_iter().unzip();
    drop(guards);
    let locker = &locker;
    let again = locks.iter().map(|lock| lock.try_acquire(locker));
    let burst = (0..200).map(|k| async move {
        AdvisoryLock::new(LockKey::Pair(2, k))
            .try_acquire(locker)
            .await
    });
    let (again, burst) = tokio::join!(join_all(again), join_all(burst));
    let log = std::fs::read_to_string(cluster.data_dir().join("../server.log")).unwrap();
    assert!(
        log.contains("$1 = '{9,9,9,9,9,9,9,9,9,9,1,1"),
        "the ten went fused, ahead of the burst, in one batch"
    );
    assert!(log.contains("out of shared memory"), "the batch failed");
    let again: Vec<_> = again
        .into_iter()
        .map(|answer| answer.expect("a key given back and taken again in one row"))
        .collect();
    let granted: Vec<_> = burst.into_iter().filter_map(Result::ok).collect();
    assert!(granted.len() < 200, "the burst filled the table");
    assert_eq!(
        advisory_held(&observer).await,
        (held.len() + again.len() + granted.len()) as i64,
        "held exactly by the callers told so"
    );
    drop((held, again, granted));
    advisory_held_becomes(&observer, 0).await;
}
