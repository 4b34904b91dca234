//! The Locker's fused rows (an unlock and the try of its key
//! right after it, sent in one batch row as a relock), against the live server:
//! fairness to another process's readers and writers, and the lock session's
//! backend cancelled while tasks give their keys back and take them again at once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::lock_table::{self, advisory_held_becomes};
use common::{assert_released_within_1s, assert_waiting, holders, lock_rows, unique};
use pglock::{AdvisoryLock, LockKey, Locker};

fn bigint(lock: &AdvisoryLock) -> i64 {
    match lock.key() {
        LockKey::BigInt(k) => k,
        LockKey::Pair(..) => unreachable!("named locks are bigint keys"),
    }
}

/// A reader of ours gives a shared key back and takes it again at once (a fused
/// shared relock row), while another process's writer waits for the key behind
/// another process's reader. The unlock grants the writer nothing (a reader is
/// still in), and the try must not jump the writer waiting in the server's queue:
/// it is refused, as a try after the unlock alone is.
#[tokio::test]
async fn a_shared_key_retaken_at_once_does_not_jump_a_writer_of_another_process() {
    let observer = common::observer().await;
    let locker = Locker::builder(common::pool(2)).sessions(1).build();
    let lock = AdvisoryLock::new(unique("review-fuse:shared-retaken")).shared();
    let key = bigint(&lock);
    let ours = lock.try_acquire(&locker).await.unwrap();
    let [our_pid] = holders(&observer, lock.key()).await[..] else {
        panic!("our lock session alone holds the key");
    };
    let reader = common::observer().await;
    reader
        .execute("SELECT pg_advisory_lock_shared($1)", &[&key])
        .await
        .unwrap();
    let writer = Arc::new(common::observer().await);
    let writing = tokio::spawn({
        let writer = writer.clone();
        async move { writer.execute("SELECT pg_advisory_lock($1)", &[&key]).await }
    });
    let waiting = assert_waiting(&observer, lock.key(), "the other process's writer").await;

    drop(ours);
    let again = lock.try_acquire(&locker).await;
    assert!(
        matches!(again, Err(pglock::Error::Busy { .. })),
        "a reader arriving behind a waiting writer is refused: {again:?}"
    );
    let rows = lock_rows(&observer, lock.key()).await;
    assert!(
        rows.iter().all(|row| row.pid != our_pid),
        "our lock session neither holds nor waits: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|row| row.pid == waiting.pid && !row.granted),
        "the writer still waits behind the other reader: {rows:?}"
    );
    reader
        .execute("SELECT pg_advisory_unlock_shared($1)", &[&key])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), writing)
        .await
        .expect("the writer gets the key")
        .unwrap()
        .unwrap();
    assert_eq!(holders(&observer, lock.key()).await, [waiting.pid]);
    writer
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    assert_released_within_1s(&observer, lock.key(), "after the writer").await;
}

/// What one retaking task saw.
#[derive(Default)]
struct Seen {
    granted: usize,
    failed: usize,
}

/// Sixteen tasks on one lock session, each giving its key back and taking it again
/// at once (fused rows, many in each batch), while the lock session's backend is
/// cancelled again and again (`pg_cancel_backend`; a cancel that reaches a batch in
/// flight leaves its rows in doubt). A task told it holds its key (its guard not
/// lost) must hold it in the server; at the end every key is free, and no key is
/// in use nor counted on a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retaking_tasks_under_cancels_never_believe_a_key_the_server_does_not_show_held() {
    tasks_under_cancels(true).await;
}

/// The control: the same tasks, each alternating between two keys (it gives one
/// back and takes the other), so that no unlock and try of one key meet in a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_tasks_under_cancels_never_believe_a_key_the_server_does_not_show_held() {
    tasks_under_cancels(false).await;
}

async fn tasks_under_cancels(retake: bool) {
    let observer = common::observer().await;
    let locker = Locker::builder(common::pool(8)).sessions(1).build();
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    let locks: Vec<_> = (0..32)
        .map(|n| AdvisoryLock::new(unique(&format!("review-fuse:cancelled:{retake}:{n}"))))
        .collect();
    let mut tasks = Vec::new();
    for pair in locks.chunks(2) {
        let pair = pair.to_vec();
        let (locker, stop, violations) = (locker.clone(), stop.clone(), violations.clone());
        tasks.push(tokio::spawn(async move {
            let judge = common::observer().await;
            let mut seen = Seen::default();
            let mut guard = None;
            let mut turn = 0;
            while !stop.load(Ordering::SeqCst) {
                turn += 1;
                let lock = &pair[if retake { 0 } else { turn % 2 }];
                drop(guard.take());
                match lock.try_acquire(&locker).await {
                    Ok(held) => {
                        seen.granted += 1;
                        if holders(&judge, lock.key()).await.is_empty() && !held.is_lost() {
                            violations.fetch_add(1, Ordering::SeqCst);
                        }
                        guard = Some(held);
                    }
                    Err(_) => seen.failed += 1,
                }
            }
            drop(guard);
            seen
        }));
    }
    let canceller = {
        let (stop, keys) = (stop.clone(), locks.iter().map(bigint).collect::<Vec<_>>());
        tokio::spawn(async move {
            let client = common::observer().await;
            let mut hits = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let cancelled = client
                    .query(
                        "SELECT pg_cancel_backend(pid) FROM (SELECT DISTINCT pid FROM pg_locks \
                         WHERE locktype = 'advisory' AND granted \
                         AND objsubid = 1 AND ((classid::int8 << 32) | objid::int8) = ANY($1)) AS ours",
                        &[&keys],
                    )
                    .await
                    .unwrap();
                hits += cancelled.len() as u64;
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            hits
        })
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = Seen::default();
    for task in tasks {
        let seen = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("every caller gets an answer")
            .unwrap();
        total.granted += seen.granted;
        total.failed += seen.failed;
    }
    let cancels = canceller.await.unwrap();
    println!(
        "granted {}, failed {}, cancels sent {cancels}",
        total.granted, total.failed
    );
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a guard not lost whose key the server showed held by nobody"
    );
    assert!(
        total.granted > 0 && cancels > 0,
        "the premise: retakes under cancels"
    );
    for lock in &locks {
        assert_released_within_1s(&observer, lock.key(), "at the end").await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while locker.keys_in_use() != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(locker.keys_in_use(), 0, "no key left in use");
    assert!(
        locker.locks_per_session().iter().all(|&n| n == 0),
        "no lock counted on a slot: {:?}",
        locker.locks_per_session()
    );
}

/// A key given back and taken again at once (a fused row, first in its batch)
/// while another process waits for it in the server's queue, in a batch that fills
/// the lock table and fails: read back request by request, the unlock is done once
/// (the other process gets the key), the try is not granted, and the key has exactly
/// one holder, the other process; every other caller holds exactly what it is told.
#[tokio::test]
async fn a_fused_row_in_a_failed_batch_gives_the_key_to_the_waiter_of_another_process() {
    let cluster = lock_table::small_cluster();
    let locker = Locker::builder(cluster.db().pool(2)).sessions(1).build();
    let observer = cluster.db().connect().await.unwrap();
    let held = lock_table::fill_all_but_a_few(&locker, &observer).await;
    let lock = AdvisoryLock::new(LockKey::Pair(7, 7));
    let guard = lock.try_acquire(&locker).await.unwrap();
    let [ours] = holders(&observer, lock.key()).await[..] else {
        panic!("our lock session holds the key");
    };
    let elsewhere = Arc::new(cluster.db().connect().await.unwrap());
    let waiting = tokio::spawn({
        let elsewhere = elsewhere.clone();
        async move {
            elsewhere
                .query_one("SELECT pg_backend_pid() FROM pg_advisory_lock(7, 7)", &[])
                .await
                .map(|row| row.get::<_, i32>(0))
        }
    });
    let waiter = assert_waiting(&observer, lock.key(), "the other process").await;

    // Queued before the batch task runs (a current-thread runtime): the unlock,
    // the try of the same key, then a burst that overflows the lock table.
    drop(guard);
    let locker = &locker;
    let again = lock.try_acquire(locker);
    let burst = (0..200).map(|k| async move {
        AdvisoryLock::new(LockKey::Pair(2, k))
            .try_acquire(locker)
            .await
    });
    let (again, burst) = tokio::join!(again, futures_util::future::join_all(burst));
    let log = std::fs::read_to_string(cluster.data_dir().join("../server.log")).unwrap();
    assert!(
        log.contains("$1 = '{9,1,1"),
        "the fused row went first, ahead of the burst, in one batch"
    );
    assert!(log.contains("out of shared memory"), "the batch failed");
    // Not granted: the other process waited first. Read back alone, the try runs
    // while the grants the failed batch made for the burst behind it still fill
    // the lock table, so the server may refuse it as full rather than busy.
    assert!(
        matches!(
            again,
            Err(pglock::Error::Busy { .. } | pglock::Error::LockTableFull { .. })
        ),
        "the other process waited first: {again:?}"
    );
    println!("the retake, read back: {again:?}");
    let elsewhere_pid = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the other process gets the key")
        .unwrap()
        .unwrap();
    assert_eq!(elsewhere_pid, waiter.pid);
    let granted: Vec<_> = burst.into_iter().filter_map(Result::ok).collect();
    assert!(granted.len() < 200, "the burst filled the table");
    // Room to read pg_locks, which a full lock table refuses.
    drop(granted);
    advisory_held_becomes(&observer, held.len() as i64 + 1).await;
    let now = holders(&observer, lock.key()).await;
    assert_eq!(
        now,
        [waiter.pid],
        "the other process alone, not us ({ours})"
    );
    drop(held);
    elsewhere
        .execute("SELECT pg_advisory_unlock(7, 7)", &[])
        .await
        .unwrap();
    advisory_held_becomes(&observer, 0).await;
    assert!(
        locker.locks_per_session().iter().all(|&n| n == 0),
        "no lock counted on a slot: {:?}",
        locker.locks_per_session()
    );
}

type Boxed<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

fn poll_once<T>(f: &mut Boxed<T>) -> std::task::Poll<T> {
    f.as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// A holder's `release()` is polled once (its unlock queued) and then dropped, its
/// caller giving up on the answer; another task's try of the key, queued right
/// behind it, is fused with that unlock. With another process waiting for the key
/// in the server's queue, the unlock grants it the key and the try is refused;
/// without, the try gets the key back. Either way the key has exactly one holder,
/// the one told so, and nothing stays counted.
#[tokio::test]
async fn a_release_given_up_with_a_try_fused_behind_it_leaves_one_holder() {
    for elsewhere_waits in [false, true] {
        release_given_up_with_a_fused_try(elsewhere_waits).await;
    }
}

async fn release_given_up_with_a_fused_try(elsewhere_waits: bool) {
    let observer = common::observer().await;
    let locker = Locker::builder(common::pool(2)).sessions(1).build();
    let lock = AdvisoryLock::new(unique(&format!("review-fuse:release:{elsewhere_waits}")));
    let key = bigint(&lock);
    let holder = lock.try_acquire(&locker).await.unwrap();
    let [ours] = holders(&observer, lock.key()).await[..] else {
        panic!("our lock session holds the key");
    };
    let elsewhere = Arc::new(common::observer().await);
    let waiting = elsewhere_waits.then(|| {
        let elsewhere = elsewhere.clone();
        tokio::spawn(async move {
            elsewhere
                .query_one("SELECT pg_backend_pid() FROM pg_advisory_lock($1)", &[&key])
                .await
                .map(|row| row.get::<_, i32>(0))
        })
    });
    if elsewhere_waits {
        assert_waiting(&observer, lock.key(), "the other process").await;
    }

    let mut release: Boxed<_> = Box::pin(holder.release());
    assert!(poll_once(&mut release).is_pending(), "the unlock is queued");
    let (l, lk) = (lock.clone(), locker.clone());
    let mut again: Boxed<_> = Box::pin(async move { l.try_acquire(&lk).await });
    assert!(
        poll_once(&mut again).is_pending(),
        "the try is queued behind it"
    );
    drop(release);
    let again = tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .expect("answered");
    match waiting {
        Some(waiting) => {
            assert!(
                matches!(again, Err(pglock::Error::Busy { .. })),
                "the other process waited first: {again:?}"
            );
            let pid = tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .expect("the other process gets the key")
                .unwrap()
                .unwrap();
            assert_eq!(holders(&observer, lock.key()).await, [pid]);
            elsewhere
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .unwrap();
        }
        None => {
            let guard = again.expect("nobody else wants it: taken again");
            assert!(!guard.is_lost());
            assert_eq!(holders(&observer, lock.key()).await, [ours]);
            let taken: bool = elsewhere
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .unwrap()
                .get(0);
            assert!(!taken, "the key is ours, held once in the server");
            guard.release().await.unwrap();
        }
    }
    assert_released_within_1s(&observer, lock.key(), "at the end").await;
    assert_eq!(locker.keys_in_use(), 0);
    assert_eq!(locker.locks_per_session(), [0], "nothing counted");
}
