//! Helpers: running async code, querying, and watching processes and directories.

use std::path::Path;
use std::time::{Duration, Instant};

use pglock_runtime::testdb::TestDb;

/// Runs `fut` on a fresh single-threaded runtime (each test has its own, as in real suites).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

/// The first column of the first row of `sql`, as text, on a new connection.
pub async fn query_text(db: &TestDb, sql: &str) -> String {
    let client = db.connect().await.expect("connect to the test database");
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Whether `pid` is a live process (a zombie is not: it only waits to be reaped).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The live processes whose command line mentions `path` (a watchdog, a postmaster).
pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id() && is_alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// Waits up to 10 s until the postmaster `pid` is gone, the cluster directory `root` is
/// removed and no process mentions it any more; panics saying what is left otherwise.
pub fn assert_cleaned_up(root: &Path, pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = is_alive(pid);
        let exists = root.exists();
        let procs = processes_mentioning(root);
        if !alive && !exists && procs.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "not cleaned up after 10 s: postmaster {pid} alive: {alive}, {} exists: {exists}, \
                 processes mentioning it: {procs:?}",
                root.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
