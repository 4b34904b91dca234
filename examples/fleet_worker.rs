//! One instance of a fleet: tasks that take per-argument keys with
//! `#[advisory_locked(key = "fleet:{k}", wait = "3s")]` and do a 1 ms
//! read-modify-write of that key's row under the lock. The `fleet` section of
//! `cargo bench --bench locks` starts a dozen of these at once, through a `Locker`
//! and through a `Pool`, and compares what each instance got done.
//!
//! `cargo run --example fleet_worker -- <database-url> <table> --source locker`
//! works on `<table>` (`(k int primary key, n bigint)`, rows `k = 0..keys`, created
//! by the caller), prints `ready` once connected (with `--barrier`, then waits for a
//! line on stdin), runs for `--seconds`, and prints
//! `done entries=<locked calls> timeouts=<calls that waited 3 s in vain>`.

use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use deadpool_postgres::Pool;
use pglock::{advisory_locked, Locker};

/// Where the instance takes its locks.
#[derive(Clone, Copy, ValueEnum)]
enum Source {
    /// A `Locker` shared by the tasks of this instance.
    Locker,
    /// A session of its own from the pool, per call.
    Pool,
}

/// One fleet instance.
#[derive(Parser)]
struct Cli {
    /// The database.
    database_url: String,
    /// The table of the keys' rows: `(k int primary key, n bigint)`.
    table: String,
    /// Where the locks come from.
    #[arg(long, value_enum)]
    source: Source,
    /// Tasks of this instance, side by side.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// Keys the tasks choose from at random, one per call.
    #[arg(long, default_value_t = 20)]
    keys: u32,
    /// How long to run, from the start signal.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Print `ready` once connected, then wait for a line on stdin before starting,
    /// so that all instances start at the same moment.
    #[arg(long)]
    barrier: bool,
    /// The Locker's handoff limit (see `LockerBuilder::handoff_limit`); a huge one
    /// with a huge `--handoff-window-ms` keeps keys in the process: the control of
    /// the fairness test.
    #[arg(long, default_value_t = pglock::DEFAULT_HANDOFF_LIMIT)]
    handoff_limit: u32,
    /// The Locker's handoff window, in milliseconds.
    #[arg(long, default_value_t = pglock::DEFAULT_HANDOFF_WINDOW.as_millis() as u64)]
    handoff_window_ms: u64,
}

/// Lock, pool and query errors alike: all this program does with one is print it.
type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The rows the locked calls update, and the pool their queries go through.
struct Rows {
    pool: Pool,
    /// `SELECT n FROM <table> WHERE k = $1`.
    read: String,
    /// `UPDATE <table> SET n = $2 WHERE k = $1`.
    write: String,
}

impl Rows {
    fn new(pool: Pool, table: &str) -> Rows {
        let table = format!("\"{}\"", table.replace('"', "\"\""));
        Rows {
            pool,
            read: format!("SELECT n FROM {table} WHERE k = $1"),
            write: format!("UPDATE {table} SET n = $2 WHERE k = $1"),
        }
    }

    /// Read, sleep 1 ms, write: a lost update whenever two of these interleave.
    async fn bump(&self, k: i32) -> Result<(), AppError> {
        let client = self.pool.get().await?;
        let n: i64 = client.query_one(&self.read, &[&k]).await?.get(0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        client.execute(&self.write, &[&k, &(n + 1)]).await?;
        Ok(())
    }
}

#[advisory_locked(key = "fleet:{k}", pool = locker, wait = "3s")]
async fn through_locker(locker: &Locker, rows: &Rows, k: i32) -> Result<(), AppError> {
    rows.bump(k).await
}

#[advisory_locked(key = "fleet:{k}", pool = pool, wait = "3s")]
async fn through_pool(pool: &Pool, rows: &Rows, k: i32) -> Result<(), AppError> {
    rows.bump(k).await
}

/// What one task did.
#[derive(Default)]
struct Tally {
    entries: u64,
    timeouts: u64,
}

/// Locked calls on random keys until `deadline`; a `wait = "3s"` timeout is counted,
/// any other error ends the task.
async fn task(
    source: Source,
    lock: (Pool, Locker),
    rows: &Rows,
    keys: u32,
    deadline: Instant,
) -> Result<Tally, AppError> {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let k = rand::random_range(0..keys) as i32;
        let called = match source {
            Source::Locker => through_locker(&lock.1, rows, k).await,
            Source::Pool => through_pool(&lock.0, rows, k).await,
        };
        match called {
            Ok(()) => tally.entries += 1,
            Err(e) if e.downcast_ref().is_some_and(pglock::Error::is_timeout) => {
                tally.timeouts += 1
            }
            Err(e) => return Err(e),
        }
    }
    Ok(tally)
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let cli = Cli::parse();
    let db = pglock::testdb::TestDb::from_url(&cli.database_url)?;
    // Through a Pool every task holds a lock session and a query connection at
    // once; through a Locker the tasks share its lock sessions and waiting session.
    let pool = db.pool(2 * cli.tasks + 4);
    let rows = std::sync::Arc::new(Rows::new(pool.clone(), &cli.table));
    let locker = Locker::builder(pool.clone())
        .handoff_limit(cli.handoff_limit)
        .handoff_window(Duration::from_millis(cli.handoff_window_ms))
        .build();
    if cli.barrier {
        drop(pool.get().await?); // connected
        println!("ready");
        std::io::stdin().read_line(&mut String::new())?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(cli.seconds);
    let tasks: Vec<_> = (0..cli.tasks)
        .map(|_| {
            let (rows, lock) = (rows.clone(), (pool.clone(), locker.clone()));
            let (source, keys) = (cli.source, cli.keys);
            tokio::spawn(async move { task(source, lock, &rows, keys, deadline).await })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await??;
        total.entries += tally.entries;
        total.timeouts += tally.timeouts;
    }
    // On stderr, for whoever measures the work per entry (the last stdout line is
    // the result the fleet's harness parses).
    eprintln!("spawned_tasks={}", pglock::__private::spawned_tasks());
    println!("done entries={} timeouts={}", total.entries, total.timeouts);
    Ok(())
}
