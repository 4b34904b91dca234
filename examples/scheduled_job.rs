//! A job that every instance of a fleet fires on the same schedule, run once per
//! period by whichever instance fires first: `#[advisory_locked(skip,
//! hold_at_least = "3s")]` keeps the lock for 3 s after the grant, so instances whose
//! clocks are up to 2 s late find it busy and skip, while the next period finds it
//! free again.
//!
//! `cargo run --example scheduled_job -- <database-url> <table> --start-unix-ms T
//! --firings 10` fires at `T + i * period + offset` for i in 0..firings, each offset
//! drawn between 0 and `--max-offset-ms` (a clock that is off by that much), and
//! records each run in `<table>` (`(firing int, pid int)`). With `--no-hold` the job
//! is locked only while it runs (the control: then every instance runs it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use pglock::{advisory_locked, Locker};

/// Fires a job on a schedule, through a Locker.
#[derive(Parser)]
struct Cli {
    /// Where the lock and the table live.
    database_url: String,
    /// Where each run is recorded: `(firing int, pid int)`.
    table: String,
    /// The first period's start, in milliseconds since the Unix epoch.
    #[arg(long)]
    start_unix_ms: u64,
    /// How many periods to fire in.
    #[arg(long, default_value_t = 10)]
    firings: u32,
    /// The period, in milliseconds.
    #[arg(long, default_value_t = 6000)]
    period_ms: u64,
    /// The largest clock offset, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    max_offset_ms: u64,
    /// Lock only while the job runs (the control).
    #[arg(long)]
    no_hold: bool,
}

type AppError = Box<dyn std::error::Error + Send + Sync>;

/// What a run needs: where to record it.
struct Job {
    pool: deadpool_postgres::Pool,
    table: String,
}

impl Job {
    async fn record(&self, firing: u32) -> Result<(), AppError> {
        let sql = format!(
            "INSERT INTO \"{}\" (firing, pid) VALUES ($1, $2)",
            self.table.replace('"', "\"\"")
        );
        let (firing, pid) = (firing as i32, std::process::id() as i32);
        self.pool
            .get()
            .await?
            .execute(&sql, &[&firing, &pid])
            .await?;
        Ok(())
    }
}

/// Runs once per period across the fleet: held 3 s after the grant, busy elsewhere
/// is a skip.
#[advisory_locked(key = "scheduled-job:{job.table}", skip, hold_at_least = "3s")]
async fn fire(locker: &Locker, job: &Job, firing: u32) -> Result<(), AppError> {
    job.record(firing).await
}

/// The control: locked only while it runs.
#[advisory_locked(key = "scheduled-job:{job.table}", skip)]
async fn fire_without_hold(locker: &Locker, job: &Job, firing: u32) -> Result<(), AppError> {
    job.record(firing).await
}

/// A random offset between 0 and `max`.
fn offset(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    max.mul_f64((random >> 11) as f64 / (1_u64 << 53) as f64)
}

/// Sleeps until `at` by this machine's clock.
async fn sleep_until_unix(at: Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    tokio::time::sleep(at.saturating_sub(now)).await;
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let cli = Cli::parse();
    let db = pglock::testdb::TestDb::from_url(&cli.database_url)?;
    let pool = db.pool(4);
    let locker = Locker::new(pool.clone());
    let job = Job {
        pool,
        table: cli.table.clone(),
    };
    let (start, period) = (
        Duration::from_millis(cli.start_unix_ms),
        Duration::from_millis(cli.period_ms),
    );
    for firing in 0..cli.firings {
        let at = start + period * firing + offset(Duration::from_millis(cli.max_offset_ms));
        sleep_until_unix(at).await;
        if cli.no_hold {
            fire_without_hold(&locker, &job, firing).await?;
        } else {
            fire(&locker, &job, firing).await?;
        }
    }
    // Stay up until the last period ends: a hold is kept by this process, and
    // ends with it (its connections close, which frees the lock).
    sleep_until_unix(start + period * cli.firings).await;
    println!("done {}", cli.firings);
    Ok(())
}
