//! `pglock`: list, inspect and release the advisory locks of a PostgreSQL database.
//!
//! The entry point owns only the exit status: every command returns a
//! [`Result`](error::CliError), and an error becomes one line on stderr and a non-zero
//! exit code (see [`error::CliError::exit_code`]), never a panic or a backtrace.

mod cli;
mod comment;
mod connect;
mod error;
mod json;
mod key_cmd;
mod keyspace;
mod listing;
mod locks;
mod release;
mod table;
mod target;
mod tls;
mod view;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(CliError::Runtime(e)),
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Key(args) => key_cmd::run(&args),
        Command::Ls(args) => view::run_ls(&cli.connection, &args).await,
        Command::Who(args) => view::run_who(&cli.connection, &args).await,
        Command::Release(args) => release::run(&cli.connection, &args).await,
        Command::Watch(args) => watch::run(&cli.connection, &args).await,
    }
}

fn report(error: CliError) -> ExitCode {
    eprintln!("pglock: error: {error}");
    ExitCode::from(error.exit_code())
}
