//! One party of a deadlock across processes: holds one key in an annotated body,
//! then, inside that body, waits for another key, which another copy of this
//! program holds while it waits for ours. Through a `Locker` (the default) no server
//! sees that cycle; the Lockers find it, and one party gets `Error::Deadlock`.
//!
//! `cargo run --example deadlock_party -- <database-url> <hold> <want>` takes `<hold>`,
//! prints `holding` once it has it, waits for a line on stdin (so that every party
//! holds its key before any waits), waits for `<want>` without bound, and prints
//! `outcome done`, `outcome deadlock <error>`, `outcome timeout <error>` or
//! `outcome error <error>`, then lets go of everything and exits (status 0 for
//! every outcome: the outcome is what the caller checks).
//!
//! Options: `--hold-through pool` / `--wait-through pool` take that key through a
//! session of the pool instead of the Locker (a mixed cycle); `--no-detection` builds
//! the Locker with `deadlock_detection(false)`; `--bounded` waits for `<want>` with
//! `wait = "3s"` instead of without bound; `--behind` first starts another task
//! that waits for `<want>` holding nothing (it is the one of this process that waits
//! in the server), so this party's wait queues in the process behind it; that task
//! prints `bystander <outcome>` once it ends.

use clap::{Parser, ValueEnum};
use deadpool_postgres::Pool;
use pglock::{advisory_locked, Error, Locker};

/// Where a key is taken.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Through {
    /// The process's `Locker`.
    Locker,
    /// A session of the pool, per lock.
    Pool,
}

/// One party.
#[derive(Parser)]
struct Cli {
    /// The database.
    database_url: String,
    /// The key this party holds.
    hold: String,
    /// The key it then waits for.
    want: String,
    /// Where `hold` is taken.
    #[arg(long, value_enum, default_value = "locker")]
    hold_through: Through,
    /// Where `want` is waited for.
    #[arg(long, value_enum, default_value = "locker")]
    wait_through: Through,
    /// Build the Locker with deadlock detection off.
    #[arg(long)]
    no_detection: bool,
    /// Wait for `want` 3 s at most.
    #[arg(long)]
    bounded: bool,
    /// Queue in the process behind another task's server wait for `want`.
    #[arg(long)]
    behind: bool,
}

/// Lock, pool and I/O errors alike: all this program does with one is print it.
type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Where this party's locks come from, and how it waits.
struct Party {
    locker: Locker,
    pool: Pool,
    cli: Cli,
    bystander: std::sync::Mutex<Option<tokio::task::JoinHandle<String>>>,
}

#[advisory_locked(key = "{name}", wait)]
async fn hold_in_locker(locker: &Locker, name: &str, party: &Party) -> Result<(), AppError> {
    holding_then_want(party).await
}

#[advisory_locked(key = "{name}", pool = party.pool, wait)]
async fn hold_in_pool(party: &Party, name: &str) -> Result<(), AppError> {
    holding_then_want(party).await
}

/// Inside the held body: says so, waits for the go, then waits for the other key.
async fn holding_then_want(party: &Party) -> Result<(), AppError> {
    println!("holding");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
    let want = party.cli.want.as_str();
    if party.cli.behind {
        start_bystander(party).await;
    }
    match (party.cli.wait_through, party.cli.bounded) {
        (Through::Locker, false) => want_in_locker(&party.locker, want).await,
        (Through::Locker, true) => want_in_locker_3s(&party.locker, want).await,
        (Through::Pool, false) => want_in_pool(party, want).await,
        (Through::Pool, true) => want_in_pool_3s(party, want).await,
    }
}

#[advisory_locked(key = "{name}", wait)]
async fn want_in_locker(locker: &Locker, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[advisory_locked(key = "{name}", wait = "3s")]
async fn want_in_locker_3s(locker: &Locker, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[advisory_locked(key = "{name}", pool = party.pool, wait)]
async fn want_in_pool(party: &Party, name: &str) -> Result<(), AppError> {
    Ok(())
}

#[advisory_locked(key = "{name}", pool = party.pool, wait = "3s")]
async fn want_in_pool_3s(party: &Party, name: &str) -> Result<(), AppError> {
    Ok(())
}

/// Starts a task that waits for `want` holding nothing, and returns once the
/// Locker has a turn for it (it asks the server first; a wait after it queues in
/// the process).
async fn start_bystander(party: &Party) {
    let (locker, want) = (party.locker.clone(), party.cli.want.clone());
    let before = party.locker.keys_in_use();
    let task = tokio::spawn(async move { outcome(&want_in_locker(&locker, &want).await) });
    *party.bystander.lock().unwrap() = Some(task);
    while party.locker.keys_in_use() == before {
        tokio::task::yield_now().await;
    }
}

/// What the caller reads: one line.
fn outcome(result: &Result<(), AppError>) -> String {
    let Err(error) = result else {
        return "outcome done".to_owned();
    };
    match error.downcast_ref::<Error>() {
        Some(e @ Error::Deadlock { .. }) => format!("outcome deadlock {e}"),
        Some(e @ Error::Timeout { .. }) => format!("outcome timeout {e}"),
        _ => format!("outcome error {error}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let cli = Cli::parse();
    let db = pglock::testdb::TestDb::from_url(&cli.database_url)?;
    // A lock session, a waiting connection, a check, and a pool lock of each kind.
    let pool = db.pool(6);
    let locker = Locker::builder(pool.clone())
        .deadlock_detection(!cli.no_detection)
        .build();
    let party = Party {
        locker,
        pool,
        cli,
        bystander: std::sync::Mutex::new(None),
    };
    let hold = party.cli.hold.as_str();
    let result = match party.cli.hold_through {
        Through::Locker => hold_in_locker(&party.locker, hold, &party).await,
        Through::Pool => hold_in_pool(&party, hold).await,
    };
    println!("{}", outcome(&result));
    let bystander = party.bystander.lock().unwrap().take();
    if let Some(bystander) = bystander {
        println!("bystander {}", bystander.await?);
    }
    Ok(())
}
