//! Live tests of what `#[advisory_locked]` does when the lock is taken elsewhere:
//! the default (`Busy`), `wait`, `wait = "..."` and `skip`, written once and run for
//! each lock source (`pool::…` and `locker::…`); then `shared` and `on_lost` through
//! a Pool, whose Locker counterparts (one server lock for in-process readers, the
//! lock session named by `pg_locks`) live in `attribute_locker.rs`.

mod common;

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_released_within_1s, assert_waiting, holders, unique, AppError, Foreign};
use deadpool_postgres::{Client, Pool};
use pglock::{advisory_locked, LockKey, Locker};
use tokio::sync::{Barrier, Notify};

fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

/// The mode tests for one lock source: `$module` names them (`cargo test
/// pool::wait_gets` or `cargo test wait_gets` for both), `$Source` is its type and
/// `$make` builds one from a pool.
macro_rules! mode_tests {
    ($module:ident, $Source:ty, $make:expr) => {
        mod $module {
            use super::*;

            type Source = $Source;

            fn source() -> Source {
                ($make)(common::pool(4))
            }

            #[advisory_locked(key = "{name}", pool = source)]
            async fn at_once(
                source: &Source,
                name: &str,
                ran: &AtomicUsize,
            ) -> Result<u32, AppError> {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(7)
            }

            /// Holds `name` until `gate` opens.
            #[advisory_locked(key = "{name}", pool = source)]
            async fn hold_until(
                source: &Source,
                name: &str,
                inside: &Notify,
                gate: &Notify,
            ) -> Result<(), AppError> {
                inside.notify_one();
                gate.notified().await;
                Ok(())
            }

            #[tokio::test]
            async fn busy_by_default_when_held_elsewhere_or_by_another_task() {
                let source = source();
                let name = unique("busy");
                let ran = AtomicUsize::new(0);

                // Free: the body runs.
                assert_eq!(at_once(&source, &name, &ran).await.unwrap(), 7);
                assert_eq!(ran.load(Ordering::SeqCst), 1);

                // Held by another session: Busy at once, naming the lock; the body did not run.
                let holder = Foreign::holding(key_of(&name)).await;
                let started = Instant::now();
                let err = at_once(&source, &name, &ran).await.unwrap_err();
                assert!(err.lock().is_busy(), "{err:?}");
                assert!(
                    err.lock().to_string().contains(&name),
                    "the error names the lock: {}",
                    err.lock()
                );
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "Busy without waiting"
                );
                assert_eq!(ran.load(Ordering::SeqCst), 1, "the body must not run");
                holder.unlock(key_of(&name)).await;

                // Another future of this process holds it through the same source.
                let (inside, gate) = (Notify::new(), Notify::new());
                let other = hold_until(&source, &name, &inside, &gate);
                let check = async {
                    inside.notified().await;
                    let err = at_once(&source, &name, &ran).await.unwrap_err();
                    gate.notify_one();
                    err
                };
                let (held, err) = tokio::join!(other, check);
                held.unwrap();
                assert!(err.lock().is_busy(), "{err:?}");
                assert_eq!(ran.load(Ordering::SeqCst), 1, "the body ran only when free");
            }

            #[advisory_locked(key = "{name}", pool = source, wait)]
            async fn waiting(
                source: &Source,
                name: &str,
                ran: &AtomicUsize,
            ) -> Result<u32, AppError> {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(8)
            }

            #[tokio::test]
            async fn wait_gets_the_lock_after_release() {
                let source = source();
                let observer = common::observer().await;
                let name = unique("wait");
                let ran = Arc::new(AtomicUsize::new(0));
                let holder = Foreign::holding(key_of(&name)).await;

                // Spawned: the future of an annotated fn is Send.
                let call = tokio::spawn({
                    let (source, name, ran) = (source.clone(), name.clone(), ran.clone());
                    async move { waiting(&source, &name, &ran).await }
                });
                // Still waiting, on the server, while the other session holds it.
                assert_waiting(&observer, key_of(&name), "the waiting call").await;
                assert!(!call.is_finished(), "must wait while the lock is held");
                assert_eq!(ran.load(Ordering::SeqCst), 0);

                holder.unlock(key_of(&name)).await;
                let out = tokio::time::timeout(Duration::from_secs(10), call)
                    .await
                    .expect("granted once released")
                    .unwrap();
                assert_eq!(out.unwrap(), 8);
                assert_eq!(ran.load(Ordering::SeqCst), 1);
            }

            #[advisory_locked(key = "{name}", pool = source, wait = "300ms")]
            async fn bounded(
                source: &Source,
                name: &str,
                ran: &AtomicUsize,
            ) -> Result<u32, AppError> {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(9)
            }

            #[tokio::test]
            async fn wait_with_a_bound_times_out() {
                let source = source();
                let name = unique("timeout");
                let ran = AtomicUsize::new(0);
                let holder = Foreign::holding(key_of(&name)).await;

                let started = Instant::now();
                let err = bounded(&source, &name, &ran).await.unwrap_err();
                let waited = started.elapsed();
                assert!(err.lock().is_timeout(), "{err:?}");
                assert!(
                    waited >= Duration::from_millis(300),
                    "gave up after {waited:?}, before the 300ms bound"
                );
                assert!(waited < Duration::from_secs(10), "waited {waited:?}");
                assert_eq!(ran.load(Ordering::SeqCst), 0, "the body must not run");

                // Once free, the same fn gets it.
                holder.unlock(key_of(&name)).await;
                assert_eq!(bounded(&source, &name, &ran).await.unwrap(), 9);
            }

            #[advisory_locked(key = "{name}", pool = source, skip)]
            async fn skipping(
                source: &Source,
                name: &str,
                ran: &AtomicUsize,
            ) -> Result<u32, AppError> {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(10)
            }

            #[advisory_locked(key = "{name}", pool = source, wait = "200ms", skip)]
            async fn skipping_after_a_wait(
                source: &Source,
                name: &str,
                ran: &AtomicUsize,
            ) -> Result<Vec<u8>, AppError> {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(vec![1, 2, 3])
            }

            #[tokio::test]
            async fn skip_returns_default_without_running_the_body() {
                let source = source();
                let name = unique("skip");
                let ran = AtomicUsize::new(0);

                // Free: the body runs and its value comes back.
                assert_eq!(skipping(&source, &name, &ran).await.unwrap(), 10);
                assert_eq!(
                    skipping_after_a_wait(&source, &name, &ran).await.unwrap(),
                    [1, 2, 3]
                );
                assert_eq!(ran.load(Ordering::SeqCst), 2);

                // Held: Ok(Default::default()), and the body never ran.
                let holder = Foreign::holding(key_of(&name)).await;
                assert_eq!(skipping(&source, &name, &ran).await.unwrap(), 0);
                let started = Instant::now();
                assert_eq!(
                    skipping_after_a_wait(&source, &name, &ran).await.unwrap(),
                    Vec::<u8>::new()
                );
                assert!(
                    started.elapsed() >= Duration::from_millis(200),
                    "waited first"
                );
                assert_eq!(ran.load(Ordering::SeqCst), 2, "a skipped body must not run");
                holder.unlock(key_of(&name)).await;
            }
        }
    };
}

mode_tests!(pool, Pool, |pool| pool);
mode_tests!(locker, Locker, Locker::new);

/// Inside the body until `gate` lets it go; reports the session that holds the lock.
#[advisory_locked(key = "{name}", shared, guard = conn)]
async fn reader(pool: &Pool, name: &str, inside: &Barrier, gate: &Notify) -> Result<i32, AppError> {
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    inside.wait().await;
    gate.notified().await;
    Ok(pid)
}

#[advisory_locked(key = "{name}")]
async fn writer(pool: &Pool, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[tokio::test]
async fn shared_admits_two_holders_and_keeps_an_exclusive_one_out() {
    let pool = common::pool(6);
    let observer = pool.get().await.unwrap();
    let name = unique("shared");
    let key = key_of(&name);
    // Two readers and this test meet inside: only possible if both readers are in.
    let inside = Arc::new(Barrier::new(3));
    let gate = Arc::new(Notify::new());

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (pool, name, inside, gate) =
                (pool.clone(), name.clone(), inside.clone(), gate.clone());
            tokio::spawn(async move { reader(&pool, &name, &inside, &gate).await })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), inside.wait())
        .await
        .expect("both shared holders must be inside at once");

    let held_by = holders(&observer, key).await;
    assert_eq!(held_by.len(), 2, "two sessions hold {key}: {held_by:?}");

    // An exclusive holder is kept out while they are in.
    let err = writer(&pool, &name).await.unwrap_err();
    assert!(err.lock().is_busy(), "{err:?}");

    gate.notify_waiters();
    let mut pids = Vec::new();
    for r in readers {
        pids.push(r.await.unwrap().unwrap());
    }
    pids.sort();
    assert_eq!(pids, held_by, "the holders were the readers' sessions");

    assert_released_within_1s(&observer, key, "after the shared bodies").await;
    writer(&pool, &name)
        .await
        .expect("exclusive once they left");
}

/// Publishes the lock session's pid, says it is in, then ticks `n` times 50 ms
/// apart: a body that runs long enough for its session to be killed meanwhile.
async fn tick_after_entering(
    me: i32,
    pid: &AtomicI32,
    entered: &Notify,
    ticks: &AtomicUsize,
    n: usize,
) -> i32 {
    pid.store(me, Ordering::SeqCst);
    entered.notify_one();
    for _ in 0..n {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ticks.fetch_add(1, Ordering::SeqCst);
    }
    me
}

#[advisory_locked(key = "{name}", guard = conn)]
async fn until_lost(
    pool: &Pool,
    name: &str,
    pid: &AtomicI32,
    entered: &Notify,
    ticks: &AtomicUsize,
) -> Result<i32, AppError> {
    let me: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok(tick_after_entering(me, pid, entered, ticks, 100).await)
}

#[advisory_locked(key = "{name}", guard = conn, on_lost = "ignore")]
async fn despite_loss(
    pool: &Pool,
    name: &str,
    pid: &AtomicI32,
    entered: &Notify,
    ticks: &AtomicUsize,
) -> Result<i32, AppError> {
    let me: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok(tick_after_entering(me, pid, entered, ticks, 10).await)
}

async fn terminate(observer: &Client, pid: i32) {
    let done: bool = observer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(done, "terminated backend {pid}");
}

#[tokio::test]
async fn on_lost_abort_stops_the_body_and_ignore_lets_it_finish() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();

    // abort (the default): the body is dropped once the session dies.
    let name = unique("on-lost-abort");
    let (pid, entered, ticks) = (AtomicI32::new(0), Notify::new(), AtomicUsize::new(0));
    let call = until_lost(&pool, &name, &pid, &entered, &ticks);
    let kill = async {
        entered.notified().await;
        let pid = pid.load(Ordering::SeqCst);
        assert_eq!(
            holders(&observer, key_of(&name)).await,
            [pid],
            "the body's session holds it"
        );
        terminate(&observer, pid).await;
        Instant::now()
    };
    let (result, killed_at) = tokio::join!(call, kill);
    let err = result.unwrap_err();
    assert!(err.lock().is_lost(), "{err:?}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(1),
        "the body stopped {:?} after the loss",
        killed_at.elapsed()
    );
    assert!(
        ticks.load(Ordering::SeqCst) < 100,
        "the body did not run to its end"
    );

    // ignore: the body runs on and its value comes back.
    let name = unique("on-lost-ignore");
    let (pid, entered, ticks) = (AtomicI32::new(0), Notify::new(), AtomicUsize::new(0));
    let call = despite_loss(&pool, &name, &pid, &entered, &ticks);
    let kill = async {
        entered.notified().await;
        let pid = pid.load(Ordering::SeqCst);
        assert_eq!(
            holders(&observer, key_of(&name)).await,
            [pid],
            "the body's session holds it"
        );
        terminate(&observer, pid).await;
        pid
    };
    let (result, killed) = tokio::join!(call, kill);
    assert_eq!(result.unwrap(), killed);
    assert_eq!(ticks.load(Ordering::SeqCst), 10, "the body ran to its end");
}
