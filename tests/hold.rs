//! `hold_at_least` against a real server:
//!
//! - 4 processes (`examples/scheduled_job`) fire the same job in 10 periods, each
//!   firing late by a random 0–2 s (clocks that disagree): with `skip` and
//!   `hold_at_least = "3s"` it runs exactly once per period; the control without the
//!   hold runs it more often;
//! - the fn returns at once and the lock stays held (in `pg_locks`) until the hold
//!   runs out, then is released, from a Pool and through a Locker; through a Locker
//!   the hold costs no connection.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Pool;
use pglock::{AdvisoryLock, LockGuard, LockKey, Locker};
use tokio::time::Instant;

const PROCESSES: usize = 4;

async fn runs_table(label: &str) -> String {
    let table = common::unique(label).replace(':', "_");
    common::observer()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{table}\" (firing int NOT NULL, pid int NOT NULL)"
        ))
        .await
        .expect("create the runs table");
    table
}

/// Runs the fleet for `firings` periods; returns how many times each firing ran.
async fn fire_fleet(table: &str, firings: u32, flags: &[&str]) -> Vec<i64> {
    let binary = common::example_binary("scheduled_job");
    // Far enough ahead for every process to be connected and waiting.
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(3);
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(&binary)
                .args([pglock::testdb::shared().url(), table])
                .args(["--start-unix-ms", &start.as_millis().to_string()])
                .args(["--firings", &firings.to_string()])
                .args(flags)
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn examples/scheduled_job")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "a job process failed: {out:?}");
    }
    let observer = common::observer().await;
    let rows = observer
        .query(
            &format!(
                "SELECT count(r.firing) FROM generate_series(0, $1 - 1) AS f(n) \
                 LEFT JOIN \"{table}\" r ON r.firing = f.n GROUP BY f.n ORDER BY f.n"
            ),
            &[&(firings as i32)],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// The shortest period the schedule allows: the first firing of a period (up to
/// 2 s late) holds the lock 3 s, so the hold may last until 5 s into the period; a
/// shorter period could find the previous period's hold still on at every firing.
const PERIOD_MS: &str = "5000";

#[tokio::test]
async fn four_processes_with_clocks_2s_apart_run_the_job_once_per_period() {
    let table = runs_table("scheduled").await;
    let runs = fire_fleet(&table, 10, &["--period-ms", PERIOD_MS]).await;
    println!("runs per period: {runs:?}");
    assert_eq!(runs, vec![1; 10]);
}

#[tokio::test]
async fn control_without_the_hold_the_job_runs_more_than_once_per_period() {
    let table = runs_table("scheduled-unheld").await;
    // No hold to outlast: a period just longer than the clock offsets.
    let runs = fire_fleet(&table, 3, &["--no-hold", "--period-ms", "2500"]).await;
    println!("runs per period without the hold: {runs:?}");
    assert!(
        runs.iter().sum::<i64>() > 3,
        "{runs:?}: the control cannot tell"
    );
}

/// Whether `key` is held, as `pg_locks` says.
async fn held(observer: &tokio_postgres::Client, key: LockKey) -> bool {
    common::lock_rows(observer, key)
        .await
        .iter()
        .any(|r| r.granted)
}

/// Drops a guard of a lock held at least `hold`, and checks by `pg_locks` that the
/// lock stays held until then and is released after.
async fn held_until_the_hold_runs_out<G>(guard: G, key: LockKey, hold: Duration, granted: Instant) {
    let observer = common::observer().await;
    assert!(held(&observer, key).await, "held before the drop");
    drop(guard);
    assert!(
        held(&observer, key).await,
        "still held right after the drop"
    );
    // Held until grant + hold...
    while Instant::now() + Duration::from_millis(100) < granted + hold {
        assert!(
            held(&observer, key).await,
            "released before the hold ran out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and released soon after.
    let rows = common::gone_within(&observer, key, hold + Duration::from_secs(1)).await;
    assert!(
        rows.is_empty(),
        "still held after the hold ran out: {rows:?}"
    );
}

/// How long the guards of these tests must stay held after the grant.
const HOLD: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_pool_guard_dropped_early_stays_held_until_the_hold_runs_out() {
    let pool = common::pool(2);
    let (guard, key, granted) = young_pool_guard(&pool, "hold-pool").await;
    held_until_the_hold_runs_out(guard, key, HOLD, granted).await;
}

/// A guard taken from `pool` with a hold of [`HOLD`]: its key, and when it was granted.
async fn young_pool_guard(pool: &Pool, label: &str) -> (LockGuard, LockKey, Instant) {
    let name = common::unique(label);
    let granted = Instant::now();
    let guard = AdvisoryLock::new(name.as_str())
        .hold_at_least(HOLD)
        .try_acquire(pool)
        .await
        .unwrap();
    (guard, LockKey::from_name(&name), granted)
}

#[tokio::test]
async fn a_locker_guard_dropped_early_stays_held_until_the_hold_runs_out_on_no_extra_connection() {
    let name = common::unique("hold-locker");
    let hold = HOLD;
    let pool = common::pool(3);
    let locker = Locker::builder(pool.clone()).sessions(1).build();
    let granted = Instant::now();
    let guard = AdvisoryLock::new(name.as_str())
        .hold_at_least(hold)
        .try_acquire(&locker)
        .await
        .unwrap();
    let before = pool.status().size;
    held_until_the_hold_runs_out(guard, LockKey::from_name(&name), hold, granted).await;
    assert_eq!(pool.status().size, before, "the hold took no connection");
}

#[tokio::test]
async fn release_of_a_young_guard_returns_at_once_and_the_hold_still_applies() {
    let pool = common::pool(2);
    let (guard, key, granted) = young_pool_guard(&pool, "hold-release").await;
    guard.release().await.expect("release reports Ok");
    let observer = common::observer().await;
    assert!(held(&observer, key).await, "still held after release()");
    let rows = common::gone_within(&observer, key, HOLD + Duration::from_secs(1)).await;
    assert!(rows.is_empty(), "released once the hold ran out: {rows:?}");
    assert!(granted.elapsed() >= HOLD);
}
