//! Facts about the run, printed above the tables: what the numbers were measured on.

use std::fmt::Write as _;
use std::process::Command;

fn first_line_with(path: &str, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The date and time, UTC.
pub fn now() -> String {
    command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into())
}

pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Markdown bullet list of the machine, the database and the build.
pub async fn facts(pool: &deadpool_postgres::Pool, current_thread: bool) -> String {
    let mut s = String::new();
    let client = pool.get().await.expect("a connection for the facts");
    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .unwrap()
        .get(0);
    let throwaway = std::env::var("DATABASE_URL").map_or(true, |u| u.trim().is_empty());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let dir = env!("CARGO_MANIFEST_DIR");
    let commit = command("git", &["-C", dir, "rev-parse", "--short", "HEAD"]);
    let dirty =
        command("git", &["-C", dir, "status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let _ = writeln!(s, "- date: {}", now());
    let _ = writeln!(
        s,
        "- CPU: {} ({cores} cores available to this process)",
        first_line_with("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into())
    );
    let _ = writeln!(
        s,
        "- memory: {}; kernel {}",
        first_line_with("/proc/meminfo", "MemTotal").unwrap_or_else(|| "?".into()),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    );
    let _ = writeln!(
        s,
        "- database: {version}; {}, over TCP loopback",
        if throwaway {
            "throwaway cluster of `pglock::testdb` (fsync off)".to_string()
        } else {
            "`DATABASE_URL`".to_string()
        }
    );
    let _ = writeln!(
        s,
        "- build: {}; tokio {}; commit {}{}",
        if cfg!(debug_assertions) {
            "debug (numbers not meaningful)"
        } else {
            "optimized (bench profile)"
        },
        if current_thread {
            "current-thread runtime".to_string()
        } else {
            format!("multi-thread runtime, {cores} workers")
        },
        commit.unwrap_or_else(|| "?".into()),
        if dirty { " + uncommitted changes" } else { "" }
    );
    s
}
