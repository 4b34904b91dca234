//! The worker processes: copies of this program, started with `--worker-id`. Their
//! stdout lines (events) and stderr lines (logs) come back as [`Report`]s; closing
//! their stdin tells them to stop.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::cli::Cli;
use crate::event::Event;

/// What a worker said.
pub enum Report {
    Event(u32, Event),
    Log(u32, String),
}

pub struct Fleet {
    workers: Vec<(Child, Option<ChildStdin>)>,
    /// Ends once every worker has closed its stdout and stderr.
    pub reports: mpsc::UnboundedReceiver<Report>,
}

impl Fleet {
    /// Starts `cli.workers` workers of run `run` on the database at `url`.
    pub fn start(cli: &Cli, url: &str, run: u32) -> std::io::Result<Fleet> {
        let exe = std::env::current_exe()?;
        let (tx, reports) = mpsc::unbounded_channel();
        let mut workers = Vec::new();
        for id in 0..cli.workers {
            let mut child = Command::new(&exe)
                .args(["--worker-id", &id.to_string(), "--run", &run.to_string()])
                .args(["--mode", cli.mode.name()])
                .args(["--hold-ms", &cli.hold_ms.to_string()])
                .args(cli.tasks.map(|t| format!("--tasks={t}")))
                // In the environment rather than the arguments: `ps` shows arguments.
                .env("DATABASE_URL", url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdin = child.stdin.take();
            forward(child.stdout.take(), tx.clone(), move |line| {
                Event::parse(&line).map(|e| Report::Event(id, e))
            });
            forward(child.stderr.take(), tx.clone(), move |line| {
                Some(Report::Log(id, line))
            });
            workers.push((child, stdin));
        }
        Ok(Fleet { workers, reports })
    }

    /// The workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers
            .iter()
            .filter_map(|(child, _)| child.id())
            .collect()
    }

    /// Tells every worker to stop: they finish the entry they are in, and exit.
    pub fn stop(&mut self) {
        for (_, stdin) in &mut self.workers {
            stdin.take();
        }
    }

    /// Kills every worker now.
    pub fn kill(&mut self) {
        for (child, _) in &mut self.workers {
            let _ = child.start_kill();
        }
    }

    /// Waits for every worker to exit, killing those still running after `grace`.
    pub async fn wait(mut self, grace: Duration) -> Vec<std::io::Result<ExitStatus>> {
        self.stop();
        let mut statuses = Vec::new();
        for (child, _) in &mut self.workers {
            let status = match tokio::time::timeout(grace, child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            statuses.push(status);
        }
        statuses
    }
}

/// Sends what `parse` makes of each line of `pipe` to `tx`.
fn forward(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    tx: mpsc::UnboundedSender<Report>,
    parse: impl Fn(String) -> Option<Report> + Send + 'static,
) {
    let Some(pipe) = pipe else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(report) = parse(line) {
                let _ = tx.send(report);
            }
        }
    });
}
