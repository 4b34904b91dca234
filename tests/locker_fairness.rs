//! Handoff inside a process skips the server, but must not starve other processes:
//! two processes of 8 tasks each, contending for one key through a Locker for 5 s,
//! both make progress. A Locker that never gives the key back to the server
//! (no handoff limit, no handoff window) is the control: there one process starves.
//! Overlapping shared holders, through a Locker or a Pool, leave an exclusive waiter
//! of another session its turn.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Foreign;
use pglock::{AdvisoryLock, LockKey, LockSource, Locker};
use tokio::task::JoinHandle;

async fn contend(name: &str, tasks: usize, seconds: u64, unbounded: bool) -> tokio::process::Child {
    tokio::process::Command::new(common::example_binary("locker_contend"))
        .args([
            pglock::testdb::shared().url(),
            name,
            &tasks.to_string(),
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
    let (a, b) = (
        contend(&name, 8, 5, false).await,
        contend(&name, 8, 5, false).await,
    );
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
    let (a, b) = (
        contend(&name, 8, 3, true).await,
        contend(&name, 8, 3, true).await,
    );
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
