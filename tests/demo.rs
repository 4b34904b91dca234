//! The goldleader demo, run as a user would (without a terminal, so it prints plain
//! lines): it exits 0 with `overlaps: 0` in each mode and through a Locker, finds
//! the overlaps when there is no lock (and exits 1), stops cleanly on Ctrl-C and
//! removes its throwaway cluster, and its `--help` explains every option.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// The runs on the shared database take turns: they all use the lock "goldleader",
/// and one run's workers would count another's as Busy.
static SHARED_DATABASE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn goldleader() -> tokio::process::Command {
    let mut command = tokio::process::Command::new(common::example_binary("goldleader"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs goldleader on the shared test database with `args`; its exit status and
/// stdout.
async fn run(args: &[&str]) -> (Option<i32>, String) {
    let _turn = SHARED_DATABASE.lock().await;
    let output: Output = tokio::time::timeout(
        Duration::from_secs(30),
        goldleader()
            .args(args)
            .env("DATABASE_URL", pglock::testdb::shared().url())
            .output(),
    )
    .await
    .expect("goldleader ends in time")
    .expect("run goldleader");
    let stdout = String::from_utf8(output.stdout).unwrap();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    (output.status.code(), stdout)
}

/// The summary's row of each worker: (entries, busy, skipped, lock connections).
fn rows(stdout: &str) -> Vec<(u64, u64, u64, u64)> {
    let table = stdout
        .split_once(" worker entries")
        .expect("a summary table")
        .1;
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .take_while(|cells| cells.first().is_some_and(|c| c.parse::<u32>().is_ok()))
        .map(|cells| {
            let n = |i: usize| cells[i].parse::<u64>().unwrap();
            let last = cells.len() - 1;
            (n(1), n(last - 2), n(last - 1), n(last))
        })
        .collect()
}

fn total(rows: &[(u64, u64, u64, u64)], column: fn(&(u64, u64, u64, u64)) -> u64) -> u64 {
    rows.iter().map(column).sum()
}

#[tokio::test]
async fn three_workers_take_turns_with_no_overlap() {
    let (code, out) = run(&["--workers", "3", "--duration", "3"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("overlaps: 0 "));
    assert!(out.contains("[  1 s] inside: "), "plain progress lines");
    let rows = rows(&out);
    assert_eq!(rows.len(), 3);
    for (entries, busy, _, connections) in rows {
        assert!(entries > 0, "every worker got in");
        assert_eq!(busy, 0, "waiting never sees Busy");
        assert_eq!(connections, 1, "one task, one lock session");
    }
}

#[tokio::test]
async fn try_mode_counts_busy() {
    let (code, out) = run(&["--workers", "3", "--duration", "3", "--mode", "try"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("overlaps: 0 "));
    let rows = rows(&out);
    assert!(total(&rows, |r| r.0) > 0);
    assert!(total(&rows, |r| r.1) > 0, "tries found the lock busy");
}

#[tokio::test]
async fn skip_mode_counts_skips() {
    let (code, out) = run(&["--workers", "3", "--duration", "2", "--mode", "skip"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("overlaps: 0 "));
    let rows = rows(&out);
    assert!(total(&rows, |r| r.0) > 0);
    assert!(total(&rows, |r| r.2) > 0, "rounds were skipped");
}

#[tokio::test]
async fn tasks_through_a_locker_take_turns_on_few_connections() {
    let args = ["--workers", "3", "--duration", "3", "--tasks", "4"];
    let (code, out) = run(&args).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("lock taken from a Locker"));
    assert!(out.contains("overlaps: 0 "));
    let rows = rows(&out);
    assert!(total(&rows, |r| r.0) > 0);
    assert!(
        out.lines().any(|l| l.contains(" 4/4 ")),
        "all 4 tasks of a worker got in"
    );
    for (_, _, _, connections) in rows {
        // The Locker's budget: its lock sessions (one per key here; 2 at most) and
        // one connection for the key it waits for in the server.
        assert!(
            (1..=3).contains(&connections),
            "4 tasks on {connections} connections"
        );
    }
}

#[tokio::test]
async fn control_without_the_lock_overlaps_are_found_and_it_exits_1() {
    let (code, out) = run(&["--workers", "3", "--duration", "2", "--mode", "none"]).await;
    assert_eq!(code, Some(1));
    let overlaps: u64 = out
        .split_once("overlaps: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("an overlaps line");
    assert!(overlaps > 0, "the check finds what the lock would prevent");
    assert!(out.contains(" overlaps  worker "), "and shows some");
}

#[tokio::test]
async fn help_explains_every_option() {
    let output = goldleader().arg("--help").output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for option in [
        "--workers",
        "--duration",
        "--mode",
        "--tasks",
        "--hold-ms",
        "--database-url",
        "DATABASE_URL",
        "RUST_LOG",
    ] {
        assert!(help.contains(option), "--help mentions {option}:\n{help}");
    }
    for mode in ["try:", "wait:", "skip:", "none:"] {
        assert!(help.contains(mode), "--help explains --mode {mode}\n{help}");
    }
    assert!(
        !help.contains("--worker-id"),
        "the workers' flags stay hidden"
    );
}

/// Ctrl-C (SIGINT to the leader alone, as `kill -INT` would): the workers finish,
/// the summary is printed, goldleader exits 130, and its throwaway cluster is gone.
#[tokio::test]
async fn ctrl_c_stops_the_workers_and_removes_the_cluster() {
    let mut child = goldleader()
        .args(["--workers", "2", "--duration", "30"])
        .env_remove("DATABASE_URL")
        .spawn()
        .unwrap();
    let leader = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut pids = Vec::new();
    let mut port = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(url) = line.strip_prefix("database: ") {
            port = url.split(['/', ':', ' ']).nth(4).map(str::to_string);
        }
        if let Some((_, list)) = line.split_once("pids [") {
            pids = list
                .split(']')
                .next()
                .unwrap()
                .split(", ")
                .map(String::from)
                .collect();
        }
        let progress = line.starts_with("[  1 s]");
        seen.push(line);
        if progress {
            break;
        }
    }
    let port: u16 = port
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(pids.len(), 2, "{seen:?}");
    let kill = std::process::Command::new("kill")
        .args(["-INT", &leader.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
    {
        rest += &line;
        rest += "\n";
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("goldleader exits soon after Ctrl-C")
        .unwrap();
    println!("{}\n{rest}", seen.join("\n"));
    assert_eq!(status.code(), Some(130));
    assert!(rest.contains("overlaps: 0 "), "the summary of what ran");
    assert!(rest.contains("interrupted"));
    for pid in &pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "worker {pid} is gone"
        );
    }
    // The watchdog stops the server and removes its directory once the leader is gone.
    let prefix = format!("pglock-testdb-{leader}-");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let dirs = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .count();
        if !listening && dirs == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster is still there: listening {listening}, directories {dirs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
