//! Limits too large to represent (`Duration::MAX`, `wait = "18446744073709551615s"`
//! through the attribute) or past PostgreSQL's `lock_timeout` range (above
//! `i32::MAX` ms, about 24.8 days: a 30-day limit) mean no limit: no panic, no
//! server error, and a real wait in the server's queue (checked in `pg_locks`) that
//! is granted once the holder lets go. Through a Pool and a Locker.

mod common;

use std::time::Duration;

use common::{assert_waiting, unique, AppError, Foreign};
use deadpool_postgres::Pool;
use pglock::{advisory_locked, AdvisoryLock, LockKey, LockSource, Locker};

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const PAST_LOCK_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64 + 1);

/// Waits for `name` with `limit` while another session holds it, checks the wait
/// is queued on the server, frees the key and sees the wait granted.
async fn waits_then_gets<S: LockSource + ?Sized>(source: &S, limit: Duration) {
    let name = unique("huge-limit");
    let key = LockKey::from_name(&name);
    let observer = common::observer().await;
    let holder = Foreign::holding(key).await;
    let lock = AdvisoryLock::new(name.as_str());
    let wait = lock.acquire_timeout(source, limit);
    tokio::pin!(wait);
    tokio::select! {
        early = &mut wait => panic!("{limit:?}: ended while the key was held: {:?}", early.map(drop)),
        _ = assert_waiting(&observer, key, "a huge-limit wait") => {}
    }
    holder.unlock(key).await;
    let guard = tokio::time::timeout(common::pg_locks::PATIENCE, wait)
        .await
        .expect("granted once freed")
        .unwrap_or_else(|e| panic!("{limit:?}: {e:?}"));
    drop(guard);
    common::assert_released_within_1s(&observer, key, "dropping the guard").await;
}

fn locker() -> Locker {
    Locker::new(common::pool(4))
}

#[tokio::test]
async fn duration_max_is_no_limit_through_a_pool() {
    waits_then_gets(&common::pool(4), Duration::MAX).await;
}

#[tokio::test]
async fn duration_max_is_no_limit_through_a_locker() {
    waits_then_gets(&locker(), Duration::MAX).await;
}

#[tokio::test]
async fn thirty_days_is_a_real_wait_through_a_pool() {
    waits_then_gets(&common::pool(4), THIRTY_DAYS).await;
}

#[tokio::test]
async fn thirty_days_is_a_real_wait_through_a_locker() {
    waits_then_gets(&locker(), THIRTY_DAYS).await;
}

#[tokio::test]
async fn just_past_the_lock_timeout_range_is_a_real_wait() {
    waits_then_gets(&common::pool(4), PAST_LOCK_TIMEOUT).await;
    waits_then_gets(&locker(), PAST_LOCK_TIMEOUT).await;
}

/// The edge below: the largest limit the server's `lock_timeout` takes is sent to
/// it, and the server accepts it (a real wait, not an error).
#[tokio::test]
async fn the_largest_lock_timeout_the_server_takes_is_a_real_wait() {
    waits_then_gets(&common::pool(4), Duration::from_millis(i32::MAX as u64)).await;
}

#[advisory_locked(key = "{name}", pool = pool, wait = "18446744073709551615s")]
async fn with_the_longest_wait(pool: &Pool, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[tokio::test]
async fn the_attribute_takes_the_longest_wait_as_no_limit() {
    let pool = common::pool(4);
    let name = unique("huge-attribute");
    let key = LockKey::from_name(&name);
    let observer = common::observer().await;
    let holder = Foreign::holding(key).await;
    let call = tokio::spawn({
        let (pool, name) = (pool.clone(), name.clone());
        async move { with_the_longest_wait(&pool, &name).await }
    });
    assert_waiting(&observer, key, "the attribute's wait").await;
    assert!(!call.is_finished(), "waits while the key is held");
    holder.unlock(key).await;
    tokio::time::timeout(common::pg_locks::PATIENCE, call)
        .await
        .expect("granted once freed")
        .unwrap()
        .unwrap();
    common::assert_released_within_1s(&observer, key, "the body's end").await;
}
