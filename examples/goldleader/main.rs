//! goldleader, pglock's demo: worker processes take turns in a critical section
//! guarded by `#[advisory_locked(key = "goldleader", ...)]`, with a live view, and
//! a summary whose overlap count the database checks.
//!
//! `cargo run --example goldleader -- --help`
//!
//! The leader (this process without `--worker-id`) finds the database (or starts a
//! throwaway one), creates the run's entries table, starts the workers (copies of
//! itself), shows what they report, tells them to stop when the time is up (by
//! closing their stdin), and prints the summary. Exit status: 0 when no two entries
//! overlapped, 1 when some did (or a worker could not start, or failed with an
//! error of its own), 130 after Ctrl-C. Faults the run survives (lost locks, a
//! worker killed from outside) are counted and shown, not failures.

mod cli;
mod entries;
mod event;
mod fault;
mod fleet;
mod server;
mod summary;
mod tally;
mod view;
mod worker;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use cli::{Cli, Mode};
use fault::AppError;
use fleet::{Fleet, Report};
use tally::Board;
use view::View;

/// How often the view is redrawn, and connections are counted.
const TICK: Duration = Duration::from_millis(100);
/// How long workers get to finish their entry once told to stop.
const GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let outcome = match (cli.worker_id, cli.run) {
        (Some(id), Some(run)) => runtime
            .block_on(worker::run(&cli, id, run))
            .map(|()| ExitCode::SUCCESS),
        _ => runtime.block_on(lead(&cli)),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("goldleader: {}", fault::describe(&*e));
        ExitCode::FAILURE
    })
}

/// The leader: database, workers, live view, summary.
async fn lead(cli: &Cli) -> Result<ExitCode, AppError> {
    let mut interrupts = signal(SignalKind::interrupt())?;
    let db = database(cli)?;
    let pool = db.pool(2);
    let client = pool
        .get()
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    let run = std::process::id();
    entries::create(&client, run).await?;

    let mut fleet = Fleet::start(cli, db.url(), run)?;
    let mut view = View::new(cli);
    view.say(&format!(
        "{} workers started (pids {:?}), {}, for {} s",
        cli.workers,
        fleet.pids(),
        cli.describe(),
        cli.duration
    ));
    let mut board = Board::new(cli.workers, cli.mode != Mode::None);
    let started = Instant::now();
    let deadline = tokio::time::sleep(Duration::from_secs(cli.duration));
    tokio::pin!(deadline);
    // Armed when the workers are told to stop: those still running then are killed.
    let grace = tokio::time::sleep(Duration::MAX);
    tokio::pin!(grace);
    let mut tick = tokio::time::interval(TICK);
    let (mut stopping, mut interrupted, mut killed) = (false, false, false);
    loop {
        tokio::select! {
            report = fleet.reports.recv() => match report {
                Some(Report::Event(w, event)) => board.apply(w, event),
                Some(Report::Log(w, line)) => view.say(&format!("worker {w}: {line}")),
                Some(Report::Exited(w, status)) => {
                    board.exited(w, &status);
                    if let Some(ending) = board.workers[w as usize].life.ending() {
                        view.say(&format!("worker {w} {ending}"));
                    }
                }
                None => break, // every worker exited, and all they said is read
            },
            _ = tick.tick() => {
                board.saw_sessions(&server::sessions(&client, run, cli.workers).await?);
                view.render(&board, started.elapsed());
            }
            _ = &mut deadline, if !stopping => {
                stopping = true;
                fleet.stop();
                grace.as_mut().reset(Instant::now() + GRACE);
            }
            _ = &mut grace, if !killed => {
                killed = true;
                fleet.kill();
            }
            _ = interrupts.recv() => {
                if interrupted {
                    fleet.kill(); // a second Ctrl-C: no more waiting
                }
                if !stopping {
                    grace.as_mut().reset(Instant::now() + GRACE);
                }
                (stopping, interrupted) = (true, true);
                fleet.stop();
                view.say("Ctrl-C: stopping the workers");
            }
        }
    }
    let ran = started.elapsed();
    view.finish();
    let summary = summary::summarize(&client, cli, run, &board, ran).await?;
    entries::drop(&client, run).await?;
    print!("{}", summary.text);
    let failed = board.workers.iter().any(|t| t.life.fails_the_run());
    Ok(if interrupted {
        println!("interrupted");
        ExitCode::from(130)
    } else if summary.overlaps > 0 || summary.leadership_faults > 0 || failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `--database-url` (or `DATABASE_URL`), else a throwaway cluster.
fn database(cli: &Cli) -> Result<pglock::testdb::TestDb, AppError> {
    // An empty DATABASE_URL means none, as for the tests.
    if let Some(url) = cli.database_url.as_deref().filter(|u| !u.trim().is_empty()) {
        return Ok(pglock::testdb::TestDb::from_url(url.trim())?);
    }
    println!("no DATABASE_URL: starting a throwaway PostgreSQL cluster");
    let db = pglock::testdb::shared();
    println!("database: {} (removed when goldleader exits)", db.url());
    Ok(db.clone())
}
