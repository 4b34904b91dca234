//! The Locker against the live server: many locks on few connections, waiters that
//! queue in the process, mutual exclusion, modes, interop, re-entrancy, loss, the
//! server's lock table limit, drops at any point, and a shared try that is Busy at
//! once behind a shared waiter of the process.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{gone_within, lock_rows, unique, waiter_within, Foreign};
use pglock::__private::{run, OnLost};
use pglock::{AdvisoryLock, Error, LockKey, Locker};

const SECOND: Duration = Duration::from_secs(1);

/// Spawns a Locker acquisition after polling it once. A Locker admits a request
/// (holds, queues it in the process, or lets it ask the server) before its first
/// wait, so once this returns the request is in the Locker's queue: no sleep
/// needed for "a waiter is queued in the process", which the server cannot show.
fn spawn_queued<F>(acquisition: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut acquisition = Box::pin(acquisition);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        acquisition.as_mut().poll(&mut cx).is_pending(),
        "the acquisition waits"
    );
    tokio::spawn(acquisition)
}

/// Advisory locks held (granted) by any backend in `pids`.
async fn held_by(observer: &tokio_postgres::Client, pids: &[i32]) -> i64 {
    observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = ANY($1)",
            &[&pids],
        )
        .await
        .unwrap()
        .get(0)
}

/// Backends connected as this test's pool (by application_name).
async fn backends_named(observer: &tokio_postgres::Client, name: &str) -> Vec<i32> {
    observer
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_locks_held_at_once_on_a_pool_of_two() {
    let name = unique("two-thousand");
    let pool = common::named_pool(2, &name);
    let locker = Locker::new(pool.clone());
    let observer = common::observer().await;
    let all_held = Arc::new(tokio::sync::Barrier::new(2001));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for i in 0..2000 {
        let (locker, all_held, release) = (locker.clone(), all_held.clone(), release.clone());
        let lock = AdvisoryLock::new(format!("{name}:{i}"));
        tasks.push(tokio::spawn(async move {
            let guard = lock.try_acquire(&locker).await.unwrap();
            let released = release.notified();
            all_held.wait().await;
            released.await;
            guard.release().await.unwrap();
        }));
    }
    all_held.wait().await;
    let backends = backends_named(&observer, &name).await;
    assert!(
        backends.len() <= 2,
        "at most the pool's two connections: {backends:?}"
    );
    assert_eq!(held_by(&observer, &backends).await, 2000);
    assert_eq!(locker.keys_in_use(), 2000);
    release.notify_waiters();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(held_by(&observer, &backends).await, 0);
    assert_eq!(locker.keys_in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_waiters_leave_the_pool_free_and_queue_once_in_the_server() {
    let name = unique("sixty-four");
    let pool = common::named_pool(4, &name);
    let locker = Locker::new(pool.clone());
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let lock = AdvisoryLock::new(name.as_str());
    foreign.lock(lock.key()).await;

    let inside = Arc::new(AtomicBool::new(false));
    let entries = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (locker, lock, inside, entries) = (
                locker.clone(),
                lock.clone(),
                inside.clone(),
                entries.clone(),
            );
            tokio::spawn(async move {
                let guard = lock.acquire(&locker).await.unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                tokio::task::yield_now().await;
                inside.store(false, Ordering::SeqCst);
                entries.fetch_add(1, Ordering::SeqCst);
                drop(guard);
            })
        })
        .collect();
    waiter_within(&observer, lock.key(), SECOND)
        .await
        .expect("one of ours waits in the server");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiters: Vec<_> = lock_rows(&observer, lock.key())
        .await
        .into_iter()
        .filter(|r| !r.granted)
        .collect();
    assert_eq!(
        waiters.len(),
        1,
        "one server-side waiter for 64 tasks: {waiters:?}"
    );
    // The pool still serves the rest of the service at once.
    let client = tokio::time::timeout(Duration::from_millis(100), pool.get())
        .await
        .expect("pool.get() does not wait")
        .unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
    drop(client);
    assert_eq!(entries.load(Ordering::SeqCst), 0);

    foreign.unlock(lock.key()).await;
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(entries.load(Ordering::SeqCst), 64);
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_inside_the_process() {
    let locker = Locker::new(common::pool(4));
    let lock = AdvisoryLock::new(unique("exclusion"));
    let inside = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (locker, lock, inside, counter) = (
                locker.clone(),
                lock.clone(),
                inside.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                for _ in 0..20 {
                    let guard = lock.acquire(&locker).await.unwrap();
                    assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                    // A read-modify-write that loses updates if two run at once.
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(seen + 1, Ordering::SeqCst);
                    inside.store(false, Ordering::SeqCst);
                    drop(guard);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(counter.load(Ordering::SeqCst), 32 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_without_the_lock_updates_are_lost() {
    let counter = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let counter = counter.clone();
            tokio::spawn(async move {
                for _ in 0..20 {
                    let seen = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(seen + 1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        counter.load(Ordering::SeqCst) < 32 * 20,
        "the same work without the lock loses updates"
    );
}

#[tokio::test]
async fn shared_holders_share_and_exclusive_waits_through_a_locker() {
    let locker = Locker::new(common::pool(4));
    let observer = common::observer().await;
    let name = unique("locker-shared");
    let shared = AdvisoryLock::new(name.as_str()).shared();
    let exclusive = AdvisoryLock::new(name.as_str());
    let a = shared.try_acquire(&locker).await.unwrap();
    let b = shared.try_acquire(&locker).await.unwrap();
    let rows = lock_rows(&observer, shared.key()).await;
    assert_eq!(
        rows.len(),
        1,
        "one server lock for both in-process holders: {rows:?}"
    );
    assert_eq!(rows[0].mode, "ShareLock");
    assert!(exclusive.try_acquire(&locker).await.unwrap_err().is_busy());
    // And from outside the process, too.
    let pool = common::pool(2);
    assert!(exclusive.try_acquire(&pool).await.unwrap_err().is_busy());
    assert!(shared.try_acquire(&pool).await.is_ok());
    let waiting = spawn_queued({
        let (locker, exclusive) = (locker.clone(), exclusive.clone());
        async move { exclusive.acquire(&locker).await.map(drop) }
    });
    assert!(!waiting.is_finished());
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "one shared holder still keeps it out"
    );
    drop(b);
    tokio::time::timeout(SECOND, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(gone_within(&observer, shared.key(), SECOND).await, vec![]);
}

/// Two shared tries of a free key at once: the second one, finding the first one's
/// request on its way to the server, waits for that answer and joins it, as two
/// shared tries through the server would both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shared_tries_of_a_free_key_both_get_it() {
    let locker = Locker::new(common::pool(4));
    for round in 0..50 {
        let lock = AdvisoryLock::new(unique("locker-shared-tries")).shared();
        let (a, b) = tokio::join!(lock.try_acquire(&locker), lock.try_acquire(&locker));
        assert!(a.is_ok() && b.is_ok(), "round {round}: {a:?} {b:?}");
    }
}

#[tokio::test]
async fn psql_and_a_locker_exclude_each_other() {
    let locker = Locker::new(common::pool(2));
    let name = unique("locker-psql");
    let lock = AdvisoryLock::new(name.as_str());
    let guard = lock.try_acquire(&locker).await.unwrap();
    let sql = format!("SELECT pg_try_advisory_lock(hashtextextended('{name}', 0))");
    let output = tokio::process::Command::new("psql")
        .args([pglock::testdb::shared().url(), "-tAc", &sql])
        .output()
        .await
        .expect("run psql");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "f");
    guard.release().await.unwrap();
    let output = tokio::process::Command::new("psql")
        .args([pglock::testdb::shared().url(), "-tAc", &sql])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t");
}

#[tokio::test]
async fn reentrant_wait_through_a_locker_fails_at_once() {
    let locker = Locker::new(common::pool(2));
    let lock = AdvisoryLock::new(unique("locker-reentrant"));
    let outer = lock.acquire(&locker).await.unwrap();
    let (waited, tried) = run(&outer, OnLost::Abort, async {
        let waited = tokio::time::timeout(SECOND, lock.acquire(&locker))
            .await
            .expect("never hangs");
        (waited.map(drop), lock.try_acquire(&locker).await.map(drop))
    })
    .await
    .unwrap();
    let waited = waited.unwrap_err();
    assert!(matches!(waited, Error::WouldDeadlock { .. }), "{waited:?}");
    assert!(waited.to_string().contains(lock.name().unwrap()));
    assert!(tried.unwrap_err().is_busy());
    outer.release().await.unwrap();
}

#[tokio::test]
async fn a_lost_lock_session_is_reported_to_every_guard_and_replaced() {
    let name = unique("locker-loss");
    let pool = common::named_pool(4, &name);
    let locker = Locker::builder(pool).sessions(1).build();
    let observer = common::observer().await;
    let locks: Vec<_> = (0..10)
        .map(|i| AdvisoryLock::new(format!("{name}:{i}")))
        .collect();
    let mut guards = Vec::new();
    for lock in &locks {
        guards.push(lock.try_acquire(&locker).await.unwrap());
    }
    // A waiter queued in the process behind the first key's holder.
    let waiter = spawn_queued({
        let (locker, lock) = (locker.clone(), locks[0].clone());
        async move { lock.acquire(&locker).await }
    });
    let backends = backends_named(&observer, &name).await;
    assert_eq!(backends.len(), 1, "one lock session");
    observer
        .execute("SELECT pg_terminate_backend($1)", &[&backends[0]])
        .await
        .unwrap();
    for guard in &guards {
        tokio::time::timeout(SECOND, guard.lost())
            .await
            .expect("lost within 1 s");
        assert!(guard.is_lost());
    }
    // The waiter does not wait for a holder that holds nothing: it gets the key.
    let got = tokio::time::timeout(SECOND, waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!got.is_lost());
    for guard in guards {
        assert!(guard.release().await.unwrap_err().is_lost());
    }
    // A fresh session serves the next acquisitions.
    let again = locks[1].try_acquire(&locker).await.unwrap();
    let backends_now = backends_named(&observer, &name).await;
    assert!(!backends_now.contains(&backends[0]));
    again.release().await.unwrap();
    got.release().await.unwrap();
}

#[tokio::test]
async fn past_the_lock_table_acquiring_fails_and_held_locks_stay() {
    let cluster = pglock::testdb::Cluster::start_with(&[
        ("max_locks_per_transaction", "10"),
        ("max_connections", "20"),
    ])
    .unwrap();
    let pool = cluster.db().pool(2);
    let locker = Locker::builder(pool.clone()).sessions(1).build();
    // Connected before the table fills: a new backend needs room in it to start.
    let observer = cluster.db().connect().await.unwrap();
    let mut guards = Vec::new();
    let error = loop {
        let lock = AdvisoryLock::new(guards.len() as i64);
        match lock.try_acquire(&locker).await {
            Ok(guard) => guards.push(guard),
            Err(e) => break e,
        }
        assert!(guards.len() < 100_000, "the lock table never filled");
    };
    assert!(matches!(error, Error::LockTableFull { .. }), "{error:?}");
    assert!(
        error.to_string().contains("max_locks_per_transaction"),
        "{error}"
    );
    let held: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        held,
        guards.len() as i64,
        "every lock already held stays held"
    );
    assert!(guards.iter().all(|g| !g.is_lost()));
    println!("lock table full after {} locks", guards.len());
    drop(guards);
    let deadline = tokio::time::Instant::now() + SECOND;
    loop {
        let held: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if held == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{held} locks left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn drops_at_any_point_leave_nothing_behind() {
    let observer = common::observer().await;
    let foreign = Foreign::connect().await;
    let locker = Locker::new(common::pool(4));
    let lock = AdvisoryLock::new(unique("locker-drops"));

    // A guard dropped.
    drop(lock.try_acquire(&locker).await.unwrap());
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);

    // Waiting futures dropped: the server-side waiter and one queued in the process.
    foreign.lock(lock.key()).await;
    let server_waiter = tokio::spawn({
        let (locker, lock) = (locker.clone(), lock.clone());
        async move { lock.acquire(&locker).await.map(drop) }
    });
    waiter_within(&observer, lock.key(), SECOND).await.unwrap();
    let process_waiter = spawn_queued({
        let (locker, lock) = (locker.clone(), lock.clone());
        async move { lock.acquire(&locker).await.map(drop) }
    });
    let rows = lock_rows(&observer, lock.key()).await;
    assert_eq!(
        rows.iter().filter(|r| !r.granted).count(),
        1,
        "the second waiter queues in the process, not on the server: {rows:?}"
    );
    server_waiter.abort();
    process_waiter.abort();
    let _ = (server_waiter.await, process_waiter.await);
    let deadline = tokio::time::Instant::now() + SECOND;
    while lock_rows(&observer, lock.key()).await.len() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "our waiter stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    foreign.unlock(lock.key()).await;
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        lock_rows(&observer, lock.key()).await,
        vec![],
        "nothing of ours was granted later"
    );
    assert_eq!(locker.keys_in_use(), 0);

    // The Locker itself dropped while guards live: they keep it alive, and release.
    let guard = lock.try_acquire(&locker).await.unwrap();
    drop(locker);
    assert_eq!(lock_rows(&observer, lock.key()).await.len(), 1);
    drop(guard);
    assert_eq!(gone_within(&observer, lock.key(), SECOND).await, vec![]);
}

/// README: try_acquire fails at once with Busy. Through a Locker, a shared try while
/// a shared waiter of the process is queued on the server must not wait as long as
/// that waiter does.
#[tokio::test]
async fn locker_shared_try_behind_a_shared_server_waiter_is_busy_at_once() {
    let pool = common::pool(6);
    let locker = Locker::new(pool.clone());
    let observer = common::observer().await;
    let name = unique("shared-try");
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
    let queued = common::assert_waiting(&observer, key, "the shared waiter").await;
    assert_eq!(
        queued.mode, "ShareLock",
        "the waiter asks for a shared lock"
    );
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
    waiter
        .await
        .unwrap()
        .expect("the shared waiter is granted once the key is free");
    match attempt {
        Ok(Err(e)) if e.is_busy() => {}
        Ok(other) => panic!(
            "expected Busy at once, got {:?} after {took:?}",
            other.map(|_| ())
        ),
        Err(_) => panic!("shared try_acquire through a Locker still waiting after {took:?}"),
    }
}
