//! Live tests of annotated fns inside one another (DESIGN.md, "Re-entrancy", and
//! guarantee 7): a nested call that waits for a key an enclosing body holds fails at
//! once with `WouldDeadlock` (a try gets `Busy`), through a Pool and through a
//! Locker, at any depth; futures side by side (`join!`, spawned tasks) are not
//! nested and wait for each other as usual; nested locks from a Pool live on the
//! outermost lock's session, so a cross-task deadlock is seen by the server and
//! reported as `Deadlock` to one side; inside a body, futures side by side still
//! wait for each other and a second try of a held key is `Busy`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_released_within_1s, holders, unique, AppError};
use deadpool_postgres::{Client, Pool};
use pglock::{advisory_locked, AdvisoryLock, Error, LockKey, Locker};
use tokio::sync::Barrier;

const SECOND: Duration = Duration::from_secs(1);

/// What the innermost call does with the key its caller holds.
#[derive(Clone, Copy, Debug)]
enum Nested {
    /// Waits for it, directly inside the holder's body.
    Wait,
    /// Tries it (the default mode), directly inside.
    Try,
    /// Waits for it inside the body of a fn (on another key) that the holder calls.
    WaitTwoLevelsDown,
}

/// The same family of annotated fns, with the lock source a `&Pool` in one module
/// and a `&Locker` in the other (both found by the parameter's type).
macro_rules! nesting_fns {
    ($module:ident, $Source:ty) => {
        mod $module {
            use super::*;

            #[advisory_locked(key = "{name}", wait)]
            pub async fn wait(source: &$Source, name: &str) -> Result<(), AppError> {
                Ok(())
            }

            #[advisory_locked(key = "{name}")]
            pub async fn attempt(source: &$Source, name: &str) -> Result<(), AppError> {
                Ok(())
            }

            #[advisory_locked(key = "{middle}", wait)]
            async fn middle(source: &$Source, middle: &str, name: &str) -> Result<(), AppError> {
                wait(source, name).await
            }

            /// Holds `name` and, in its body, does what `nested` says; a nested
            /// call that hangs for a second is reported as the body's error.
            #[advisory_locked(key = "{name}", wait)]
            pub async fn holder(
                source: &$Source,
                name: &str,
                nested: Nested,
            ) -> Result<(), AppError> {
                let call = async {
                    match nested {
                        Nested::Wait => wait(source, name).await,
                        Nested::Try => attempt(source, name).await,
                        Nested::WaitTwoLevelsDown => {
                            middle(source, &format!("{name}/middle"), name).await
                        }
                    }
                };
                tokio::time::timeout(SECOND, call)
                    .await
                    .map_err(|_| AppError::Body("the nested call hung"))?
            }

            /// In the body for a while, and never together with another caller.
            #[advisory_locked(key = "{name}", wait)]
            pub async fn section(
                source: &$Source,
                name: &str,
                inside: &AtomicBool,
                entered: &AtomicUsize,
            ) -> Result<(), AppError> {
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                entered.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                inside.store(false, Ordering::SeqCst);
                Ok(())
            }
        }
    };
}

nesting_fns!(through_pool, Pool);
nesting_fns!(through_locker, Locker);

fn assert_would_deadlock(result: Result<(), AppError>, name: &str, nested: Nested) {
    match result {
        Err(AppError::Lock(e @ Error::WouldDeadlock { .. })) => {
            assert!(
                e.to_string().contains(name),
                "{nested:?}: names the key: {e}"
            );
            assert_eq!(e.lock().key(), LockKey::from_name(name), "{nested:?}");
        }
        other => panic!("{nested:?}: expected WouldDeadlock at once, got {other:?}"),
    }
}

fn assert_busy(result: Result<(), AppError>, name: &str) {
    match result {
        Err(AppError::Lock(e @ Error::Busy { .. })) => {
            assert!(e.to_string().contains(name), "names the key: {e}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
}

#[tokio::test]
async fn a_nested_wait_for_the_held_key_would_deadlock_through_a_pool() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    for nested in [Nested::Wait, Nested::WaitTwoLevelsDown] {
        let name = unique(&format!("nested-pool-{nested:?}"));
        let result = through_pool::holder(&pool, &name, nested).await;
        assert_would_deadlock(result, &name, nested);
        assert_released_within_1s(&observer, LockKey::from_name(&name), "after").await;
    }
    let name = unique("nested-pool-try");
    assert_busy(through_pool::holder(&pool, &name, Nested::Try).await, &name);
}

#[tokio::test]
async fn a_nested_wait_for_the_held_key_would_deadlock_through_a_locker() {
    let locker = Locker::new(common::pool(4));
    let observer = common::pool(1).get().await.unwrap();
    for nested in [Nested::Wait, Nested::WaitTwoLevelsDown] {
        let name = unique(&format!("nested-locker-{nested:?}"));
        let result = through_locker::holder(&locker, &name, nested).await;
        assert_would_deadlock(result, &name, nested);
        assert_released_within_1s(&observer, LockKey::from_name(&name), "after").await;
    }
    let name = unique("nested-locker-try");
    assert_busy(
        through_locker::holder(&locker, &name, Nested::Try).await,
        &name,
    );
    assert_eq!(locker.keys_in_use(), 0);
}

#[tokio::test]
async fn futures_side_by_side_in_one_task_wait_for_each_other() {
    let pool = common::pool(4);
    let locker = Locker::new(common::pool(4));
    let (inside, entered) = (AtomicBool::new(false), AtomicUsize::new(0));

    let name = unique("join-pool");
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(
            through_pool::section(&pool, &name, &inside, &entered),
            through_pool::section(&pool, &name, &inside, &entered),
        )
    })
    .await
    .expect("the second waits for the first, then runs");
    a.unwrap();
    b.unwrap();
    assert_eq!(entered.load(Ordering::SeqCst), 2);

    let name = unique("join-locker");
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(
            through_locker::section(&locker, &name, &inside, &entered),
            through_locker::section(&locker, &name, &inside, &entered),
        )
    })
    .await
    .expect("the second waits for the first, then runs");
    a.unwrap();
    b.unwrap();
    assert_eq!(entered.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn spawned_tasks_wait_for_each_other() {
    let pool = common::pool(4);
    let locker = Locker::new(common::pool(4));
    let inside = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicUsize::new(0));

    let name = unique("spawned");
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (pool, locker, name, inside, entered) = (
            pool.clone(),
            locker.clone(),
            name.clone(),
            inside.clone(),
            entered.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Half through the pool, half through the Locker: the same key.
            if i % 2 == 0 {
                through_pool::section(&pool, &name, &inside, &entered).await
            } else {
                through_locker::section(&locker, &name, &inside, &entered).await
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("every task gets its turn")
            .unwrap()
            .unwrap();
    }
    assert_eq!(entered.load(Ordering::SeqCst), 4);
}

/// Holds `first`; once the other task holds its own key, waits for `second`.
#[advisory_locked(key = "{first}", wait)]
async fn hold_then_wait(
    pool: &Pool,
    first: &str,
    second: &str,
    both_hold: &Barrier,
) -> Result<(), AppError> {
    both_hold.wait().await;
    through_pool::wait(pool, second).await
}

#[tokio::test]
async fn a_deadlock_between_two_tasks_is_reported_to_one_and_the_other_proceeds() {
    let pool = common::pool(6);
    let observer = pool.get().await.unwrap();
    let (k1, k2) = (unique("deadlock-1"), unique("deadlock-2"));
    let both_hold = Arc::new(Barrier::new(2));
    let side = |first: &str, second: &str| {
        let (pool, first, second, both_hold) = (
            pool.clone(),
            first.to_owned(),
            second.to_owned(),
            both_hold.clone(),
        );
        tokio::spawn(async move { hold_then_wait(&pool, &first, &second, &both_hold).await })
    };
    let (a, b) = (side(&k1, &k2), side(&k2, &k1));
    let (a, b) = tokio::time::timeout(Duration::from_secs(10), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("the server's deadlock detector ends the cycle: nothing hangs");

    // The victim waited for the other's key; its error names that key.
    let (victim, waited_for) = match (a, b) {
        (Err(e), Ok(())) => (e, &k2),
        (Ok(()), Err(e)) => (e, &k1),
        other => panic!("expected one Deadlock and one success, got {other:?}"),
    };
    match victim {
        AppError::Lock(e @ Error::Deadlock { .. }) => {
            assert_eq!(e.lock().key(), LockKey::from_name(waited_for));
            assert!(e.to_string().contains(waited_for.as_str()), "{e}");
        }
        other => panic!("expected Deadlock, got {other:?}"),
    }
    for name in [&k1, &k2] {
        assert_released_within_1s(&observer, LockKey::from_name(name), "after the cycle").await;
    }
}

/// Holds `outer` and calls `inner_locked`; reports its own session's pid and what
/// the inner body saw.
#[advisory_locked(key = "{outer}", guard = conn)]
async fn outer_locked(
    pool: &Pool,
    outer: &str,
    inner: &str,
    observer: &Client,
) -> Result<(i32, Seen), AppError> {
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let seen = inner_locked(pool, inner, outer, observer).await?;
    Ok((pid, seen))
}

/// The inner body's session, and the holders of both keys as `pg_locks` shows them.
type Seen = (i32, Vec<i32>, Vec<i32>);

#[advisory_locked(key = "{inner}", guard = conn)]
async fn inner_locked(
    pool: &Pool,
    inner: &str,
    outer: &str,
    observer: &Client,
) -> Result<Seen, AppError> {
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok((
        pid,
        holders(observer, LockKey::from_name(outer)).await,
        holders(observer, LockKey::from_name(inner)).await,
    ))
}

#[tokio::test]
async fn nested_locks_from_a_pool_live_on_the_outermost_session() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let (outer, inner) = (unique("outermost"), unique("nested"));
    let (pid, (inner_pid, outer_holders, inner_holders)) =
        outer_locked(&pool, &outer, &inner, &observer)
            .await
            .unwrap();
    assert_eq!(
        inner_pid, pid,
        "the inner guard is the outer lock's session"
    );
    assert_eq!(outer_holders, [pid]);
    assert_eq!(inner_holders, [pid], "pg_locks: both keys on one backend");
    for name in [&outer, &inner] {
        assert_released_within_1s(&observer, LockKey::from_name(name), "after").await;
    }
}

/// Counts how many bodies are inside at once; records the maximum.
#[derive(Default)]
struct Inside {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Inside {
    /// Stays inside for `for_`: a window wide enough for a second holder to show.
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
/// nested: they wait for each other as normal", inside an annotated body as well.
#[tokio::test]
async fn join_inside_a_body_waits_for_each_other() {
    let pool = common::pool(4);
    let inside = Inside::default();
    let name = unique("join-in-body");
    outer_joins_two_sections(&pool, &unique("join-outer"), &name, &inside)
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
/// gives Busy", inside an annotated body (whose session the try shares) as well.
#[tokio::test]
async fn try_acquire_twice_inside_a_body_is_busy_the_second_time() {
    let pool = common::pool(4);
    outer_tries_twice(&pool, &unique("try2-outer"), &unique("try2"))
        .await
        .unwrap();
}
