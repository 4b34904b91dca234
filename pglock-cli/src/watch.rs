//! `pglock watch`: the `ls` view, redrawn every interval until Ctrl-C.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{Connection, WatchArgs};
use crate::connect::connect;
use crate::error::CliError;
use crate::{table, view};

/// Clears a terminal and puts the cursor home (ANSI), so each view replaces the last.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// Redraws until Ctrl-C (exit 0) or an error (e.g. the connection is lost).
pub async fn run(connection: &Connection, args: &WatchArgs) -> Result<ExitCode, CliError> {
    let client = connect(connection).await?;
    let terminal = std::io::stdout().is_terminal();
    // Installed before the first view is drawn, so a Ctrl-C at any moment from then
    // on ends the loop cleanly instead of killing the process.
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let listing = view::read(&client, &args.view).await?;
        let mut screen = String::new();
        if terminal {
            screen.push_str(CLEAR);
        }
        screen.push_str(&format!(
            "pglock watch: every {:?}, Ctrl-C to stop\n",
            args.interval
        ));
        screen.push_str(&table::render(&listing));
        let hidden = listing.hidden();
        if hidden > 0 {
            screen.push_str(&view::hidden_note(hidden));
            screen.push('\n');
        }
        let mut out = std::io::stdout().lock();
        out.write_all(screen.as_bytes())?;
        out.flush()?;
        drop(out);
        tokio::select! {
            _ = interrupt.recv() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(args.interval) => {}
        }
    }
}
