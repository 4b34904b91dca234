//! The command line: commands, their options and their help text (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// See, and clear, the advisory locks of a PostgreSQL database.
///
/// Exit codes: 0 success; 1 error or refusal; 2 bad command line; 3 the listing is
/// incomplete because this role may not see other roles' sessions.
#[derive(Debug, Parser)]
#[command(name = "pglock", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: Command,
}

/// Where to connect.
#[derive(Debug, Args)]
pub struct Connection {
    /// A `postgres://` URL or a `key=value` connection string. `sslmode=disable`,
    /// `prefer` (the default) and `require` are understood; `require` fails unless
    /// the connection is encrypted.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// PEM file of the certificate authorities to verify the server's certificate and
    /// host name against. Without it, TLS encrypts but does not authenticate the
    /// server, as libpq's `sslmode=require` does.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every advisory lock of the database: holders, and their waiters under them.
    Ls(LsArgs),
    /// The holders and waiters of one lock.
    Who(WhoArgs),
    /// Cancel the statement of, or terminate, the sessions holding one lock.
    Release(ReleaseArgs),
    /// The `ls` view, refreshed until Ctrl-C.
    Watch(WatchArgs),
    /// The key of a name, and the SQL that takes the same lock from psql.
    Key(KeyArgs),
}

/// What `ls` shows.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// Print JSON (the schema is in the README, "In production").
    #[arg(long)]
    pub json: bool,
}

/// Options shared by the views (`ls`, `who`, `watch`).
#[derive(Debug, Args, Clone)]
pub struct ViewArgs {
    /// A lock name to recognise: locks whose key is this name's hash are shown with it.
    /// Repeatable.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Only locks that somebody waits for (with their holders).
    #[arg(long)]
    pub waiting: bool,
}

/// One lock, as a name or a key.
#[derive(Debug, Args, Clone)]
pub struct LockArg {
    /// A lock name (hashed as pglock's `LockKey::from_name`), an integer key, or a pair
    /// key `a,b`.
    #[arg(value_name = "NAME|KEY", allow_hyphen_values = true)]
    pub lock: String,
    /// Read NAME|KEY as a name even when it looks like a key (e.g. the name "42").
    #[arg(long)]
    pub as_name: bool,
}

/// What `who` shows.
#[derive(Debug, Args)]
pub struct WhoArgs {
    #[command(flatten)]
    pub lock: LockArg,
    /// Print JSON (the schema of `ls --json`).
    #[arg(long)]
    pub json: bool,
}

/// What `release` does.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["cancel", "terminate"])))]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub lock: LockArg,
    /// `pg_cancel_backend`: interrupt the holder's running statement. Frees only locks
    /// that statement's transaction holds; a session lock of an idle session stays.
    #[arg(long)]
    pub cancel: bool,
    /// `pg_terminate_backend`: end the holder's session, which frees every lock it holds.
    #[arg(long)]
    pub terminate: bool,
    /// Act without asking (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How long to wait for the lock to be freed after signalling, before reporting.
    #[arg(long, value_parser = parse_duration, default_value = "5s", value_name = "DURATION")]
    pub wait: Duration,
}

/// How `watch` refreshes.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// Time between refreshes (`500ms`, `2s`, `1m`).
    #[arg(long, short = 'n', value_parser = parse_duration, default_value = "2s", value_name = "DURATION")]
    pub interval: Duration,
}

/// The name for `key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// The lock name.
    pub name: String,
}

/// `500ms`, `2s`, `1.5s`, `1m`: a positive duration with its unit.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => {
            return Err(format!(
                "`{text}` has no unit: write e.g. `500ms`, `2s` or `1m`"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` does not start with a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{unit}` is not a unit: use `ms`, `s` or `m`")),
    };
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
