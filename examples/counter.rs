//! Read–sleep–write increments of a counter row, from one process; the mutual
//! exclusion test runs several copies at once and checks that no increment is lost.
//!
//! Each increment reads the counter (`SELECT n`), sleeps a little, and writes back
//! what it read plus one (`UPDATE ... SET n = $1`): without a lock around the three,
//! two processes that read the same value write the same value, and an increment is
//! lost. With `#[advisory_locked(wait)]` around them, none is.
//!
//! `cargo run --example counter -- <database-url> <table> --increments 50`
//! increments row `id = 1` of `<table>` (a table `(id int, n bigint)` the caller
//! created) and prints `done <increments>`.

use std::time::Duration;

use clap::Parser;
use deadpool_postgres::Pool;
use pglock::{advisory_locked, Locker};

/// Increments a counter row under an advisory lock (or, with --no-lock, without one).
#[derive(Parser)]
struct Cli {
    /// Where the counter lives.
    database_url: String,
    /// The counter's table: `(id int, n bigint)` with a row `id = 1`.
    table: String,
    /// Increments per task.
    #[arg(long, default_value_t = 50)]
    increments: u32,
    /// Take the lock through a `Locker` shared by the tasks of this process,
    /// instead of a session of its own from the pool.
    #[arg(long)]
    locker: bool,
    /// Tasks of this process that increment side by side (with --locker).
    #[arg(long, default_value_t = 1, requires = "locker")]
    tasks: u32,
    /// Skip the lock: the control, which loses increments.
    #[arg(long)]
    no_lock: bool,
    /// Print `ready` once connected, then wait for a line on stdin before starting,
    /// so that a test can start several copies at the same moment.
    #[arg(long)]
    barrier: bool,
}

/// Lock, pool and query errors alike: all this program does with one is print it.
type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The counter row, and the pool its reads and writes go through.
struct Counter {
    pool: Pool,
    table: String,
}

impl Counter {
    /// Read, sleep, write: a lost update whenever two of these interleave.
    async fn bump(&self) -> Result<(), AppError> {
        let table = quoted(&self.table);
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(&format!("SELECT n FROM {table} WHERE id = 1"), &[])
            .await?
            .get(0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        client
            .execute(
                &format!("UPDATE {table} SET n = $1 WHERE id = 1"),
                &[&(n + 1)],
            )
            .await?;
        Ok(())
    }
}

/// One increment, under the lock, on a session of its own from the counter's pool.
#[advisory_locked(key = "counter:{counter.table}", pool = counter.pool, wait)]
async fn increment(counter: &Counter) -> Result<(), AppError> {
    counter.bump().await
}

/// One increment, under the lock, through the Locker of the process.
#[advisory_locked(key = "counter:{counter.table}", wait)]
async fn increment_through(locker: &Locker, counter: &Counter) -> Result<(), AppError> {
    counter.bump().await
}

/// A SQL identifier, quoted.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let cli = Cli::parse();
    let db = pglock::testdb::TestDb::from_url(&cli.database_url)?;
    // A lock session, a Locker's waiting connection, and the tasks' reads and writes.
    let pool = db.pool(cli.tasks as usize + 3);
    let counter = std::sync::Arc::new(Counter {
        pool: pool.clone(),
        table: cli.table.clone(),
    });
    let locker = Locker::new(pool.clone());
    if cli.barrier {
        drop(pool.get().await?); // connected
        println!("ready");
        std::io::stdin().read_line(&mut String::new())?;
    }
    let tasks: Vec<_> = (0..cli.tasks)
        .map(|_| {
            let (counter, locker) = (counter.clone(), locker.clone());
            let (increments, use_locker, no_lock) = (cli.increments, cli.locker, cli.no_lock);
            tokio::spawn(async move {
                for _ in 0..increments {
                    match (no_lock, use_locker) {
                        (true, _) => counter.bump().await?,
                        (false, false) => increment(&counter).await?,
                        (false, true) => increment_through(&locker, &counter).await?,
                    }
                }
                Ok::<(), AppError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!("done {}", cli.increments * cli.tasks);
    Ok(())
}
