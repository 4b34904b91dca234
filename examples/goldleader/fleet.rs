//! The worker processes: copies of this program, started with `--worker-id`. Their
//! stdout lines (events) and stderr lines (logs) come back as [`Report`]s, and so
//! does each one's exit, after its last line; closing their stdin tells them to stop.

use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cli::Cli;
use crate::event::Event;

/// What a worker said, or that it is gone.
pub enum Report {
    Event(u32, Event),
    Log(u32, String),
    /// The worker exited (or could not be waited for); nothing more comes from it.
    Exited(u32, std::io::Result<ExitStatus>),
}

/// One running worker, as the leader holds it.
struct Handle {
    pid: Option<u32>,
    stdin: Option<ChildStdin>,
    kill: Option<oneshot::Sender<()>>,
}

pub struct Fleet {
    workers: Vec<Handle>,
    /// Ends once every worker has exited and its output is read.
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
            let output = [
                forward(child.stdout.take(), tx.clone(), move |line| {
                    Event::parse(&line).map(|e| Report::Event(id, e))
                }),
                forward(child.stderr.take(), tx.clone(), move |line| {
                    Some(Report::Log(id, line))
                }),
            ];
            let (kill, killed) = oneshot::channel();
            workers.push(Handle {
                pid: child.id(),
                stdin: child.stdin.take(),
                kill: Some(kill),
            });
            tokio::spawn(monitor(id, child, output, killed, tx.clone()));
        }
        Ok(Fleet { workers, reports })
    }

    /// The workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.pid).collect()
    }

    /// Tells every worker to stop: they finish the entry they are in, and exit.
    pub fn stop(&mut self) {
        for worker in &mut self.workers {
            worker.stdin.take();
        }
    }

    /// Kills every worker still running, now.
    pub fn kill(&mut self) {
        for worker in &mut self.workers {
            if let Some(kill) = worker.kill.take() {
                let _ = kill.send(());
            }
        }
    }
}

/// Waits for worker `id` to exit (killing it when told to, or when the fleet is
/// dropped), then for the rest of its output, and reports the exit.
async fn monitor(
    id: u32,
    mut child: Child,
    output: [Option<JoinHandle<()>>; 2],
    killed: oneshot::Receiver<()>,
    tx: mpsc::UnboundedSender<Report>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = killed => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    for pipe in output.into_iter().flatten() {
        let _ = pipe.await;
    }
    let _ = tx.send(Report::Exited(id, status));
}

/// Sends what `parse` makes of each line of `pipe` to `tx`, until the pipe closes.
fn forward(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    tx: mpsc::UnboundedSender<Report>,
    parse: impl Fn(String) -> Option<Report> + Send + 'static,
) -> Option<JoinHandle<()>> {
    let pipe = pipe?;
    Some(tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(report) = parse(line) {
                let _ = tx.send(report);
            }
        }
    }))
}
