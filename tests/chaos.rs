//! Panics and cancellation under load: 64 tasks over 10 keys on a pool of 16 for
//! 10 s, through a Pool and through a Locker, with random panics in bodies and
//! random drops of futures while waiting and while holding. Afterwards no advisory
//! lock is left, every pooled connection is usable and clean, no task is stuck, and
//! the only errors seen were Busy, Timeout, a try finding no free connection, and
//! the injected panics.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{PoolError, TimeoutType};
use pglock::{AdvisoryLock, Error, LockSource, Locker};
use tokio::time::Instant;

const TASKS: usize = 64;
const KEYS: u64 = 10;
const RUN_FOR: Duration = Duration::from_secs(10);

/// xorshift64*: deterministic per task, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

type Outcomes = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(outcomes: &Outcomes, what: impl Into<String>) {
    *outcomes.lock().unwrap().entry(what.into()).or_default() += 1;
}

/// One task's life: take random keys in random ways, misbehave at random.
async fn churn<S>(source: Arc<S>, prefix: String, seed: u64, outcomes: Outcomes)
where
    S: LockSource + Send + Sync + 'static,
    S::Guard: Send + 'static,
{
    let mut rng = Rng(seed | 1);
    let until = Instant::now() + RUN_FOR;
    while Instant::now() < until {
        let lock = AdvisoryLock::new(format!("{prefix}:{}", rng.below(KEYS)));
        let lock = if rng.below(4) == 0 {
            lock.shared()
        } else {
            lock
        };
        let how = rng.below(4);
        let attempt = match how {
            0 => lock.try_acquire(&*source).await,
            1 => {
                lock.acquire_timeout(&*source, Duration::from_millis(rng.below(30)))
                    .await
            }
            2 => match tokio::time::timeout(
                Duration::from_millis(rng.below(30)),
                lock.acquire(&*source),
            )
            .await
            {
                Ok(attempt) => attempt,
                Err(_) => {
                    count(&outcomes, "dropped while waiting");
                    continue;
                }
            },
            _ => lock.acquire(&*source).await,
        };
        let guard = match attempt {
            Ok(guard) => guard,
            Err(e @ (Error::Busy { .. } | Error::Timeout { .. })) => {
                count(&outcomes, if e.is_busy() { "busy" } else { "timeout" });
                continue;
            }
            // A try takes a connection only if one is free now (guarantee 10): with
            // 64 tasks on 16 connections, that is often not the case.
            Err(Error::Pool {
                source: PoolError::Timeout(TimeoutType::Wait),
                ..
            }) if how == 0 => {
                count(&outcomes, "try found no free connection");
                continue;
            }
            Err(e) => {
                count(&outcomes, format!("UNEXPECTED: {e:?}"));
                continue;
            }
        };
        let hold = Duration::from_millis(rng.below(5));
        match rng.below(20) {
            0 => {
                // The body panics while holding.
                let body = tokio::spawn(async move {
                    let _guard = guard;
                    tokio::time::sleep(hold).await;
                    panic!("injected panic");
                });
                assert!(body.await.unwrap_err().is_panic());
                count(&outcomes, "panicked while holding");
            }
            1 => {
                // The body's future is dropped while holding.
                let body = async move {
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                };
                assert!(tokio::time::timeout(hold, body).await.is_err());
                count(&outcomes, "dropped while holding");
            }
            _ => {
                tokio::time::sleep(hold).await;
                drop(guard);
                count(&outcomes, "held");
            }
        }
    }
}

/// Keeps the injected panics out of the test output (any other panic still prints).
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"injected panic") {
                default(info);
            }
        }));
    });
}

async fn run_chaos<S>(source: Arc<S>, prefix: &str) -> BTreeMap<String, u64>
where
    S: LockSource + Send + Sync + 'static,
    S::Guard: Send + 'static,
{
    quiet_injected_panics();
    let outcomes = Outcomes::default();
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            tokio::spawn(churn(
                source.clone(),
                prefix.to_string(),
                0x9e37 + i as u64 * 7919,
                outcomes.clone(),
            ))
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(RUN_FOR + Duration::from_secs(10), task)
            .await
            .expect("no task is stuck")
            .expect("no task failed");
    }
    let outcomes = outcomes.lock().unwrap().clone();
    println!("{prefix}: {outcomes:?}");
    assert!(
        !outcomes.keys().any(|k| k.starts_with("UNEXPECTED")),
        "only Busy, Timeout, tries without a free connection and injected failures: {outcomes:?}"
    );
    for expected in [
        "held",
        "busy",
        "panicked while holding",
        "dropped while holding",
        "dropped while waiting",
    ] {
        assert!(
            outcomes.contains_key(expected),
            "{expected} happened: {outcomes:?}"
        );
    }
    outcomes
}

async fn assert_clean(pool: &deadpool_postgres::Pool, prefix: &str) {
    let observer = common::observer().await;
    for k in 0..KEYS {
        let key = AdvisoryLock::new(format!("{prefix}:{k}")).key();
        assert_eq!(
            common::gone_within(&observer, key, Duration::from_secs(1)).await,
            vec![],
            "key {k} left behind"
        );
    }
    // Every connection the pool can give is alive and holds nothing.
    let clients: Vec<_> = futures_join(pool, 16).await;
    for client in &clients {
        assert_eq!(common::advisory_locks_of(client).await, 0);
    }
}

async fn futures_join(pool: &deadpool_postgres::Pool, n: usize) -> Vec<deadpool_postgres::Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let client = tokio::time::timeout(Duration::from_secs(5), pool.get())
            .await
            .expect("the pool is not exhausted by leaked connections")
            .unwrap();
        client.query_one("SELECT 1", &[]).await.expect("usable");
        clients.push(client);
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_through_a_pool_leaves_nothing_behind() {
    let pool = common::pool(16);
    let prefix = common::unique("chaos-pool");
    run_chaos(Arc::new(pool.clone()), &prefix).await;
    assert_clean(&pool, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_through_a_locker_leaves_nothing_behind() {
    let pool = common::pool(16);
    let locker = Locker::new(pool.clone());
    let prefix = common::unique("chaos-locker");
    run_chaos(Arc::new(locker.clone()), &prefix).await;
    assert_eq!(locker.keys_in_use(), 0, "the Locker forgot every key");
    drop(locker);
    assert_clean(&pool, &prefix).await;
}
