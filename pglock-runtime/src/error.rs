//! `Error`: everything that can go wrong taking or holding a lock, each naming the lock.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::lock::LockId;

/// Why a lock could not be taken or kept. Every message names the lock, by its name
/// when it has one, and its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another session holds the lock (or this task does, in an enclosing lock).
    #[error("lock {lock} is busy: another session holds it")]
    Busy {
        /// The lock asked for.
        lock: LockId,
    },
    /// The lock was not granted in time: our own limit (`after` is set) or the
    /// server's `lock_timeout` (`after` is `None`).
    #[error("timed out waiting for lock {lock}{}", after.map(|d| format!(" after {d:?}")).unwrap_or_else(|| ": the server's lock_timeout expired".into()))]
    Timeout {
        /// The lock asked for.
        lock: LockId,
        /// How long we waited, when the limit was ours.
        after: Option<Duration>,
        /// The server's error, when its `lock_timeout` expired.
        #[source]
        source: Option<tokio_postgres::Error>,
    },
    /// The session holding the lock died (terminated, server restart, network
    /// loss): the lock is no longer held.
    #[error("lock {lock} was lost: the session holding it is gone")]
    LockLost {
        /// The lock that was held.
        lock: LockId,
    },
    /// The calling task already holds this key, so waiting for it would wait forever.
    #[error(
        "waiting for lock {lock} would deadlock: this task already holds it (in an enclosing lock)"
    )]
    WouldDeadlock {
        /// The lock asked for.
        lock: LockId,
    },
    /// This wait closes a cycle of waits, so it would never end: PostgreSQL's deadlock
    /// detector chose it as the victim (`40P01`, `source` is set), or a Locker found
    /// the cycle, among its own tasks or across processes (`cycle` names the keys
    /// waited for around it).
    #[error(
        "deadlock detected while waiting for lock {lock}{}",
        describe_cycle(cycle)
    )]
    Deadlock {
        /// The lock asked for.
        lock: LockId,
        /// The server's error, when the server found the cycle.
        #[source]
        source: Option<tokio_postgres::Error>,
        /// The locks waited for around the cycle, starting with `lock`, when a Locker
        /// found it (empty when the server did).
        cycle: Vec<LockId>,
    },
    /// The server's lock table is full: raise `max_locks_per_transaction`.
    #[error("lock {lock}: the server's lock table is full (raise max_locks_per_transaction)")]
    LockTableFull {
        /// The lock asked for.
        lock: LockId,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connection broke, the server shut down, or the server ended the session
    /// (`idle_session_timeout`, `transaction_timeout`) while taking or releasing the lock.
    #[error("connection lost while taking or releasing lock {lock}")]
    Disconnected {
        /// The lock asked for.
        lock: LockId,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection could be had from the pool.
    #[error("lock {lock}: no connection from the pool")]
    Pool {
        /// The lock asked for.
        lock: LockId,
        /// The pool's error.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// No fencing token could be taken for a lock taken `fenced()` (the lock is not
    /// kept: a fenced lock without its token would be unsafe to act on).
    #[error("lock {lock}: no fencing token: {reason}")]
    Fence {
        /// The lock asked for.
        lock: LockId,
        /// Why.
        reason: &'static str,
    },
    /// Any other database error.
    #[error("lock {lock}: database error")]
    Db {
        /// The lock asked for.
        lock: LockId,
        /// The server's or driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    /// The lock was held elsewhere.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    /// Waiting ran out (our limit or the server's `lock_timeout`).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// The session holding the lock is gone.
    pub fn is_lost(&self) -> bool {
        matches!(self, Error::LockLost { .. })
    }

    /// The lock this error is about.
    pub fn lock(&self) -> &LockId {
        match self {
            Error::Busy { lock }
            | Error::Timeout { lock, .. }
            | Error::LockLost { lock }
            | Error::WouldDeadlock { lock }
            | Error::Deadlock { lock, .. }
            | Error::LockTableFull { lock, .. }
            | Error::Disconnected { lock, .. }
            | Error::Pool { lock, .. }
            | Error::Fence { lock, .. }
            | Error::Db { lock, .. } => lock,
        }
    }

    /// Whether this error of a lock statement leaves it unknown what the session
    /// holds: a cancelled statement may have been granted first; an answer that
    /// never came says nothing. A server that refused the statement (or said the
    /// lock was not held) leaves no doubt.
    pub(crate) fn leaves_doubt(&self) -> bool {
        match self {
            Error::Db { source, .. } | Error::Disconnected { source, .. } => {
                source.as_db_error().is_none()
                    || source.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
            }
            _ => false,
        }
    }

    /// Sorts a driver error from a lock statement into the variant that says what happened.
    pub(crate) fn from_db(lock: &LockId, source: tokio_postgres::Error) -> Error {
        let lock = lock.clone();
        let code = source.code().cloned();
        match code {
            Some(SqlState::T_R_DEADLOCK_DETECTED) => Error::Deadlock {
                lock,
                source: Some(source),
                cycle: Vec::new(),
            },
            Some(SqlState::LOCK_NOT_AVAILABLE) => Error::Timeout {
                lock,
                after: None,
                source: Some(source),
            },
            Some(SqlState::OUT_OF_MEMORY) if mentions_lock_table(&source) => {
                Error::LockTableFull { lock, source }
            }
            Some(SqlState::ADMIN_SHUTDOWN)
            | Some(SqlState::CRASH_SHUTDOWN)
            | Some(SqlState::CANNOT_CONNECT_NOW)
            | Some(SqlState::IDLE_SESSION_TIMEOUT) => Error::Disconnected { lock, source },
            Some(ref code) if code.code() == TRANSACTION_TIMEOUT => {
                Error::Disconnected { lock, source }
            }
            _ if source.is_closed() => Error::Disconnected { lock, source },
            _ => Error::Db { lock, source },
        }
    }
}

/// `transaction_timeout` (PostgreSQL 17) ends the session; the driver has no name for it yet.
const TRANSACTION_TIMEOUT: &str = "25P04";

fn mentions_lock_table(source: &tokio_postgres::Error) -> bool {
    source.as_db_error().is_some_and(|db| {
        db.hint()
            .is_some_and(|h| h.contains("max_locks_per_transaction"))
            || db.message().contains("shared memory")
    })
}

/// The keys around a cycle a Locker found, back to the first; nothing for the server's.
fn describe_cycle(cycle: &[LockId]) -> String {
    let Some(first) = cycle.first() else {
        return String::new();
    };
    let keys: Vec<String> = cycle.iter().chain([first]).map(LockId::to_string).collect();
    format!(" (cycle of waits through Lockers: {})", keys.join(" -> "))
}

/// Item 11 against a real server: the SQLSTATEs that end a session, raised by the
/// server itself, sort into [`Error::Disconnected`]; a code that ends nothing stays
/// [`Error::Db`] (the control).
#[cfg(all(test, feature = "testdb"))]
mod live {
    use std::time::Duration;

    use super::Error;
    use crate::lock::AdvisoryLock;

    /// The error the server sends for a statement that raises `code`.
    async fn raised(code: &str) -> tokio_postgres::Error {
        let client = crate::testdb::shared().connect().await.unwrap();
        let raise = format!("DO $$BEGIN RAISE EXCEPTION USING ERRCODE = '{code}'; END$$");
        let error = client.batch_execute(&raise).await.unwrap_err();
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{error:?}");
        error
    }

    async fn sorted(code: &str) -> Error {
        Error::from_db(AdvisoryLock::new("sqlstate").id(), raised(code).await)
    }

    #[tokio::test]
    async fn idle_session_timeout_from_the_server_is_a_disconnect() {
        let error = sorted("57P05").await;
        assert!(matches!(error, Error::Disconnected { .. }), "{error:?}");
    }

    /// PostgreSQL 17's `transaction_timeout`; a server older than 17 has no such
    /// setting, but raises the code the same way.
    #[tokio::test]
    async fn transaction_timeout_from_the_server_is_a_disconnect() {
        let error = sorted("25P04").await;
        assert!(matches!(error, Error::Disconnected { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_code_that_ends_no_session_stays_a_database_error() {
        let error = sorted("40001").await;
        assert!(matches!(error, Error::Db { .. }), "{error:?}");
    }

    /// A guard's session that `idle_session_timeout` ends: the guard learns its lock
    /// is lost and its release says so; the server has freed the key. The server's
    /// `57P05` comes while no statement of ours is pending, so the driver reports a
    /// closed connection: this holds without the code's mapping too, which the
    /// raised-code tests above pin.
    #[tokio::test]
    async fn a_guard_whose_session_the_idle_timeout_ends_is_lost() {
        let db = crate::testdb::shared();
        let pool = db.pool(1);
        let lock = AdvisoryLock::new("sqlstate:idle-session");
        let guard = lock.try_acquire(&pool).await.unwrap();
        guard
            .batch_execute("SET idle_session_timeout = '200ms'")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), guard.lost())
            .await
            .expect("the guard never learned that the server ended its session");
        let released = guard.release().await;
        assert!(
            matches!(
                released,
                Err(Error::LockLost { .. } | Error::Disconnected { .. })
            ),
            "{released:?}"
        );
        let observer = db.connect().await.unwrap();
        let granted: bool = observer
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key_of(&lock)])
            .await
            .unwrap()
            .get(0);
        assert!(granted, "the ended session's lock is free on the server");
    }

    fn key_of(lock: &AdvisoryLock) -> i64 {
        match lock.key() {
            crate::key::LockKey::BigInt(key) => key,
            crate::key::LockKey::Pair(..) => unreachable!("a name hashes to a bigint key"),
        }
    }
}
