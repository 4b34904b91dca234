//! A dropped guard's unlock is queued, not awaited. The next acquisition of that key
//! from this process must still never see `Busy` because of it, and a session whose
//! unlock is queued is never lent to another task while a body still uses it.

mod common;

use std::future::Future;
use std::sync::Arc;

use common::{holders, unique, AppError};
use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, LockKey};
use tokio::sync::Notify;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_free_again_as_soon_as_its_guard_is_dropped() {
    let pool = common::pool(8);
    let lock = AdvisoryLock::new(unique("queued-unlock"));
    for round in 0..500 {
        let guard = lock.try_acquire(&pool).await.unwrap();
        drop(guard); // unlock queued, not awaited
        match lock.try_acquire(&pool).await {
            Ok(again) => drop(again),
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

/// Puts a 200 ms statement on the guard's session, sent but not awaited, so the
/// unlock that dropping the guard queues runs only after it.
fn slow_down_session(guard: &pglock::LockGuard) {
    let mut sleep = Box::pin(guard.simple_query("SELECT pg_sleep(0.2)"));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // The first poll sends the query; its answer is not needed.
    assert!(sleep.as_mut().poll(&mut cx).is_pending());
}

/// Deterministically: the unlock is still queued behind a slow statement when the
/// next waiting acquisition comes, and that acquisition queues behind it on the same
/// session. (A try does not: it waits for nothing but its own round trip, and the
/// key is still held while that statement runs; see `tests/time_limits.rs`.)
#[tokio::test]
async fn the_next_taker_queues_behind_our_slow_unlock_instead_of_seeing_busy() {
    let pool = common::pool(4);
    let lock = AdvisoryLock::new(unique("queued-unlock-slow"));
    let guard = lock.try_acquire(&pool).await.unwrap();
    slow_down_session(&guard);
    drop(guard);
    let again = lock
        .acquire(&pool)
        .await
        .expect("granted: it runs after our unlock");
    again.release().await.unwrap();
}

/// The hazard, shown: a second pool knows nothing of the first one's queued unlock,
/// so its try reaches the server first and finds the key still held.
#[tokio::test]
async fn control_another_pool_sees_our_queued_unlock_as_busy() {
    let (first, second) = (common::pool(4), common::pool(4));
    let lock = AdvisoryLock::new(unique("queued-unlock-control"));
    let guard = lock.try_acquire(&first).await.unwrap();
    slow_down_session(&guard);
    drop(guard);
    let err = lock.try_acquire(&second).await.unwrap_err();
    assert!(err.is_busy(), "{err:?}");
}

/// The session with a queued unlock goes to one acquirer only: on that session the
/// key would be granted again to a second taker (session locks are re-entrant).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_key_is_never_granted_twice_to_concurrent_takers() {
    let pool = common::pool(8);
    let lock = AdvisoryLock::new(unique("queued-unlock-twice"));
    for round in 0..300 {
        drop(lock.try_acquire(&pool).await.unwrap());
        let (a, b) = tokio::join!(lock.try_acquire(&pool), lock.try_acquire(&pool));
        assert!(
            !(a.is_ok() && b.is_ok()),
            "round {round}: two holders of one exclusive lock"
        );
        if a.is_err() && b.is_err() {
            let observer = common::observer().await;
            let rows = common::lock_rows(&observer, lock.key()).await;
            panic!("round {round}: the key was free: {a:?} {b:?} {rows:?}");
        }
    }
}

/// Tasks of one process that take the same key, each dropping its guard (so each
/// unlock is queued), on a multi-threaded runtime: how many times a task entered
/// the section while another was inside. A queued unlock lets the next acquisition
/// of its key follow it on the same session; if more than one did, the server
/// would grant the later ones as re-entrant locks of that session, and two tasks
/// would hold an exclusive lock at once.
async fn overlaps_among_tasks(wait: bool) -> (usize, usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let pool = common::pool(16);
    let lock = AdvisoryLock::new(unique("queued-unlock-exclusion"));
    let inside = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (pool, lock) = (pool.clone(), lock.clone());
            let (inside, entered, overlaps) = (inside.clone(), entered.clone(), overlaps.clone());
            tokio::spawn(async move {
                for _ in 0..500 {
                    let taken = if wait {
                        lock.acquire(&pool).await
                    } else {
                        lock.try_acquire(&pool).await
                    };
                    let guard = match taken {
                        Ok(guard) => guard,
                        Err(e) if e.is_busy() && !wait => {
                            tokio::task::yield_now().await;
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    entered.fetch_add(1, Ordering::SeqCst);
                    if inside.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(guard); // unlock queued, not awaited
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (
        entered.load(Ordering::SeqCst),
        overlaps.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_unlock_never_lets_two_tasks_in_with_try_acquire() {
    let (entered, overlaps) = overlaps_among_tasks(false).await;
    assert!(entered > 0, "no task ever got the lock");
    assert_eq!(overlaps, 0, "{overlaps} overlaps in {entered} entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_unlock_never_lets_two_tasks_in_with_acquire() {
    let (entered, overlaps) = overlaps_among_tasks(true).await;
    assert_eq!(entered, 2000, "every wait ends with the lock");
    assert_eq!(overlaps, 0, "{overlaps} overlaps in {entered} entries");
}

/// The turns of the test below: the body has queued its unlock, the other task has
/// tried the key, the body has tried it again.
#[derive(Default)]
struct Turns {
    unlock_queued: Notify,
    other_tried: Notify,
    body_tried: Notify,
}

#[advisory_locked(key = "{outer}")]
async fn outer_lends_its_session(
    pool: &Pool,
    outer: &str,
    name: &str,
    turns: Arc<Turns>,
) -> Result<bool, AppError> {
    let lock = AdvisoryLock::new(name);
    // take and drop the key inside the body: its unlock is queued on the outer session
    drop(lock.try_acquire(pool).await?);
    turns.unlock_queued.notify_one();
    turns.other_tried.notified().await;
    // the other task has tried the key (holding it, if granted); try it again here
    let again = lock.try_acquire(pool).await;
    Ok(again.is_ok())
}

/// Reusing a session with a queued unlock must never hand the session of an
/// enclosing body to another task: there both would hold the same exclusive key.
/// Exactly one of the two tries is granted (not both, and not neither: the key is
/// free once the queued unlock ran, so one of them must get it).
#[tokio::test]
async fn a_queued_unlock_on_an_enclosing_session_is_never_lent_to_another_task() {
    let pool = common::pool(4);
    let observer = common::observer().await;
    let name = unique("lend");
    let turns = Arc::new(Turns::default());
    let other = {
        let (pool, name, turns) = (pool.clone(), name.clone(), turns.clone());
        tokio::spawn(async move {
            turns.unlock_queued.notified().await;
            let guard = AdvisoryLock::new(name.as_str()).try_acquire(&pool).await;
            turns.other_tried.notify_one();
            // hold what it got until the body has tried again
            turns.body_tried.notified().await;
            guard.is_ok()
        })
    };
    let body_got_it = outer_lends_its_session(&pool, &unique("lend-outer"), &name, turns.clone())
        .await
        .unwrap();
    turns.body_tried.notify_one();
    let other_got_it = other.await.unwrap();
    let pids = holders(&observer, LockKey::from_name(&name)).await;
    assert!(
        body_got_it != other_got_it,
        "exclusive {name} must be granted to exactly one of the two tries: body {body_got_it}, \
         other task {other_got_it} (server holders now: {pids:?})"
    );
}
