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

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to backend `pid`, as the server's own host
/// would.
pub fn signal(pid: i32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A backend stopped with `SIGSTOP` until this is dropped (a failed assertion
/// included): a stopped backend would keep the test's cluster from shutting down.
pub struct Stopped(pub i32);

impl Stopped {
    pub fn backend(pid: i32) -> Stopped {
        signal(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}
