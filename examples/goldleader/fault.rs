//! Which failures of a round mean the lock was lost (the session holding it, or
//! taking or releasing it, is gone): the worker counts those, logs them and goes on
//! with a fresh round, as a service would. Any other failure ends the worker.

use std::fmt;

use tokio_postgres::error::SqlState;

/// Lock, pool and query errors alike.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// The database refused to record the end of an entry: when it checked, no session
/// of this worker held the lock any more.
#[derive(Debug)]
pub struct EndRefused;

impl fmt::Display for EndRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the entry's end was not recorded: the lock was no longer held")
    }
}

impl std::error::Error for EndRefused {}

/// Whether `e` says the lock was lost, rather than that something is broken.
pub fn lock_lost(e: &AppError) -> bool {
    if e.is::<EndRefused>() {
        return true;
    }
    match e.downcast_ref::<pglock::Error>() {
        Some(pglock::Error::LockLost { .. } | pglock::Error::Disconnected { .. }) => true,
        Some(pglock::Error::Db { source, .. }) => session_gone(source),
        _ => false,
    }
}

/// `e` and its causes, `: `-separated: the pool's and the driver's own messages
/// ("db error") say little without the server's.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        // Some errors repeat their cause's message in their own.
        let said = c.to_string();
        if !text.ends_with(&said) {
            text += &format!(": {said}");
        }
        cause = c.source();
    }
    text
}

/// The driver's error is the connection breaking, not an answer from a live server.
fn session_gone(e: &tokio_postgres::Error) -> bool {
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    e.is_closed() || io || e.code() == Some(&SqlState::ADMIN_SHUTDOWN)
}
