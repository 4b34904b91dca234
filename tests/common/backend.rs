//! One backend as the server sees it: its pid, and what it runs.

use std::time::Duration;

use tokio_postgres::Client;

/// The backend pid of `client`'s session.
pub async fn pid_of(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// What backend `pid` runs now, if it is running a statement (read by `observer`,
/// on the default search_path).
pub async fn running(observer: &Client, pid: i32) -> Option<String> {
    observer
        .query_opt(
            "SELECT query FROM pg_stat_activity WHERE pid = $1 AND state = 'active'",
            &[&pid],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

/// Polls until backend `pid` is seen running `query`; fails the test otherwise.
pub async fn assert_running(observer: &Client, pid: i32, query: &str) {
    for _ in 0..500 {
        if running(observer, pid).await.as_deref() == Some(query) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend {pid} was never seen running {query}");
}
