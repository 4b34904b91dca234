//! [`shared()`]: the one test database of the process.

use std::sync::OnceLock;

use super::{Cluster, TestDb};

/// What [`shared()`] hands out, kept for the life of the process.
enum Shared {
    /// `DATABASE_URL`.
    External(TestDb),
    /// A throwaway cluster. Never dropped: its watchdog removes it when the process ends.
    Owned(Cluster),
}

/// The process-wide test database: `DATABASE_URL` if it is set (and not empty), else one
/// throwaway [`Cluster`] per process, started by the first call (other threads wait for it).
///
/// The cluster is stopped and its directory removed when the process ends, however it ends
/// (normal exit, panic, abort, SIGKILL): see the [module docs](super).
///
/// Each process has its own: a test that spawns other processes (examples, helpers) that must
/// see the same database passes them `DATABASE_URL` = [`shared().url()`](TestDb::url).
///
/// ```no_run
/// let pool = pglock_runtime::testdb::shared().pool(8);
/// let child = std::process::Command::new("target/debug/examples/goldleader")
///     .env("DATABASE_URL", pglock_runtime::testdb::shared().url())
///     .spawn();
/// ```
///
/// # Panics
///
/// With a message saying what to do, if `DATABASE_URL` is malformed or the cluster cannot be
/// started (e.g. no PostgreSQL server binaries are installed). Every later call panics with
/// the same message, without trying again.
pub fn shared() -> &'static TestDb {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    match SHARED.get_or_init(init) {
        Ok(Shared::External(db)) => db,
        Ok(Shared::Owned(cluster)) => cluster.db(),
        Err(msg) => panic!("{msg}"),
    }
}

fn init() -> Result<Shared, String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => TestDb::from_url(url.trim())
            .map(Shared::External)
            .map_err(|e| format!("pglock testdb: {e}")),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err("pglock testdb: DATABASE_URL is not valid UTF-8; fix or unset it".into())
        }
        _ => Cluster::start().map(Shared::Owned).map_err(|e| {
            format!("pglock testdb: could not start a throwaway PostgreSQL cluster: {e}")
        }),
    }
}
