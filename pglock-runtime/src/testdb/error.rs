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

    /// A setting given to a [`Cluster`](super::Cluster) cannot be used.
    #[error("server setting {name:?} cannot be given to a test cluster: {reason}")]
    InvalidSetting {
        /// The offending name.
        name: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },

    /// A setting given to [`ClusterBuilder::setting`](super::ClusterBuilder::setting) (or
    /// [`Cluster::start_with`](super::Cluster::start_with)) is not a parameter of the
    /// installed server.
    #[error(
        "server setting {name:?} is not a parameter of the PostgreSQL server in {bin_dir:?}; \
         check its spelling (`postgres -C {name}` names the unknown ones) or use a \
         custom name with a dot, such as myapp.{name}"
    )]
    UnknownSetting {
        /// The unknown name.
        name: String,
        /// The directory of the server programs asked.
        bin_dir: PathBuf,
    },

    /// The TLS certificate of a cluster could not be generated, or a TLS client could not be
    /// configured to trust it.
    #[error("could not set up TLS for the test cluster: {reason}")]
    Certificate {
        /// What went wrong.
        reason: String,
    },

    /// A TLS connection was asked of a database that was not started with TLS.
    #[error(
        "this test database has no TLS: start a cluster with \
         Cluster::builder().tls(Tls::On) or .tls(Tls::Required) to get TLS pools"
    )]
    TlsOff,

    /// No `pgbouncer` program was found.
    #[error(
        "no pgbouncer program found (looked in {looked}); install Debian's package: \
         apt-get install -y pgbouncer (the tests start their own; no system service is \
         needed), or set PGLOCK_TESTDB_PGBOUNCER to the program"
    )]
    NoPgBouncer {
        /// The places searched, in order.
        looked: String,
    },

    /// PgBouncer did not start, or did not accept connections.
    #[error("PgBouncer (directory {dir:?}, port {port}) did not start: {reason}; its log:\n{log}")]
    PgBouncer {
        /// Its directory.
        dir: PathBuf,
        /// The port it was to listen on.
        port: u16,
        /// What went wrong.
        reason: String,
        /// The end of its log.
        log: String,
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
