//! The `ls` and `who` commands: read the [`Listing`] of a database and print it as
//! a table or JSON.

use std::process::ExitCode;

use tokio_postgres::Client;

use crate::cli::{Connection, LsArgs, ViewArgs, WhoArgs};
use crate::connect::connect;
use crate::error::CliError;
use crate::listing::Listing;
use crate::locks;
use crate::target::Target;
use crate::{json, table};

/// Exit code of a listing some of whose sessions the role may not see.
pub const INCOMPLETE: u8 = 3;

/// Reads the listing of the database `connection` names.
pub async fn listing(connection: &Connection, view: &ViewArgs) -> Result<Listing, CliError> {
    read(&connect(connection).await?, view).await
}

/// Reads the listing through `client`.
pub async fn read(client: &Client, view: &ViewArgs) -> Result<Listing, CliError> {
    let listing = Listing::build(locks::snapshot(client).await?, &view.names);
    Ok(if view.waiting {
        listing.waiting_only()
    } else {
        listing
    })
}

/// `pglock ls`.
pub async fn run_ls(connection: &Connection, args: &LsArgs) -> Result<ExitCode, CliError> {
    let listing = listing(connection, &args.view).await?;
    print(&listing, args.json)
}

/// `pglock who NAME|KEY`.
pub async fn run_who(connection: &Connection, args: &WhoArgs) -> Result<ExitCode, CliError> {
    let target = Target::parse(&args.lock)?;
    let view = ViewArgs {
        names: target.name.iter().cloned().collect(),
        waiting: false,
    };
    let listing = listing(connection, &view).await?.only(target.key);
    if listing.locks.is_empty() && !args.json {
        println!("nobody holds or waits for {}", target.describe());
        return Ok(ExitCode::SUCCESS);
    }
    print(&listing, args.json)
}

/// Prints `listing` as a table or JSON; a note on stderr and exit code 3 if some
/// sessions are hidden from this role.
pub fn print(listing: &Listing, as_json: bool) -> Result<ExitCode, CliError> {
    if as_json {
        println!("{}", json::render(listing)?);
    } else {
        print!("{}", table::render(listing));
    }
    let hidden = listing.hidden();
    if hidden == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{}", hidden_note(hidden));
    Ok(ExitCode::from(INCOMPLETE))
}

/// Why some cells read `<hidden>`.
pub fn hidden_note(hidden: usize) -> String {
    format!(
        "pglock: incomplete: {hidden} holder(s)/waiter(s) belong to sessions of other roles, \
         whose state, client, times and statements this role may not see; \
         grant it pg_read_all_stats (or use a superuser) to see them"
    )
}
