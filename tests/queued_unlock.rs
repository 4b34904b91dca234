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
