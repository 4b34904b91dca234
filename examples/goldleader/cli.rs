//! The command line.

use clap::{Parser, ValueEnum};

/// goldleader: worker processes take turns in a critical section guarded by the
/// PostgreSQL advisory lock "goldleader", and the database checks that no two were
/// ever inside at once.
///
/// Uses the database of --database-url (or DATABASE_URL); without one it starts a
/// throwaway PostgreSQL cluster, and removes it at the end. Each entry into the
/// critical section is recorded with its start and end; the summary shows every
/// worker's entries, waits and hold times, and the overlaps between entries found by
/// the database, which must be 0 (else goldleader exits with status 1).
///
/// Faults are part of the demo: terminate the backend holding the lock (SELECT
/// pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
/// AND (classid::int8 << 32 | objid::int8) = hashtextextended('goldleader', 0)) or
/// kill a worker. A lost lock is logged, counted in the "lost" column, and the
/// worker goes on with a fresh round; an entry it was in when the lock went keeps no
/// end (the database refuses it), so it cannot overlap the next holder's. A killed
/// worker is shown as gone. Neither fails the run; a worker that cannot start, or
/// fails with an error of its own, does (status 1).
///
/// Logs: RUST_LOG (e.g. RUST_LOG=pglock_runtime=debug shows every acquisition and
/// release, with wait and hold times).
#[derive(Parser, Debug, Clone)]
#[command(name = "goldleader")]
pub struct Cli {
    /// Worker processes to start, each a copy of this program.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
    pub workers: u32,

    /// How long the workers run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,

    /// How a worker takes the lock, i.e. which `#[advisory_locked]` it calls.
    #[arg(long, value_enum, default_value_t = Mode::Wait)]
    pub mode: Mode,

    /// Tasks per worker process, all taking the lock through one `pglock::Locker` per
    /// process (they queue in the process, on a connection or two). Without this
    /// option each worker has a single task that takes the lock from its pool.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub tasks: Option<u32>,

    /// How long each entry stays in the critical section, in milliseconds.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub hold_ms: u64,

    /// PostgreSQL to use, e.g. postgres://user:secret@host/db; without it a throwaway
    /// cluster is started from the installed server binaries.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Run as worker number N (goldleader starts its workers with this).
    #[arg(long, hide = true, requires = "run")]
    pub worker_id: Option<u32>,

    /// The run a worker belongs to: its entries table and connection names.
    #[arg(long, hide = true)]
    pub run: Option<u32>,
}

/// How the workers take the lock.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Try once (`#[advisory_locked(key = "goldleader")]`); when it is busy, count a
    /// Busy and try again a little later.
    Try,
    /// Queue for the lock on the server (`#[advisory_locked(key = "goldleader", wait)]`).
    Wait,
    /// When the lock is busy, skip this round (`#[advisory_locked(key = "goldleader",
    /// skip)]` returns the default without running the body).
    Skip,
    /// Leadership (`pglock::Leadership` over the lock): each worker campaigns, and only
    /// the leader enters, carrying its term's fence; losing the lock hands over.
    Lead,
    /// No lock at all: the control. Entries overlap, and goldleader exits with 1.
    None,
}

impl Mode {
    /// The name `--mode` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Try => "try",
            Mode::Wait => "wait",
            Mode::Skip => "skip",
            Mode::Lead => "lead",
            Mode::None => "none",
        }
    }
}

impl Cli {
    /// Tasks per worker (1 without --tasks).
    pub fn tasks_per_worker(&self) -> u32 {
        self.tasks.unwrap_or(1)
    }

    /// The mode and the lock source, for people: `mode wait, lock taken from a Pool`.
    pub fn describe(&self) -> String {
        let source = match (self.mode, self.tasks) {
            (Mode::None, _) => return "mode none: no lock taken".into(),
            (_, None) => "a Pool",
            (_, Some(_)) => "a Locker",
        };
        format!("mode {}, lock taken from {source}", self.mode.name())
    }
}
