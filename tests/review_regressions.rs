//! Regressions found by review, each asserting what DESIGN.md and the README promise:
//! nested locks sharing a session never grant a key twice; a Locker's shared try
//! is Busy at once rather than waiting; a time limit covers getting a connection;
//! a Locker's overlapping shared holders do not starve an exclusive waiter of
//! another session (with the Pool behaviour as the control).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{holders, unique, AppError, Foreign};
use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, LockKey, Locker};

/// Counts how many bodies are inside at once; records the maximum.
#[derive(Default)]
struct Inside {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Inside {
    async fn visit(&self, for_: Duration) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(for_).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[advisory_locked(key = "{name}", wait)]
async fn section(pool: &Pool, name: &str, inside: &Inside) -> Result<(), AppError> {
    inside.visit(Duration::from_millis(300)).await;
    Ok(())
}

#[advisory_locked(key = "{outer}", wait)]
async fn outer_joins_two_sections(
    pool: &Pool,
    outer: &str,
    name: &str,
    inside: &Inside,
) -> Result<(), AppError> {
    let (a, b) = tokio::join!(section(pool, name, inside), section(pool, name, inside));
    a?;
    b?;
    Ok(())
}

/// DESIGN: "Futures that run side by side (join!, select!, spawned tasks) are not
/// nested: they wait for each other as normal." Inside an annotated body they do not.
#[tokio::test]
async fn join_inside_a_body_waits_for_each_other() {
    let pool = common::pool(4);
    let inside = Inside::default();
    let name = unique("rv-join-in-body");
    outer_joins_two_sections(&pool, &unique("rv-join-outer"), &name, &inside)
        .await
        .unwrap();
    assert_eq!(
        inside.max.load(Ordering::SeqCst),
        1,
        "two holders of one exclusive key were inside at once"
    );
}

#[advisory_locked(key = "{outer}")]
async fn outer_tries_twice(pool: &Pool, outer: &str, name: &str) -> Result<(), AppError> {
    let lock = AdvisoryLock::new(name);
    let first = lock.try_acquire(pool).await?;
    let second = lock.try_acquire(pool).await;
    assert!(
        second.as_ref().err().is_some_and(|e| e.is_busy()),
        "try_acquire of a key this task already holds must be Busy; got {:?} (first {:?})",
        second.as_ref().map(|g| g.lock().id().clone()),
        first.lock().id()
    );
    Ok(())
}

/// DESIGN: "try_acquire of a key that is already held, by this task or anyone else,
/// gives Busy". Inside an annotated body (Pool) the second try is granted.
#[tokio::test]
async fn try_acquire_twice_inside_a_body_is_busy_the_second_time() {
    let pool = common::pool(4);
    outer_tries_twice(&pool, &unique("rv-try2-outer"), &unique("rv-try2"))
        .await
        .unwrap();
}

#[advisory_locked(key = "{outer}")]
async fn outer_lends_its_session(
    pool: &Pool,
    outer: &str,
    name: &str,
    go: Arc<tokio::sync::Notify>,
    other_holds: Arc<tokio::sync::Notify>,
) -> Result<bool, AppError> {
    let lock = AdvisoryLock::new(name);
    // take and drop K2 inside the body: its unlock is queued on the outer session
    drop(lock.try_acquire(pool).await?);
    go.notify_one();
    other_holds.notified().await;
    // another task now holds K2 (on our session); try it again here
    let again = lock.try_acquire(pool).await;
    Ok(again.is_ok())
}

/// The queued-unlock reuse hands the session of an enclosing body to another task;
/// then both that task and the body hold the same exclusive key.
#[tokio::test]
async fn a_queued_unlock_on_an_enclosing_session_is_never_lent_to_another_task() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let name = unique("rv-lend");
    let (go, other_holds) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let other = {
        let (pool, name, go, other_holds) =
            (pool.clone(), name.clone(), go.clone(), other_holds.clone());
        tokio::spawn(async move {
            go.notified().await;
            let g = AdvisoryLock::new(name.as_str()).try_acquire(&pool).await;
            other_holds.notify_one();
            tokio::time::sleep(Duration::from_millis(500)).await;
            g.is_ok()
        })
    };
    let body_got_it =
        outer_lends_its_session(&pool, &unique("rv-lend-outer"), &name, go, other_holds)
            .await
            .unwrap();
    let other_got_it = other.await.unwrap();
    let pids = holders(&observer, LockKey::from_name(&name)).await;
    assert!(
        !(body_got_it && other_got_it),
        "two tasks were granted exclusive {name} at once (server holders now: {pids:?})"
    );
}

/// README: try_acquire fails at once with Busy. Through a Locker, a shared try while
/// a shared waiter of the process is queued on the server waits as long as it does.
#[tokio::test]
async fn locker_shared_try_behind_a_shared_server_waiter_is_busy_at_once() {
    let pool = common::pool(6);
    let locker = Locker::new(pool.clone());
    let name = unique("rv-shared-try");
    let key = LockKey::from_name(&name);
    let holder = Foreign::holding(key).await; // exclusive elsewhere
    let waiter = {
        let (locker, name) = (locker.clone(), name.clone());
        tokio::spawn(async move {
            let g = AdvisoryLock::new(name.as_str())
                .shared()
                .acquire(&locker)
                .await;
            g.map(drop)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // waiter is on the server now
    let started = std::time::Instant::now();
    let attempt = tokio::time::timeout(
        Duration::from_secs(3),
        AdvisoryLock::new(name.as_str())
            .shared()
            .try_acquire(&locker),
    )
    .await;
    let took = started.elapsed();
    holder.unlock(key).await;
    let _ = waiter.await;
    match attempt {
        Ok(Err(e)) if e.is_busy() => {}
        Ok(other) => panic!(
            "expected Busy at once, got {:?} after {took:?}",
            other.map(|_| ())
        ),
        Err(_) => panic!("shared try_acquire through a Locker still waiting after {took:?}"),
    }
}

/// README: wait = "5s" / acquire_timeout: "wait at most that long, then Error::Timeout".
/// With the pool's connections all in use, the limit does not cover getting one.
#[tokio::test]
async fn acquire_timeout_covers_getting_a_connection() {
    let pool = common::pool(1);
    let _busy = pool.get().await.unwrap(); // e.g. another task's lock or query
    let lock = AdvisoryLock::new(unique("rv-timeout-pool").as_str());
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        lock.acquire_timeout(&pool, Duration::from_millis(300)),
    )
    .await;
    assert!(r.is_ok(), "acquire_timeout(300ms) still pending after 3 s");
}

/// README fairness: other processes' waiters come first once the key goes back to
/// the server. Overlapping shared holders in one Locker keep the key forever.
#[tokio::test]
async fn locker_shared_holders_do_not_starve_an_exclusive_waiter_elsewhere() {
    let pool = common::pool(6);
    let locker = Locker::new(pool.clone());
    let name = unique("rv-starve");
    let key = LockKey::from_name(&name);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let (locker, name, stop) = (locker.clone(), name.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(25 * i)).await;
            while !stop.load(Ordering::SeqCst) {
                let g = AdvisoryLock::new(name.as_str())
                    .shared()
                    .acquire(&locker)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(g);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // another "process": a plain session asking for the key exclusively, 3 s at most
    let other = pool.get().await.unwrap();
    let LockKey::BigInt(k) = key else {
        unreachable!()
    };
    other
        .batch_execute("SET lock_timeout = '3s'")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = other.execute("SELECT pg_advisory_lock($1)", &[&k]).await;
    stop.store(true, Ordering::SeqCst);
    other
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        got.is_ok(),
        "exclusive waiter of another session starved for {:?} by 100 ms shared holders",
        started.elapsed()
    );
}

/// Same load, through a Pool: the server queues shared requests behind the
/// exclusive waiter, so it gets its turn (control for f4).
#[tokio::test]
async fn pool_shared_holders_do_not_starve_an_exclusive_waiter_either() {
    let pool = common::pool(8);
    let name = unique("rv-starve-pool");
    let key = LockKey::from_name(&name);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let (pool, name, stop) = (pool.clone(), name.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(25 * i)).await;
            while !stop.load(Ordering::SeqCst) {
                let g = AdvisoryLock::new(name.as_str())
                    .shared()
                    .acquire(&pool)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(g);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = pool.get().await.unwrap();
    let LockKey::BigInt(k) = key else {
        unreachable!()
    };
    other
        .batch_execute("SET lock_timeout = '3s'")
        .await
        .unwrap();
    let got = other.execute("SELECT pg_advisory_lock($1)", &[&k]).await;
    stop.store(true, Ordering::SeqCst);
    other
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(got.is_ok(), "{got:?}");
}
