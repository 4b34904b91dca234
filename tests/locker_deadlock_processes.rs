//! Deadlocks through Lockers across processes: copies of `examples/deadlock_party`
//! each hold one key in an annotated body and wait for the next one's. Exactly one
//! party reports `Deadlock` within `deadlock_timeout` + 1 s, the others complete,
//! and every key is free afterwards; in 20 repetitions, in a three-party ring, and in
//! cycles mixing a Pool lock with Locker locks. With detection off the same cycle
//! waits until its 3 s bound (the control). Keys taken in one global order through
//! two Lockers never report one.
//!
//! One throwaway cluster with `deadlock_timeout` = 200 ms, so the repetitions fit.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{assert_held_by_at_least, assert_released_within_1s, unique, waiter_within};
use pglock::testdb::Cluster;
use pglock::{advisory_locked, Error, LockKey, Locker};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

const DEADLOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// How long a party may take to report anything before the test fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        Cluster::builder()
            .setting("deadlock_timeout", "200ms")
            .start()
            .expect("start a cluster with deadlock_timeout = 200ms")
    })
}

async fn observer() -> tokio_postgres::Client {
    cluster().db().connect().await.expect("observer connection")
}

fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

/// One running copy of `examples/deadlock_party`.
struct Party {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Party {
    /// Starts a party holding `hold` and (once told) waiting for `want`; returns
    /// once it says it holds `hold`.
    async fn start(hold: &str, want: &str, flags: &[&str]) -> Party {
        let mut child = tokio::process::Command::new(common::example_binary("deadlock_party"))
            .args([cluster().db().url(), hold, want])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn examples/deadlock_party");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(TEST_TIMEOUT, lines.next_line()).await;
        let first = first.expect("the party starts in time").unwrap();
        assert_eq!(first.as_deref(), Some("holding"), "party holding {hold}");
        Party { child, lines }
    }

    async fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Its next line, and when it came; fails the test after [`TEST_TIMEOUT`].
    async fn line(&mut self) -> (String, Instant) {
        let line = tokio::time::timeout(TEST_TIMEOUT, self.lines.next_line()).await;
        let line = line.expect("the party reports in time");
        (line.unwrap().expect("a line"), Instant::now())
    }

    /// Its last line, and when it came, once it has ended well.
    async fn outcome(mut self) -> (String, Instant) {
        let last = self.line().await;
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "the party failed: {status}");
        last
    }
}

/// One party per key of `ring`, each holding its key (taken as `flags[i]` says)
/// and waiting for the next one's; returns each party's outcome and how long after
/// the start of the waits it came.
async fn run_ring(ring: &[String], flags: &[&[&str]]) -> Vec<(String, Duration)> {
    let observer = observer().await;
    let mut parties = Vec::new();
    for (i, hold) in ring.iter().enumerate() {
        let want = &ring[(i + 1) % ring.len()];
        parties.push(Party::start(hold, want, flags[i]).await);
    }
    for name in ring {
        assert_held_by_at_least(&observer, key_of(name), 1, "each party holds its key").await;
    }
    let started = Instant::now();
    for party in &mut parties {
        party.go().await;
    }
    let seen_waiting = async {
        for name in ring {
            let waiter = waiter_within(&observer, key_of(name), Duration::from_secs(5)).await;
            assert!(waiter.is_some(), "somebody waits for {name} in pg_locks");
        }
    };
    let outcomes = async {
        let mut outcomes = Vec::new();
        for party in parties {
            let (line, at) = party.outcome().await;
            outcomes.push((line, at - started));
        }
        outcomes
    };
    let ((), outcomes) = tokio::join!(seen_waiting, outcomes);
    for name in ring {
        assert_released_within_1s(&observer, key_of(name), "after the cycle").await;
    }
    outcomes
}

/// Exactly one party reported `Deadlock`, within `deadlock_timeout` + 1 s, naming
/// the key it waited for; the others completed. Returns the victim's index.
fn assert_one_victim(ring: &[String], outcomes: &[(String, Duration)]) -> usize {
    let victims: Vec<usize> = (0..outcomes.len())
        .filter(|&i| outcomes[i].0.starts_with("outcome deadlock"))
        .collect();
    assert_eq!(victims.len(), 1, "exactly one party gives up: {outcomes:?}");
    let at = victims[0];
    let (line, after) = &outcomes[at];
    assert!(
        *after <= DEADLOCK_TIMEOUT + Duration::from_secs(1),
        "reported {after:?} after the waits began: {line}"
    );
    assert!(line.contains(&ring[(at + 1) % ring.len()]), "{line}");
    for (i, (line, _)) in outcomes.iter().enumerate() {
        if i != at {
            assert_eq!(line, "outcome done", "the others complete: {outcomes:?}");
        }
    }
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_holding_each_others_key_one_reports_deadlock_20_times() {
    for round in 0..20 {
        let ring = [
            unique(&format!("xdl2-{round}-a")),
            unique(&format!("xdl2-{round}-b")),
        ];
        let outcomes = run_ring(&ring, &[&[], &[]]).await;
        assert_one_victim(&ring, &outcomes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_process_ring_fails_one_wait_and_the_others_complete() {
    let ring = [unique("xdl3-a"), unique("xdl3-b"), unique("xdl3-c")];
    let outcomes = run_ring(&ring, &[&[], &[], &[]]).await;
    assert_one_victim(&ring, &outcomes);
}

/// A key held through a Pool (its session holds it) by a body that waits through
/// a Locker: the Locker's waiter announces the pool session's hold too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_hold_waiting_through_a_locker_is_part_of_the_cycle() {
    let ring = [unique("xmix1-a"), unique("xmix1-b")];
    let outcomes = run_ring(&ring, &[&["--hold-through", "pool"], &[]]).await;
    assert_one_victim(&ring, &outcomes);
}

/// A body that holds and waits through a Pool waits on the session that holds its
/// key: the server shows that session waiting and holding, so the Locker's side
/// sees the cycle, and, as the only Locker waiter in it, is the one that gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_session_holding_and_waiting_is_part_of_the_cycle() {
    let ring = [unique("xmix2-a"), unique("xmix2-b")];
    let pool_side: &[&str] = &["--hold-through", "pool", "--wait-through", "pool"];
    let outcomes = run_ring(&ring, &[pool_side, &[]]).await;
    assert_eq!(assert_one_victim(&ring, &outcomes), 1, "{outcomes:?}");
}

/// The documented limit: a key held through a Locker by a body that then waits
/// through a Pool is announced by nobody (only a Locker's waits announce), so that
/// cycle is not found; it lasts until the bounded waits end it with `Timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locker_hold_waiting_through_a_pool_is_not_seen_and_ends_at_the_bound() {
    let ring = [unique("xmix3-a"), unique("xmix3-b")];
    let outcomes = run_ring(
        &ring,
        &[&["--wait-through", "pool", "--bounded"], &["--bounded"]],
    )
    .await;
    assert_hung_until_the_bound(&outcomes);
}

/// The control: with detection off in both processes the same cycle waits until
/// the 3 s bound, so the tests above pass because of the detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_detection_off_the_two_processes_wait_until_their_bound() {
    let ring = [unique("xdl-off-a"), unique("xdl-off-b")];
    let off: &[&str] = &["--no-detection", "--bounded"];
    let outcomes = run_ring(&ring, &[off, off]).await;
    assert_hung_until_the_bound(&outcomes);
}

/// Nobody reported a deadlock and nothing ended before the 3 s bound: the first
/// party to reach it times out, and its body letting go may still grant the other
/// party its key just before that one's own bound (then it completes).
fn assert_hung_until_the_bound(outcomes: &[(String, Duration)]) {
    assert!(
        outcomes
            .iter()
            .any(|(line, _)| line.starts_with("outcome timeout")),
        "{outcomes:?}"
    );
    for (line, after) in outcomes {
        let timeout_or_done = line.starts_with("outcome timeout") || line == "outcome done";
        assert!(timeout_or_done, "{outcomes:?}");
        assert!(*after >= Duration::from_secs(3), "{outcomes:?}");
    }
}

/// The same bounded waits with detection on: one `Deadlock` long before the bound,
/// which shows the control differs from this only by the detector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_detection_on_bounded_waits_report_deadlock_before_their_bound() {
    let ring = [unique("xdl-on-a"), unique("xdl-on-b")];
    let on: &[&str] = &["--bounded"];
    let outcomes = run_ring(&ring, &[on, on]).await;
    assert_one_victim(&ring, &outcomes);
}

#[advisory_locked(key = "{hold}", wait)]
async fn hold_then_wait(
    locker: &Locker,
    hold: &str,
    want: &str,
    all_hold: &tokio::sync::Barrier,
) -> Result<(), common::AppError> {
    all_hold.wait().await;
    take(locker, want).await
}

#[advisory_locked(key = "{name}", wait)]
async fn take(locker: &Locker, name: &str) -> Result<(), common::AppError> {
    Ok(())
}

/// Two Lockers of this process meet only in the server, as two processes do: the
/// victim's server wait is cancelled while its process lives on (no waiter is left
/// behind), the other completes, both keys end free, and a warning names the cycle:
/// both keys and where each was waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lockers_of_one_process_end_their_cycle_and_leave_no_waiter() {
    let capture = common::capture::Capture::global();
    let pool = cluster().db().pool(8);
    let observer = observer().await;
    let (a, b) = (unique("xdl-lockers-a"), unique("xdl-lockers-b"));
    let all_hold = Arc::new(tokio::sync::Barrier::new(3));
    let party = |locker: Locker, hold: String, want: String| {
        let all_hold = all_hold.clone();
        tokio::spawn(async move { hold_then_wait(&locker, &hold, &want, &all_hold).await })
    };
    let first = party(Locker::new(pool.clone()), a.clone(), b.clone());
    let second = party(Locker::new(pool.clone()), b.clone(), a.clone());
    all_hold.wait().await;
    for name in [&a, &b] {
        common::assert_waiting(&observer, key_of(name), "each party waits in the server").await;
    }
    let outcomes = tokio::time::timeout(TEST_TIMEOUT, async {
        (first.await.unwrap(), second.await.unwrap())
    })
    .await
    .expect("the cycle ends");
    let (victim, waited_for) = match outcomes {
        (Err(e), Ok(())) => (e, &b),
        (Ok(()), Err(e)) => (e, &a),
        other => panic!("exactly one Deadlock: {other:?}"),
    };
    assert!(
        matches!(victim.lock(), Error::Deadlock { .. }),
        "{victim:?}"
    );
    assert_eq!(victim.lock().lock().key(), key_of(waited_for));
    for name in [&a, &b] {
        assert_released_within_1s(&observer, key_of(name), "after the cycle").await;
    }
    let warned: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN)
        .filter(|e| {
            e.field("cycle")
                .is_some_and(|c| c.contains(&key_of(&a).to_string()))
        })
        .collect();
    assert_eq!(warned.len(), 1, "one warning for the cycle: {warned:?}");
    let cycle = warned[0].field("cycle").unwrap();
    for needle in [
        key_of(&b).to_string(),
        "take".to_owned(),
        file!().to_owned(),
    ] {
        assert!(cycle.contains(&needle), "{needle} in {cycle}");
    }
}

/// A party holding a key and waiting *in its process*, behind another task of that
/// process that waits in the server for the key (holding nothing), closes a cycle
/// that no announcing waiter can see: the party itself finds it and gives up; the
/// other party and the bystander complete.
#[tokio::test]
async fn a_wait_queued_in_its_process_behind_a_server_wait_is_part_of_the_cycle() {
    let observer = observer().await;
    let (a, b) = (unique("xbehind-a"), unique("xbehind-b"));
    let mut behind = Party::start(&a, &b, &["--behind"]).await;
    let other = Party::start(&b, &a, &[]).await;
    for name in [&a, &b] {
        assert_held_by_at_least(&observer, key_of(name), 1, "each party holds its key").await;
    }
    let started = Instant::now();
    behind.go().await;
    let bystander = waiter_within(&observer, key_of(&b), Duration::from_secs(5)).await;
    assert!(
        bystander.is_some(),
        "the bystander waits in the server for b"
    );
    let mut other = other;
    other.go().await;
    let waiter = waiter_within(&observer, key_of(&a), Duration::from_secs(5)).await;
    assert!(
        waiter.is_some(),
        "the other party waits in the server for a"
    );

    let (line, at) = behind.line().await;
    assert!(line.starts_with("outcome deadlock"), "{line}");
    assert!(line.contains(&b), "{line}");
    let after = at - started;
    assert!(
        after <= DEADLOCK_TIMEOUT + Duration::from_secs(1),
        "reported {after:?} after the waits began"
    );
    assert_eq!(other.outcome().await.0, "outcome done");
    assert_eq!(behind.outcome().await.0, "bystander outcome done");
    for name in [&a, &b] {
        assert_released_within_1s(&observer, key_of(name), "after the cycle").await;
    }
}

const KEYS: usize = 10;
const TASKS: usize = 64;
const RUN_FOR: Duration = Duration::from_secs(10);

/// Three keys, in the global order.
struct Three {
    a: String,
    b: String,
    c: String,
}

#[advisory_locked(key = "{names.a}", wait)]
async fn first(locker: &Locker, names: &Three) -> Result<(), common::AppError> {
    second(locker, names).await
}

#[advisory_locked(key = "{names.b}", wait)]
async fn second(locker: &Locker, names: &Three) -> Result<(), common::AppError> {
    third(locker, names).await
}

#[advisory_locked(key = "{names.c}", wait)]
async fn third(locker: &Locker, names: &Three) -> Result<(), common::AppError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

/// Three of the keys, in the global order, chosen by `seed`.
fn ordered_three(keys: &[String], seed: usize) -> Three {
    let a = seed % (KEYS - 2);
    let b = a + 1 + (seed / 7) % (KEYS - a - 2);
    let c = b + 1 + (seed / 13) % (KEYS - b - 1);
    Three {
        a: keys[a].clone(),
        b: keys[b].clone(),
        c: keys[c].clone(),
    }
}

/// No false positive: 64 tasks on two Lockers (so they meet in the server, where
/// waits announce and check) take 3 of 10 keys in one global order for 10 s; waits
/// last longer than `deadlock_timeout` (checked in `pg_locks`), and none reports a
/// deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_one_global_order_across_two_lockers_never_report_a_deadlock() {
    let pool = cluster().db().pool(40);
    let lockers = [Locker::new(pool.clone()), Locker::new(pool.clone())];
    let keys: Arc<Vec<String>> =
        Arc::new((0..KEYS).map(|k| unique(&format!("xorder-{k}"))).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + RUN_FOR;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (locker, keys, done) = (lockers[t % 2].clone(), keys.clone(), done.clone());
            tokio::spawn(async move {
                let mut seed = t * 7919;
                while Instant::now() < until {
                    seed = seed.wrapping_mul(31).wrapping_add(17) % 1_000_003;
                    first(&locker, &ordered_three(&keys, seed)).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), common::AppError>(())
            })
        })
        .collect();
    // The premise: some wait in the server outlasts deadlock_timeout, so checks run.
    let observer = observer().await;
    let long_wait = tokio::time::timeout(RUN_FOR, async {
        loop {
            let row = observer
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                       AND waitstart < now() - interval '300 ms'",
                    &[],
                )
                .await
                .unwrap();
            if row.get::<_, i64>(0) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        long_wait.is_ok(),
        "no server wait outlasted deadlock_timeout"
    );
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => {}
            Err(common::AppError::Lock(e @ Error::Deadlock { .. })) => {
                panic!("a false deadlock: {e}")
            }
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert!(done.load(Ordering::Relaxed) > 0);
    for name in keys.iter() {
        assert_released_within_1s(&observer, key_of(name), "after the run").await;
    }
}
