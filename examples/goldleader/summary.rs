//! The summary table, from the entries the database recorded (and the lost, Busy
//! and skip counts, connections and exits the leader saw), ending with the overlap
//! check.

use std::fmt::Write;
use std::time::Duration;

use deadpool_postgres::Client;

use crate::cli::{Cli, Mode};
use crate::entries::{self, Overlap, WorkerStats};
use crate::tally::{human, Board};

pub struct Summary {
    pub text: String,
    pub overlaps: i64,
    /// `--mode lead`: terms that overlapped plus fences out of time order.
    pub leadership_faults: i64,
}

/// Reads the run's entries from the database and writes the summary.
pub async fn summarize(
    db: &Client,
    cli: &Cli,
    run: u32,
    board: &Board,
    ran: Duration,
) -> Result<Summary, tokio_postgres::Error> {
    let stats = entries::stats(db, run).await?;
    let unfinished = entries::unfinished(db, run).await?;
    let (overlaps, examples) = entries::overlaps(db, run).await?;
    let mut text = table(cli, board, ran, &stats);
    faults(&mut text, board, unfinished);
    overlap_check(&mut text, cli, &stats, overlaps, &examples);
    let mut leadership_faults = 0;
    if cli.mode == Mode::Lead {
        let terms = entries::terms(db, run).await?;
        terms_check(&mut text, &terms);
        leadership_faults = terms.overlaps + terms.inversions;
    }
    Ok(Summary {
        text,
        overlaps,
        leadership_faults,
    })
}

/// The table's columns, each as wide as its heading (at least 7).
const COLUMNS: [&str; 10] = [
    "worker",
    "entries",
    "tasks",
    "wait p50",
    "wait p99",
    "held",
    "lost",
    "busy",
    "skipped",
    "lock conns",
];

/// A line of the table: each cell right-aligned under its heading.
fn row(cells: [String; 10]) -> String {
    let cells: Vec<String> = cells
        .iter()
        .zip(COLUMNS)
        .map(|(cell, heading)| format!("{cell:>width$}", width = heading.len().max(7)))
        .collect();
    cells.join(" ").trim_end().to_string()
}

fn table(cli: &Cli, board: &Board, ran: Duration, stats: &[(u32, WorkerStats)]) -> String {
    let us = |n: i64| human(Duration::from_micros(n.max(0) as u64));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "goldleader: {} worker(s) x {} task(s), {}, {:.1} s\n",
        cli.workers,
        cli.tasks_per_worker(),
        cli.describe(),
        ran.as_secs_f64()
    );
    let _ = writeln!(out, "{}", row(COLUMNS.map(String::from)));
    let mut total = WorkerStats::default();
    for (w, tally) in board.workers.iter().enumerate() {
        let s = stats
            .iter()
            .find(|(worker, _)| *worker as usize == w)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        total.entries += s.entries;
        total.held_us += s.held_us;
        // No entries, no waits to speak of.
        let waited = |n| if s.entries > 0 { us(n) } else { "-".into() };
        let line = row([
            w.to_string(),
            s.entries.to_string(),
            format!("{}/{}", s.tasks, cli.tasks_per_worker()),
            waited(s.wait_p50_us),
            waited(s.wait_p99_us),
            us(s.held_us),
            tally.lost.to_string(),
            tally.busy.to_string(),
            tally.skipped.to_string(),
            tally.connections.to_string(),
        ]);
        let _ = writeln!(out, "{line}");
    }
    let lost: u64 = board.workers.iter().map(|t| t.lost).sum();
    let busy: u64 = board.workers.iter().map(|t| t.busy).sum();
    let skipped: u64 = board.workers.iter().map(|t| t.skipped).sum();
    let (all, blank) = ("all".to_string(), String::new);
    let line = row([
        all,
        total.entries.to_string(),
        blank(),
        blank(),
        blank(),
        us(total.held_us),
        lost.to_string(),
        busy.to_string(),
        skipped.to_string(),
        blank(),
    ]);
    let _ = writeln!(out, "{line}\n");
    out
}

/// What the run survived: lost locks, entries they cut short, workers gone.
fn faults(out: &mut String, board: &Board, unfinished: i64) {
    let lost: u64 = board.workers.iter().map(|t| t.lost).sum();
    if lost > 0 {
        let _ = writeln!(
            out,
            "lost: {lost} (locks lost while wanted or held; each worker went on with a fresh round)"
        );
    }
    if unfinished > 0 {
        let _ = writeln!(
            out,
            "unfinished: {unfinished} (entries whose end was not recorded: the lock was lost,\n \
             or the worker died, inside; not counted above)"
        );
    }
    for ending in board.endings() {
        let _ = writeln!(out, "{ending}");
    }
    if lost > 0 || unfinished > 0 || !board.endings().is_empty() {
        let _ = writeln!(out);
    }
}

fn overlap_check(
    out: &mut String,
    cli: &Cli,
    stats: &[(u32, WorkerStats)],
    overlaps: i64,
    examples: &[Overlap],
) {
    if cli.tasks.is_some() && cli.mode == Mode::Wait {
        let _ = writeln!(
            out,
            "(a Locker hands the lock to the next task of its own process up to {} times in\n \
             a row, within {:?} of the server granting it, then gives it back to the\n \
             server's queue, where the other workers come first)\n",
            pglock::DEFAULT_HANDOFF_LIMIT,
            pglock::DEFAULT_HANDOFF_WINDOW
        );
    }
    let entries: i64 = stats.iter().map(|(_, s)| s.entries).sum();
    let _ = writeln!(
        out,
        "overlaps: {overlaps} (pairs among the {entries} entries whose [start, end) intersect)"
    );
    for o in examples {
        let _ = writeln!(out, "  {}  overlaps  {}", o.first, o.second);
    }
}

/// `--mode lead`: the terms, whether two overlapped, and whether fences kept time order.
fn terms_check(out: &mut String, terms: &entries::Terms) {
    let _ = writeln!(
        out,
        "leaders: {} (different workers that led, over {} terms)",
        terms.leaders, terms.terms
    );
    let _ = writeln!(
        out,
        "term overlaps: {} (pairs of terms whose entries' spans intersect)",
        terms.overlaps
    );
    let _ = writeln!(
        out,
        "fence inversions: {} (pairs of entries where the later has the smaller fence)",
        terms.inversions
    );
}
