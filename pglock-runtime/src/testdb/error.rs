//! What can go wrong while providing a test database, each message saying what to do.

use std::path::PathBuf;

/// Why a throwaway cluster (or the database named by `DATABASE_URL`) is not available.
///
/// Its `Debug` output is its message, so that `.unwrap()` in a test says what to do.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TestDbError {
    /// No directory with `initdb`, `pg_ctl` and `postgres` was found.
    #[error(
        "no PostgreSQL server binaries found (looked in {looked}); install them: \
         apt-get install -y postgresql (or set PGLOCK_TESTDB_BINDIR to the directory \
         holding initdb, pg_ctl and postgres, or DATABASE_URL to a running server)"
    )]
    NoBinaries {
        /// The places searched, in order.
        looked: String,
    },

    /// `PGLOCK_TESTDB_BINDIR` is set but lacks a server program.
    #[error(
        "PGLOCK_TESTDB_BINDIR={dir:?} has no executable `{program}`; point it at the \
         directory holding initdb, pg_ctl and postgres (e.g. the output of `pg_config --bindir`), \
         or unset it"
    )]
    BadBinDir {
        /// The directory named by the variable.
        dir: PathBuf,
        /// The missing program.
        program: &'static str,
    },

    /// The process runs as root and there is no `postgres` user to run the server as.
    #[error(
        "running as root, but there is no `postgres` OS user to run the server as \
         (initdb and postgres refuse to run as root); create one \
         (useradd --system --user-group postgres) or run the tests as a normal user"
    )]
    NoPostgresUser,

    /// A setting given to [`Cluster::start_with`](super::Cluster::start_with) cannot be used.
    #[error("server setting {name:?} cannot be given to Cluster::start_with: {reason}")]
    InvalidSetting {
        /// The offending name.
        name: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },

    /// A file-system or process operation failed.
    #[error("could not {action}: {source}")]
    Io {
        /// What was being done, e.g. "create directory /tmp/x".
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A server program (`initdb`, `pg_ctl`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}){hint}; its output:\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// Its standard output and error.
        output: String,
        /// What to do about it, when known (starts with "; " or is empty).
        hint: String,
    },

    /// The server did not start, restart or stop as asked.
    #[error(
        "the PostgreSQL server (data directory {data_dir:?}, port {port}) did not {action}: \
         {reason}; server log tail:\n{log_tail}"
    )]
    Server {
        /// "start", "restart" or "stop".
        action: &'static str,
        /// Its data directory.
        data_dir: PathBuf,
        /// The port it was to listen on.
        port: u16,
        /// What went wrong, and what to do when known.
        reason: String,
        /// The end of the server log.
        log_tail: String,
    },

    /// `DATABASE_URL` is set but cannot be parsed.
    #[error(
        "DATABASE_URL is set but is not a valid connection string ({source}); fix it \
         (e.g. postgres://postgres@127.0.0.1:5432/postgres) or unset it to use a throwaway cluster"
    )]
    BadDatabaseUrl {
        /// The parse error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl std::fmt::Debug for TestDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl TestDbError {
    /// An [`TestDbError::Io`] for `action`.
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestDbError {
        let action = action.into();
        move |source| TestDbError::Io { action, source }
    }
}
