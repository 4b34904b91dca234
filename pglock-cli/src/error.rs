//! Every way a command can fail, each with the message an operator reads and the exit
//! code a script sees.

use std::path::PathBuf;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Neither `--database-url` nor `DATABASE_URL` was given.
    #[error("no database given: set DATABASE_URL or pass --database-url")]
    NoDatabaseUrl,
    /// The URL does not parse.
    #[error(
        "the database URL is malformed ({}): expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=require] or key=value pairs",
        chain(.0)
    )]
    BadUrl(#[source] tokio_postgres::Error),
    /// The server could not be reached, refused the connection, or refused the login.
    #[error("could not connect to the database: {}", chain(.0))]
    Connect(#[source] tokio_postgres::Error),
    /// The `--ca-file` could not be read or holds no certificate.
    #[error("cannot use --ca-file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// The TLS settings were refused by rustls.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A statement failed.
    #[error("{what} failed: {}", chain(source))]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A column of a server reply had an unexpected type.
    #[error("unexpected reply from the server, column `{column}`: {source}")]
    Reply {
        column: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A server reply that cannot be what PostgreSQL sends.
    #[error("unexpected reply from the server: {0}")]
    Unexpected(String),
    /// The lock given on the command line cannot be used as given.
    #[error("{0}")]
    BadLock(String),
    /// `release` did not act: nothing to act on, no terminal and no `--yes`, or "no".
    #[error("{0}")]
    Refused(String),
    /// `release` acted, but the lock (or part of it) is still held, or a signal failed.
    #[error("{0}")]
    NotReleased(String),
    /// The listing could not be written as JSON.
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Reading the answer or writing the output failed.
    #[error("input/output: {0}")]
    Io(#[from] std::io::Error),
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl CliError {
    /// 1 for every error: clap uses 2 for a bad command line, and 3 means "listed, but
    /// incomplete" (see the `cli` module).
    pub fn exit_code(&self) -> u8 {
        1
    }
}

/// The error and its causes on one line: tokio-postgres keeps the server's own message
/// (e.g. `password authentication failed`) in the source chain.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}
