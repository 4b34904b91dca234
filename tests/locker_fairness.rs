//! Handoff inside a process skips the server, but must not starve other processes:
//! two processes of 8 tasks each, contending for one key through a Locker for 5 s,
//! both make progress. A Locker that never gives the key back to the server
//! (no handoff limit, no handoff window) is the control: there one process starves.
//! Overlapping shared holders, through a Locker or a Pool, leave an exclusive waiter
//! of another session its turn. A fleet of 12 instances of `examples/fleet_worker`
//! through Lockers: every instance gets at least half the busiest one's entries and
//! no `wait = "3s"` runs out; with Lockers that keep their keys (the control), one
//! instance takes everything and the others time out.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Foreign;
use pglock::{AdvisoryLock, LockKey, LockSource, Locker};
use tokio::task::JoinHandle;

/// Two `examples/locker_contend` processes for `name`, started back to back (the
/// example is built first: a build between the two starts would give the first a
/// head start of its own, which the control would take for starvation or hide it).
fn contend_pair(name: &str, seconds: u64, unbounded: bool) -> [tokio::process::Child; 2] {
    let binary = common::example_binary("locker_contend");
    [0, 1].map(|_| contend(&binary, name, seconds, unbounded))
}

fn contend(
    binary: &std::path::Path,
    name: &str,
    seconds: u64,
    unbounded: bool,
) -> tokio::process::Child {
    const TASKS: usize = 8;
    tokio::process::Command::new(binary)
        .args([
            pglock::testdb::shared().url(),
            name,
            &TASKS.to_string(),
            &seconds.to_string(),
        ])
        .args(unbounded.then_some("unbounded"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn examples/locker_contend")
}

/// The process-contention tests measure shares of CPU-bound progress: run one at a
/// time, so that neither measures the other's load.
static ONE_CONTENTION_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn entries(child: tokio::process::Child) -> u64 {
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    text.trim()
        .strip_prefix("entries ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {text}"))
}

#[tokio::test]
async fn two_processes_of_eight_tasks_both_make_progress() {
    let _alone = ONE_CONTENTION_AT_A_TIME.lock().await;
    let name = common::unique("fairness");
    let [a, b] = contend_pair(&name, 5, false);
    let (a, b) = (entries(a).await, entries(b).await);
    let total = a + b;
    println!("entries: {a} and {b}");
    assert!(total > 0);
    for share in [a, b] {
        assert!(
            share * 5 >= total,
            "each process gets at least 20% of the entries: {a} vs {b}"
        );
    }
}

#[tokio::test]
async fn control_without_a_handoff_limit_one_process_starves() {
    let _alone = ONE_CONTENTION_AT_A_TIME.lock().await;
    let name = common::unique("unfair");
    let [a, b] = contend_pair(&name, 3, true);
    let (a, b) = (entries(a).await, entries(b).await);
    println!("entries: {a} and {b}");
    assert!(
        a.min(b) * 5 < a + b,
        "keeping the key in one process starves the other: {a} vs {b}"
    );
}

/// Four tasks taking `key` shared through `source`, in overlapping 100 ms holds
/// started 25 ms apart (the load shape, not synchronisation), until `stop`.
fn overlapping_shared_holders<S>(
    source: &S,
    name: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<()>>
where
    S: LockSource + Clone + Send + 'static,
{
    (0..4u64)
        .map(|i| {
            let (source, name, stop) = (source.clone(), name.to_owned(), stop.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(25 * i)).await;
                while !stop.load(Ordering::SeqCst) {
                    let g = AdvisoryLock::new(name.as_str())
                        .shared()
                        .acquire(&source)
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    drop(g);
                }
            })
        })
        .collect()
}

/// README fairness: other processes' waiters come first once the key goes back to
/// the server. While shared holders of `source` keep the key, a plain session of
/// its own ("another process") asks for it exclusively and gets it within 3 s.
async fn an_exclusive_waiter_elsewhere_gets_its_turn<S>(source: S, label: &str)
where
    S: LockSource + Clone + Send + 'static,
{
    let name = common::unique(label);
    let key = LockKey::from_name(&name);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = overlapping_shared_holders(&source, &name, &stop);
    let other = Foreign::connect().await;
    common::assert_held_by_at_least(&other.client, key, 1, "the shared holders").await;
    other
        .client
        .batch_execute("SET lock_timeout = '3s'")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let LockKey::BigInt(k) = key else {
        unreachable!("a name hashes to a bigint key")
    };
    let got = other
        .client
        .execute("SELECT pg_advisory_lock($1)", &[&k])
        .await;
    stop.store(true, Ordering::SeqCst);
    other
        .client
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        got.is_ok(),
        "exclusive waiter of another session starved for {:?} by 100 ms shared holders: {got:?}",
        started.elapsed()
    );
}

/// Overlapping shared holders in one Locker must not keep the key forever.
#[tokio::test]
async fn locker_shared_holders_do_not_starve_an_exclusive_waiter_elsewhere() {
    an_exclusive_waiter_elsewhere_gets_its_turn(Locker::new(common::pool(6)), "starve-locker")
        .await;
}

/// Same load through a Pool: the server queues shared requests behind the
/// exclusive waiter, so it gets its turn (the control for the Locker's).
#[tokio::test]
async fn pool_shared_holders_do_not_starve_an_exclusive_waiter_either() {
    an_exclusive_waiter_elsewhere_gets_its_turn(common::pool(8), "starve-pool").await;
}

/// A fleet like issue 13's, made denser so that keys are contended inside each
/// process too (as they are in the optimized build, and not in a debug one
/// on a loaded machine, where 20 keys left the control fair): 12 instances of
/// `examples/fleet_worker`, each of 8 tasks taking one key through a Locker of its own (`wait = "3s"`, a 1 ms
/// read-modify-write inside), started together, for 4 s; each instance's entries
/// and the fleet's `wait` timeouts.
async fn fleet(extra: &[&str]) -> (Vec<u64>, u64) {
    const PROCESSES: usize = 12;
    let db = pglock::testdb::shared();
    let table = common::unique("fleet").replace(':', "_");
    let client = common::observer().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{table}\" (k int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO \"{table}\" SELECT k, 0 FROM generate_series(0, 0) AS k;"
        ))
        .await
        .unwrap();
    let binary = common::example_binary("fleet_worker");
    let mut children: Vec<tokio::process::Child> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(&binary)
                .args([db.url(), &table, "--source", "locker", "--barrier"])
                .args(["--seconds", "4", "--tasks", "8", "--keys", "1"])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn examples/fleet_worker")
        })
        .collect();
    let mut outputs = Vec::new();
    for child in &mut children {
        let stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut lines = tokio::io::AsyncBufReadExt::lines(stdout);
        let ready = lines.next_line().await.unwrap();
        assert_eq!(ready.as_deref(), Some("ready"), "an instance did not start");
        outputs.push(lines);
    }
    for child in &mut children {
        let mut stdin = child.stdin.take().expect("piped");
        tokio::io::AsyncWriteExt::write_all(&mut stdin, b"go\n")
            .await
            .unwrap();
    }
    let (mut entries, mut timeouts) = (Vec::new(), 0);
    for (child, mut lines) in children.into_iter().zip(outputs) {
        let done = lines.next_line().await.unwrap().unwrap_or_default();
        let output = child.wait_with_output().await.unwrap();
        assert!(output.status.success(), "an instance failed: {done}");
        let field = |name: &str| -> u64 {
            done.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.parse().ok())
                .unwrap_or_else(|| panic!("unexpected output: {done}"))
        };
        entries.push(field("entries="));
        timeouts += field("timeouts=");
    }
    let sum: i64 = client
        .query_one(&format!("SELECT sum(n)::int8 FROM \"{table}\""), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum as u64, entries.iter().sum::<u64>(), "no update lost");
    (entries, timeouts)
}

#[tokio::test]
async fn every_instance_of_a_fleet_gets_its_share_and_no_wait_times_out() {
    let _alone = ONE_CONTENTION_AT_A_TIME.lock().await;
    let (entries, timeouts) = fleet(&[]).await;
    println!("entries per instance: {entries:?}, timeouts: {timeouts}");
    let busiest = entries.iter().copied().max().unwrap_or(0);
    assert!(busiest > 0);
    assert!(
        entries.iter().all(|&e| e * 2 >= busiest),
        "every instance gets at least half the busiest's entries: {entries:?}"
    );
    assert_eq!(timeouts, 0, "no wait = \"3s\" ran out: {entries:?}");
}

#[tokio::test]
async fn control_a_fleet_whose_lockers_keep_their_keys_starves_some_instances() {
    let _alone = ONE_CONTENTION_AT_A_TIME.lock().await;
    let forever = [
        "--handoff-limit",
        "4294967295",
        "--handoff-window-ms",
        "3600000",
    ];
    let (entries, timeouts) = fleet(&forever).await;
    println!("entries per instance: {entries:?}, timeouts: {timeouts}");
    let busiest = entries.iter().copied().max().unwrap_or(0);
    assert!(
        timeouts > 0 || entries.iter().any(|&e| e * 2 < busiest),
        "keeping keys in the process starves someone: {entries:?}, {timeouts} timeouts"
    );
}
