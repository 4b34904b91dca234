//! One instance of a fleet under `Leadership`: campaigns for a lock and, while it
//! leads, records its term in a table, so that a test running several copies can
//! check, by the database, that no two terms overlapped and that fences increase.
//!
//! `cargo run --example leader -- <database-url> <table> --lock NAME`
//! prints `ready` once connected, leads whenever elected, and shuts down (stepping
//! down at once) when a line arrives on stdin or stdin closes. `<table>` is
//! `(fence int8 PRIMARY KEY, pid int, started int8, ended int8)`, times in
//! microseconds since the Unix epoch by this machine's clock: a term's row is
//! inserted when its body starts, and `ended` is set from the moment the body was
//! dropped (lost, or stepped down).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use deadpool_postgres::Pool;
use pglock::{AdvisoryLock, Leadership, Term};
use tokio::sync::mpsc;

/// Campaigns for a lock and records each term.
#[derive(Parser)]
struct Cli {
    /// Where the lock and the table live.
    database_url: String,
    /// The terms table.
    table: String,
    /// The lock's name.
    #[arg(long)]
    lock: String,
    /// The campaign interval, in milliseconds.
    #[arg(long, default_value_t = 500)]
    campaign_every_ms: u64,
    /// The loss bound for a server that stops answering, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    keepalive_ms: u64,
}

type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Microseconds since the Unix epoch, now.
fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since.as_micros().try_into().unwrap_or(i64::MAX)
}

/// A SQL identifier, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Sends the moment it is dropped: when the body of a term is dropped, its term ended.
struct EndOfTerm {
    fence: u64,
    ends: mpsc::UnboundedSender<(u64, i64)>,
}

impl Drop for EndOfTerm {
    fn drop(&mut self) {
        let _ = self.ends.send((self.fence, now_us()));
    }
}

/// Writes each term's end as it comes.
async fn record_ends(pool: Pool, table: String, mut ends: mpsc::UnboundedReceiver<(u64, i64)>) {
    let sql = format!("UPDATE {} SET ended = $2 WHERE fence = $1", quoted(&table));
    while let Some((fence, ended)) = ends.recv().await {
        let written = async {
            let fence = i64::try_from(fence)?;
            pool.get().await?.execute(&sql, &[&fence, &ended]).await?;
            Ok::<(), AppError>(())
        };
        if let Err(error) = written.await {
            eprintln!("could not record the end of term {fence}: {error}");
        }
    }
}

/// The body of a term: record its start, then lead until dropped.
async fn lead(
    term: Term,
    pool: Pool,
    table: String,
    ends: mpsc::UnboundedSender<(u64, i64)>,
) -> Result<(), AppError> {
    let started = now_us();
    let _end = EndOfTerm {
        fence: term.fence(),
        ends,
    };
    let fence = i64::try_from(term.fence())?;
    let sql = format!(
        "INSERT INTO {} (fence, pid, started) VALUES ($1, $2, $3)",
        quoted(&table)
    );
    let pid = std::process::id() as i32;
    pool.get()
        .await?
        .execute(&sql, &[&fence, &pid, &started])
        .await?;
    println!("elected {}", term.fence());
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let cli = Cli::parse();
    let db = pglock::testdb::TestDb::from_url(&cli.database_url)?;
    // The lock's session, the handover gate's, and the term rows.
    let pool = db.pool(4);
    drop(pool.get().await?); // connected
    let lock =
        AdvisoryLock::new(cli.lock.as_str()).keepalive(Duration::from_millis(cli.keepalive_ms));
    let leadership = Leadership::new(lock, pool.clone())
        .campaign_every(Duration::from_millis(cli.campaign_every_ms));
    let (ends, ends_rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(record_ends(pool.clone(), cli.table.clone(), ends_rx));
    println!("ready");
    let shutdown = async {
        let line = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()));
        let _ = line.await;
    };
    leadership
        .run(shutdown, |term| {
            lead(term, pool.clone(), cli.table.clone(), ends.clone())
        })
        .await?;
    drop(ends);
    recorder.await?;
    println!("stopped");
    Ok(())
}
