//! A dropped guard's unlock is queued, not awaited. The next acquisition of that key
//! from this process must still never see `Busy` because of it.

mod common;

use common::unique;
use pglock::AdvisoryLock;

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

/// The hazard, shown: a second pool knows nothing of the first one's queued unlock,
/// so its try can reach the server first and find the key still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_another_pool_can_see_our_queued_unlock_as_busy() {
    let (first, second) = (common::pool(8), common::pool(8));
    let lock = AdvisoryLock::new(unique("queued-unlock-control"));
    let mut busy = 0;
    for _ in 0..500 {
        drop(lock.try_acquire(&first).await.unwrap());
        match lock.try_acquire(&second).await {
            Ok(g) => g.release().await.unwrap(),
            Err(e) if e.is_busy() => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    println!("busy {busy} of 500");
    assert!(busy > 0, "the race exists");
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
