//! A pause of ours is not a loss of theirs: a `current_thread` runtime blocked for
//! twice a Locker's keepalive bound (a blocking call; a VM or GC pause does the
//! same) never makes a guard report a lock the server still holds. The control: a
//! backend that really stops answering (`SIGSTOP`) is still declared lost within
//! the bound, and its lock ends on the server once it can run again. Each test
//! disturbs a throwaway cluster of its own.

mod common;

use common::backend::signal;

use std::time::Duration;

use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, LockKey, Locker};

const KEEPALIVE: Duration = Duration::from_secs(1);
const STALL: Duration = Duration::from_secs(2);
/// Stalls per test, each starting at another phase of the keepalive's cycle.
const ROUNDS: u64 = 6;

fn locker(cluster: &Cluster) -> Locker {
    Locker::builder(cluster.db().pool(4))
        .sessions(1)
        .keepalive(KEEPALIVE)
        .build()
}

/// Blocks the runtime's only thread for [`STALL`]: in one piece on even rounds; on
/// odd ones in pieces longer than half the keepalive bound, letting the other tasks
/// have one turn between them (a CPU-bound task that yields now and then), so the
/// watcher wakes with a ping out and its reply unread in the socket.
async fn stall(round: u64) {
    if round.is_multiple_of(2) {
        std::thread::sleep(STALL);
        return;
    }
    let piece = KEEPALIVE * 7 / 10;
    let mut left = STALL;
    while !left.is_zero() {
        let now = piece.min(left);
        std::thread::sleep(now);
        left -= now;
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_runtime_never_takes_a_held_lock_for_lost() {
    let cluster = Cluster::start().unwrap();
    let observer = cluster.db().connect().await.unwrap();
    let locker = locker(&cluster);
    let key = LockKey::BigInt(7_001);
    let guard = AdvisoryLock::new(key).try_acquire(&locker).await.unwrap();
    let holder = common::assert_held_by_at_least(&observer, key, 1, "the Locker").await;
    for round in 0..ROUNDS {
        // A different phase each round, so the stall starts at points spread over
        // the keepalive's cycle, with a ping in flight or not.
        tokio::time::sleep(KEEPALIVE.mul_f64(round as f64 / ROUNDS as f64)).await;
        tokio::spawn(stall(round)).await.unwrap();
        // Two keepalive bounds of running time after the stall, for a wrong
        // verdict to show.
        let lost = tokio::time::timeout(2 * KEEPALIVE, guard.lost()).await;
        assert_eq!(
            common::holders(&observer, key).await,
            holder,
            "round {round}: the server still holds it"
        );
        assert!(
            lost.is_err(),
            "round {round}: a stall of ours was taken for a loss"
        );
        assert!(!guard.is_lost(), "round {round}");
    }
    guard.release().await.unwrap();
    common::assert_released_within_1s(&observer, key, "release after the stalls").await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_stopped_backend_is_still_lost_and_its_lock_ends() {
    let cluster = Cluster::start().unwrap();
    let observer = cluster.db().connect().await.unwrap();
    let locker = locker(&cluster);
    let key = LockKey::BigInt(7_002);
    let guard = AdvisoryLock::new(key).try_acquire(&locker).await.unwrap();
    let pid = common::assert_held_by_at_least(&observer, key, 1, "the Locker").await[0];
    signal(pid, "STOP");
    let noticed = tokio::time::timeout(KEEPALIVE + Duration::from_secs(1), guard.lost()).await;
    signal(pid, "CONT");
    noticed.expect("a stopped backend is lost within the keepalive bound");
    assert!(guard.is_lost());
    // The guard is still alive, yet the server must not keep the lock for it: a
    // session declared lost is closed.
    let left = common::gone_within(&observer, key, common::pg_locks::PATIENCE).await;
    assert!(
        left.is_empty(),
        "a lost session still holds the lock: {left:?}"
    );
    assert!(guard.release().await.unwrap_err().is_lost());
}
