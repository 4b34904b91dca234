//! `pglock::holders` shows who holds and who waits for a key, and the statement of a
//! waiter names the lock and its call site, so `pg_stat_activity` tells who waits
//! on what.

mod common;

use std::time::Duration;

use pglock::{holders, AdvisoryLock, CallSite, LockMode};

#[tokio::test]
async fn holders_lists_the_holder_then_the_waiter_with_its_call_site() {
    static SITE: CallSite = CallSite {
        function: "ship_order",
        file: "src/orders.rs",
        line: 42,
    };
    let name = common::unique("holders");
    let (holding, waiting) = (
        common::named_pool(2, "holding-app"),
        common::named_pool(2, "waiting-app"),
    );
    let held = AdvisoryLock::new(name.as_str())
        .try_acquire(&holding)
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let name = name.clone();
        async move {
            AdvisoryLock::new(name.as_str())
                .at(&SITE)
                .acquire(&waiting)
                .await
                .map(drop)
        }
    });
    let observer = common::observer().await;
    common::waiter_within(&observer, held.lock().key(), Duration::from_secs(1))
        .await
        .unwrap();
    let rows = common::lock_rows(&observer, held.lock().key()).await;
    let holder_pid = rows.iter().find(|r| r.granted).unwrap().pid;

    let seen = holders(&common::pool(1), name.as_str()).await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let (first, second) = (&seen[0], &seen[1]);
    assert!(first.granted && !second.granted);
    assert_eq!(first.pid, holder_pid);
    assert_eq!(first.application_name, "holding-app");
    assert_eq!(second.application_name, "waiting-app");
    assert_eq!(first.mode, LockMode::Exclusive);
    assert_eq!(first.client_addr.as_deref(), Some("127.0.0.1"));
    assert!(second.state_since.is_some());
    // The waiting statement names its call site (a name formatted at run time
    // stays out of the statement text: pg_locks shows the key).
    let query = second.query.as_deref().unwrap();
    assert!(
        query.ends_with("/* pglock: in ship_order at src/orders.rs:42 */"),
        "{query}"
    );
    // The holder took it through the runtime API: its statement names this file.
    let query = first.query.as_deref().unwrap();
    assert!(query.contains("/* pglock: at tests/holders.rs:"), "{query}");

    held.release().await.unwrap();
    waiter.await.unwrap().unwrap();
    assert_eq!(
        holders(&common::pool(1), name.as_str()).await.unwrap(),
        vec![]
    );
}
