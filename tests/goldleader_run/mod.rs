//! A goldleader run on the test database as a user would start it (without a
//! terminal, so it prints plain lines), its stdout read as it comes: what
//! `tests/demo_faults.rs` and `tests/demo_lead.rs` drive and read.
#![allow(dead_code)] // each test binary uses a different part

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::common;

/// A goldleader run, started by [`Run::start`].
pub struct Run {
    child: tokio::process::Child,
    /// The leader's process id: names the run's entries table and connections.
    pub id: u32,
    /// The worker processes, by worker number.
    pub pids: Vec<u32>,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Run {
    /// Starts goldleader with `args` on the shared test database; returns once it
    /// has started its workers.
    pub async fn start(args: &[&str]) -> Run {
        Run::start_on(pglock::testdb::shared().url(), args).await
    }

    /// Starts goldleader with `args` on the database at `url`.
    pub async fn start_on(url: &str, args: &[&str]) -> Run {
        let mut child = tokio::process::Command::new(common::example_binary("goldleader"))
            .args(args)
            .env("DATABASE_URL", url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start goldleader");
        let id = child.id().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(read_lines(child.stdout.take().unwrap(), tx));
        let stderr = tokio::spawn(read_all(child.stderr.take().unwrap()));
        let mut run = Run {
            child,
            id,
            pids: Vec::new(),
            lines,
            seen: Vec::new(),
            stderr,
        };
        let started = run
            .line_where(|l| l.contains("workers started (pids ["))
            .await;
        let list = started.split_once("pids [").unwrap().1.split(']').next();
        run.pids = list
            .unwrap()
            .split(", ")
            .map(|pid| pid.parse().unwrap())
            .collect();
        run
    }

    /// Reads stdout until a line satisfies `wanted` (within 30 s); returns it.
    pub async fn line_where(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no such line in time:\n{}", self.seen.join("\n")))
                .unwrap_or_else(|| panic!("goldleader ended:\n{}", self.seen.join("\n")));
            self.seen.push(line.clone());
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Waits for goldleader to end; its exit status and whole stdout.
    pub async fn finish(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("goldleader ends in time")
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        let stdout = self.seen.join("\n");
        println!("{stdout}\n{}", self.stderr.await.unwrap());
        (status.code(), stdout)
    }
}

/// Sends `signal` (`KILL`, `STOP`, ...) to process `pid`, asserting it was delivered.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// The server's clock now (seconds since the epoch).
pub async fn server_now(observer: &tokio_postgres::Client) -> f64 {
    let row = observer
        .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
        .await
        .unwrap();
    row.get(0)
}

/// The number after `label` in the first line that starts with it (`lost: 5 (...)`);
/// `None` when no line does.
pub fn count(stdout: &str, label: &str) -> Option<u64> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The summary table's rows: each worker's cells (`worker entries tasks ... lost busy
/// skipped lock-conns`).
pub fn summary_rows(stdout: &str) -> Vec<Vec<String>> {
    let table = stdout.split_once(" worker entries").expect("a table").1;
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .take_while(|cells| cells.first().is_some_and(|c| c.parse::<u32>().is_ok()))
        .collect()
}

/// Who the plain progress lines show inside, in order: `worker 2`, `nobody`, ...
pub fn insides(stdout: &str) -> Vec<(usize, String)> {
    let lines = stdout.lines().enumerate();
    lines
        .filter(|(_, line)| line.starts_with('[') && line.contains(" s] inside: "))
        .map(|(n, line)| {
            let inside = line.split_once("inside: ").unwrap().1;
            (n, inside.split(" | ").next().unwrap().to_string())
        })
        .collect()
}

async fn read_lines(pipe: impl AsyncRead + Unpin, tx: mpsc::UnboundedSender<String>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = tx.send(line);
    }
}

async fn read_all(pipe: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(pipe).lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        all += &line;
        all += "\n";
    }
    all
}
