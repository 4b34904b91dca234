//! Deadlocks among the tasks of one process that lock through one Locker: the wait
//! that closes a cycle gets `Error::Deadlock` at once and the others proceed; with
//! detection off the same cycle hangs (the control); keys taken in one global order
//! never report one, nor do side-by-side bodies of one task.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::capture::Capture;
use common::{assert_held_by_at_least, assert_released_within_1s, unique, AppError};
use pglock::{advisory_locked, Error, LockKey, Locker};
use tokio::sync::{Barrier, Notify};

/// How long the test waits for a cycle to end before it fails (or, in the control,
/// concludes that the cycle hangs).
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

/// Holds `first`; once every party holds its own key (and the test has seen them
/// held in `pg_locks`), waits without bound for `second`.
#[advisory_locked(key = "{first}", wait)]
async fn hold_then_wait(
    locker: &Locker,
    first: &str,
    second: &str,
    all_hold: &Barrier,
    seen: &Barrier,
) -> Result<(), AppError> {
    all_hold.wait().await;
    seen.wait().await;
    take(locker, second).await
}

#[advisory_locked(key = "{name}", wait)]
async fn take(locker: &Locker, name: &str) -> Result<(), AppError> {
    Ok(())
}

/// Starts one task per key of `ring`, each holding its key and waiting for the
/// next one's; returns their handles once `pg_locks` shows every key held.
async fn start_ring(
    locker: &Locker,
    observer: &tokio_postgres::Client,
    ring: &[String],
) -> Vec<tokio::task::JoinHandle<Result<(), AppError>>> {
    let all_hold = Arc::new(Barrier::new(ring.len() + 1));
    let seen = Arc::new(Barrier::new(ring.len() + 1));
    let tasks: Vec<_> = (0..ring.len())
        .map(|i| {
            let (first, second) = (ring[i].clone(), ring[(i + 1) % ring.len()].clone());
            let (locker, all_hold, seen) = (locker.clone(), all_hold.clone(), seen.clone());
            tokio::spawn(
                async move { hold_then_wait(&locker, &first, &second, &all_hold, &seen).await },
            )
        })
        .collect();
    all_hold.wait().await;
    for name in ring {
        assert_held_by_at_least(observer, key_of(name), 1, "each party holds its key").await;
    }
    seen.wait().await;
    tasks
}

/// Waits for every task of the ring, failing the test after [`TEST_TIMEOUT`].
async fn outcomes(
    tasks: Vec<tokio::task::JoinHandle<Result<(), AppError>>>,
) -> Vec<Result<(), AppError>> {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        outcomes
    })
    .await
    .expect("the Locker ends the cycle: nothing hangs")
}

/// Exactly one party failed, with `Deadlock` for the key it waited for and the
/// whole ring in the error; the others completed.
fn assert_one_victim<'a>(ring: &'a [String], outcomes: &[Result<(), AppError>]) -> &'a str {
    let victims: Vec<usize> = (0..ring.len()).filter(|i| outcomes[*i].is_err()).collect();
    assert_eq!(victims.len(), 1, "exactly one party fails: {outcomes:?}");
    let at = victims[0];
    let waited_for = &ring[(at + 1) % ring.len()];
    match &outcomes[at] {
        Err(AppError::Lock(e @ Error::Deadlock { cycle, .. })) => {
            assert_eq!(e.lock().key(), key_of(waited_for), "{e}");
            let mut in_cycle: Vec<LockKey> = cycle.iter().map(|id| id.key()).collect();
            let mut expected: Vec<LockKey> = ring.iter().map(|n| key_of(n)).collect();
            in_cycle.sort_by_key(|k| k.to_string());
            expected.sort_by_key(|k| k.to_string());
            assert_eq!(
                in_cycle, expected,
                "the error names every key of the cycle: {e}"
            );
            for name in ring {
                assert!(e.to_string().contains(name.as_str()), "{e}");
            }
        }
        other => panic!("expected Deadlock, got {other:?}"),
    }
    waited_for
}

async fn assert_all_free(observer: &tokio_postgres::Client, ring: &[String]) {
    for name in ring {
        assert_released_within_1s(observer, key_of(name), "after the cycle").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_waiting_for_each_others_key_one_gets_deadlock_the_other_completes() {
    let capture = Capture::global();
    let locker = Locker::new(common::pool(4));
    let observer = common::observer().await;
    let ring = vec![unique("dl2-a"), unique("dl2-b")];
    let tasks = start_ring(&locker, &observer, &ring).await;
    let outcomes = outcomes(tasks).await;
    let waited_for = assert_one_victim(&ring, &outcomes);
    assert_all_free(&observer, &ring).await;

    // A warning names the cycle: every key, and where each was waited for and held.
    let warned: Vec<_> = capture
        .about(waited_for)
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN && e.field("cycle").is_some())
        .collect();
    assert_eq!(warned.len(), 1, "one warning for the cycle: {warned:?}");
    let cycle = warned[0].field("cycle").unwrap();
    for name in &ring {
        assert!(cycle.contains(name.as_str()), "{cycle}");
    }
    for site in ["hold_then_wait", "take", file!()] {
        assert!(cycle.contains(site), "the call sites are named: {cycle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_task_cycle_fails_one_wait_and_the_other_two_complete() {
    let locker = Locker::new(common::pool(4));
    let observer = common::observer().await;
    let ring = vec![unique("dl3-a"), unique("dl3-b"), unique("dl3-c")];
    let tasks = start_ring(&locker, &observer, &ring).await;
    let outcomes = outcomes(tasks).await;
    assert_one_victim(&ring, &outcomes);
    assert_all_free(&observer, &ring).await;
}

/// The control: without detection the same cycle waits until the test gives up,
/// so the test above passes because of the detector, not by luck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_detection_off_the_same_cycle_hangs_until_the_test_timeout() {
    let locker = Locker::builder(common::pool(4))
        .deadlock_detection(false)
        .build();
    let observer = common::observer().await;
    let ring = vec![unique("dl-off-a"), unique("dl-off-b")];
    let tasks = start_ring(&locker, &observer, &ring).await;
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let waited = tokio::time::timeout(TEST_TIMEOUT, async {
        for task in tasks {
            let _ = task.await;
        }
    })
    .await;
    assert!(waited.is_err(), "without detection the cycle never ends");
    for name in &ring {
        assert_held_by_at_least(&observer, key_of(name), 1, "still held while hung").await;
    }
    // Dropping the stuck tasks lets go of everything they held or waited for.
    aborts.iter().for_each(|a| a.abort());
    assert_all_free(&observer, &ring).await;
}

/// Two bodies side by side in one task (`join!`) are two parties, not one: the first
/// waits for the second's key while holding its own, and the second ends without
/// waiting. (Taking the task as the party would see it wait for itself.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_side_by_side_in_one_task_wait_for_each_other_without_a_deadlock() {
    let locker = Locker::new(common::pool(4));
    let observer = common::observer().await;
    let (a, b) = (unique("dl-join-a"), unique("dl-join-b"));
    let b_held = Barrier::new(2);
    let queued = Notify::new();
    let (first, second) = tokio::time::timeout(TEST_TIMEOUT, async {
        tokio::join!(
            holds_a_then_waits_for_b(&locker, &a, &b, &b_held, &queued),
            holds_b_until_queued_for(&locker, &b, &a, &b_held, &queued, &observer),
        )
    })
    .await
    .expect("no cycle: both bodies end");
    first.unwrap();
    second.unwrap();
    assert_all_free(&observer, &[a, b]).await;
}

#[advisory_locked(key = "{a}", wait)]
async fn holds_a_then_waits_for_b(
    locker: &Locker,
    a: &str,
    b: &str,
    b_held: &Barrier,
    queued: &Notify,
) -> Result<(), AppError> {
    b_held.wait().await;
    signal_when_pending(take(locker, b), queued).await
}

/// Runs `acquisition`, telling `queued` once it first waits: a Locker queues a
/// request before its first wait, so from then on it waits in the Locker's queue
/// (which the server cannot show).
async fn signal_when_pending<F: std::future::Future>(acquisition: F, queued: &Notify) -> F::Output {
    let mut acquisition = std::pin::pin!(acquisition);
    let mut told = false;
    std::future::poll_fn(|cx| {
        let polled = acquisition.as_mut().poll(cx);
        if polled.is_pending() && !told {
            told = true;
            queued.notify_one();
        }
        polled
    })
    .await
}

/// Holds `b` until the other body, holding `a`, waits in the Locker's queue for `b`.
#[advisory_locked(key = "{b}", wait)]
async fn holds_b_until_queued_for(
    locker: &Locker,
    b: &str,
    a: &str,
    b_held: &Barrier,
    queued: &Notify,
    observer: &tokio_postgres::Client,
) -> Result<(), AppError> {
    b_held.wait().await;
    assert_held_by_at_least(observer, key_of(a), 1, "the other body holds its key").await;
    queued.notified().await;
    Ok(())
}

/// Holds `name`, then takes the keys of `rest` nested inside, one body per key.
#[advisory_locked(key = "{name}", wait)]
async fn in_order(
    locker: &Locker,
    name: &str,
    rest: &[String],
    done: &AtomicUsize,
) -> Result<(), AppError> {
    tokio::task::yield_now().await;
    if let Some((next, rest)) = rest.split_first() {
        Box::pin(in_order(locker, next, rest, done)).await?;
    }
    done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// 64 tasks taking 2 or 3 of 10 keys at a time, always in one global order: no cycle
/// can form, so no wait may be reported as a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_taking_ten_keys_in_one_global_order_report_no_deadlock() {
    let locker = Locker::new(common::pool(8));
    let observer = common::observer().await;
    let names: Arc<Vec<String>> =
        Arc::new((0..10).map(|i| unique(&format!("dl-order-{i}"))).collect());
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let (locker, names, done) = (locker.clone(), names.clone(), done.clone());
            tokio::spawn(async move {
                let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                while Instant::now() < until {
                    let picked = ascending_pick(&names, &mut seed);
                    in_order(&locker, &picked[0], &picked[1..], &done).await?;
                }
                Ok::<(), AppError>(())
            })
        })
        .collect();
    for task in tasks {
        let outcome = tokio::time::timeout(TEST_TIMEOUT, task)
            .await
            .expect("keys in one order never hang")
            .unwrap();
        outcome.expect("no deadlock, nor any other error, in one global order");
    }
    assert!(
        done.load(Ordering::Relaxed) > 64,
        "the tasks took their keys"
    );
    assert_all_free(&observer, &names).await;
}

/// Two or three distinct keys of `names`, in ascending index order.
fn ascending_pick(names: &[String], seed: &mut u64) -> Vec<String> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % names.len() as u64) as usize
    };
    let count = 2 + next() % 2;
    let mut picked: Vec<usize> = Vec::new();
    while picked.len() < count {
        let i = next();
        if !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked.sort_unstable();
    picked.into_iter().map(|i| names[i].clone()).collect()
}
