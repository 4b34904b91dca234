//! Tasks of one process contending for one key through a Locker, for a while; the
//! fairness test runs two of these at once and compares their entries.
//!
//! `cargo run --example locker_contend -- <database-url> <lock-name> <tasks> <seconds> [unbounded]`
//! prints `entries N` and exits 0. With `unbounded`, the process keeps the key for
//! its own tasks without limit (no handoff limit, no handoff window): the control
//! of the fairness test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pglock::{AdvisoryLock, Locker};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, name, tasks, seconds, unbounded) =
        match args.as_slice() {
            [url, name, tasks, seconds] => (url, name, tasks, seconds, false),
            [url, name, tasks, seconds, flag] if flag == "unbounded" => {
                (url, name, tasks, seconds, true)
            }
            _ => return Err(
                "usage: locker_contend <database-url> <lock-name> <tasks> <seconds> [unbounded]"
                    .into(),
            ),
        };
    let (tasks, seconds): (usize, u64) = (tasks.parse()?, seconds.parse()?);
    let manager = deadpool_postgres::Manager::new(url.parse()?, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .build()?;
    let mut locker = Locker::builder(pool);
    if unbounded {
        locker = locker.handoff_limit(u32::MAX).handoff_window(Duration::MAX);
    }
    let locker = locker.build();
    let lock = AdvisoryLock::new(name.as_str());
    let entries = Arc::new(AtomicU64::new(0));
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..tasks)
        .map(|_| {
            let (locker, lock, entries) = (locker.clone(), lock.clone(), entries.clone());
            tokio::spawn(async move {
                while tokio::time::Instant::now() < until {
                    let remaining = until.saturating_duration_since(tokio::time::Instant::now());
                    match lock.acquire_timeout(&locker, remaining).await {
                        Ok(guard) => {
                            entries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_micros(200)).await;
                            drop(guard);
                        }
                        Err(e) if e.is_timeout() => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    println!("entries {}", entries.load(Ordering::Relaxed));
    Ok(())
}
