//! The public contract of DESIGN.md, compiled: every name it lists, with the
//! signatures it promises, and the auto traits it guarantees. (Behaviour is proved
//! by the live tests; this file fails to compile if a name or a promise goes away.)

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use pglock::{AdvisoryLock, Error, LockGuard, LockKey, Locker, LockerGuard};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>(_: &T) {}

#[test]
fn types_are_send_and_sync() {
    send_sync::<AdvisoryLock>();
    send_sync::<LockKey>();
    send_sync::<Locker>();
    send_sync::<Error>();
    send_sync::<LockGuard>();
    send_sync::<LockerGuard>();
}

#[test]
fn keys_convert_and_derive_what_the_contract_says() {
    fn derives<T: Clone + Copy + std::fmt::Debug + PartialEq + Eq + std::hash::Hash>() {}
    derives::<LockKey>();
    const GOLDLEADER: LockKey = LockKey::from_name("goldleader");
    assert_eq!(LockKey::from("goldleader"), GOLDLEADER);
    assert_eq!(LockKey::from(String::from("goldleader")), GOLDLEADER);
    assert_eq!(LockKey::from(42_i64), LockKey::BigInt(42));
    assert_eq!(LockKey::from((1, 2)), LockKey::Pair(1, 2));
    let lock = AdvisoryLock::new("goldleader");
    assert_eq!(lock.key(), GOLDLEADER);
    assert_eq!(
        AdvisoryLock::new(42_i64).shared().key(),
        LockKey::BigInt(42)
    );
}

/// Never run: only type-checked, so it needs no server.
#[allow(dead_code)]
async fn the_runtime_api_compiles(pool: Pool, tx: &tokio_postgres::Transaction<'_>, error: Error) {
    let lock = AdvisoryLock::new("goldleader");
    let locker = Locker::new(pool.clone());

    // Acquire methods take &Pool or &Locker; their futures are Send.
    let from_pool = lock.try_acquire(&pool);
    send(&from_pool);
    let guard: Result<LockGuard, Error> = from_pool.await;
    let guard = guard.unwrap();
    let _: &deadpool_postgres::Client = &guard;
    let lost = guard.lost();
    send(&lost);
    let _: bool = guard.is_lost();
    let _: Result<(), Error> = guard.release().await;
    let _: Result<LockGuard, Error> = lock.acquire(&pool).await;
    let _: Result<LockGuard, Error> = lock.acquire_timeout(&pool, Duration::from_secs(1)).await;

    let from_locker = lock.try_acquire(&locker);
    send(&from_locker);
    let guard: LockerGuard = from_locker.await.unwrap();
    let _: bool = guard.is_lost();
    let _lost: &dyn Future<Output = ()> = &guard.lost();
    let _: Result<(), Error> = guard.release().await;
    let _: Result<LockerGuard, Error> = lock.acquire(&locker).await;
    let _: Result<LockerGuard, Error> = lock.acquire_timeout(&locker, Duration::from_secs(1)).await;

    let _: Result<(), Error> = lock.acquire_xact(tx).await;
    let _: Result<(), Error> = lock.try_acquire_xact(tx).await;

    let _: (bool, bool, bool) = (error.is_busy(), error.is_timeout(), error.is_lost());
    match error {
        Error::Busy { .. }
        | Error::Timeout { .. }
        | Error::LockLost { .. }
        | Error::WouldDeadlock { .. }
        | Error::Deadlock { .. }
        | Error::Pool { .. }
        | Error::Db { .. } => {}
        _ => {}
    }
}
