//! A time limit (`wait = "5s"` / `acquire_timeout`) covers the whole acquisition,
//! getting a connection from the pool included: "wait at most that long, then
//! `Error::Timeout`".

mod common;

use std::time::Duration;

use common::unique;
use pglock::AdvisoryLock;

/// With the pool's connections all in use, the limit still ends the wait.
#[tokio::test]
async fn acquire_timeout_covers_getting_a_connection() {
    let pool = common::pool(1);
    let _busy = pool.get().await.unwrap(); // e.g. another task's lock or query
    let lock = AdvisoryLock::new(unique("timeout-pool").as_str());
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        lock.acquire_timeout(&pool, Duration::from_millis(300)),
    )
    .await
    .map(|result| result.map(drop));
    match r {
        Ok(Err(e)) if e.is_timeout() => {}
        Ok(other) => panic!("expected Timeout with no connection to be had, got {other:?}"),
        Err(_) => panic!("acquire_timeout(300ms) still pending after 3 s"),
    }
}
