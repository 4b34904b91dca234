//! `pglock release NAME|KEY --cancel|--terminate`: show which sessions hold the lock,
//! ask, signal each one that still holds it, then report from `pg_locks` what changed.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use tokio_postgres::Client;

use crate::cli::{Connection, ReleaseArgs, ViewArgs};
use crate::connect::connect;
use crate::error::CliError;
use crate::keyspace::PgKey;
use crate::listing::{Entry, Lock};
use crate::target::Target;
use crate::view;

/// Whether session `$1` holds the lock `$2..$4` (`classid`, `objid`, `objsubid`).
macro_rules! holds {
    () => {
        "EXISTS (SELECT 1 FROM pg_catalog.pg_locks \
         WHERE locktype OPERATOR(pg_catalog.=) 'advisory' AND granted \
         AND pid OPERATOR(pg_catalog.=) $1 \
         AND database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database \
                          WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
         AND classid::pg_catalog.int8 OPERATOR(pg_catalog.=) $2 \
         AND objid::pg_catalog.int8 OPERATOR(pg_catalog.=) $3 \
         AND objsubid OPERATOR(pg_catalog.=) $4::pg_catalog.int2)"
    };
}

const STILL_HOLDS: &str = concat!("SELECT ", holds!());
/// Signals `$1` only if, at that moment, it still holds the lock: no row if not.
const CANCEL: &str = concat!("SELECT pg_catalog.pg_cancel_backend($1) WHERE ", holds!());
const TERMINATE: &str = concat!(
    "SELECT pg_catalog.pg_terminate_backend($1) WHERE ",
    holds!()
);

/// What happened to one holder.
enum Outcome {
    /// It no longer held the lock when its turn came: nothing was sent.
    AlreadyGone,
    /// The signal was sent and the session no longer holds the lock.
    Released,
    /// The signal was sent (or refused by the server with `false`) and the session
    /// still holds the lock after `--wait`.
    StillHeld { sent: bool },
    /// The server refused the signal (e.g. no permission).
    Failed(String),
}

/// Shows the plan, asks, acts, reports. Exit 0 only if every holder let go.
pub async fn run(connection: &Connection, args: &ReleaseArgs) -> Result<ExitCode, CliError> {
    let target = Target::parse(&args.lock)?;
    let client = connect(connection).await?;
    let view_args = ViewArgs {
        names: target.name.iter().cloned().collect(),
        waiting: false,
    };
    let listing = view::read(&client, &view_args).await?.only(target.key);
    let Some(lock) = listing.locks.first() else {
        return Err(CliError::Refused(format!(
            "nobody holds {}: nothing to release",
            target.describe()
        )));
    };
    let pids = plan(&target, lock, args);
    if pids.is_empty() {
        return Err(CliError::NotReleased(format!(
            "no session holding {} can be signalled (see above); nothing done",
            target.describe()
        )));
    }
    confirm(args)?;
    let mut failures = 0;
    for pid in pids {
        let outcome = act(&client, &target, pid, args).await?;
        failures += usize::from(!matches!(outcome, Outcome::Released | Outcome::AlreadyGone));
        println!("pid {pid}: {}", describe(&outcome));
    }
    let after = view::read(&client, &view_args).await?.only(target.key);
    println!("{}", summary(&target, after.locks.first()));
    if failures > 0 {
        return Err(CliError::NotReleased(format!(
            "{failures} holder(s) of {} did not let go",
            target.describe()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what will be done to whom; returns the pids to signal.
fn plan(target: &Target, lock: &Lock, args: &ReleaseArgs) -> Vec<i32> {
    let verb = if args.terminate {
        "terminate (pg_terminate_backend) the session"
    } else {
        "cancel (pg_cancel_backend) the running statement"
    };
    println!(
        "{} is held by {} session(s):",
        target.describe(),
        lock.holders.len()
    );
    let mut pids = Vec::new();
    for holder in &lock.holders {
        println!("  {}", who(holder));
        match (holder.row.pid, &holder.row.prepared) {
            (Some(pid), _) => {
                pids.push(pid);
                let idle =
                    holder.row.session.as_ref().and_then(|s| s.state.as_deref()) != Some("active");
                if args.cancel && idle {
                    println!(
                        "    note: pid {pid} runs no statement: a cancel interrupts nothing, and a \
                         session lock stays held; --terminate ends the session"
                    );
                }
            }
            (None, Some(gid)) => println!(
                "    cannot be signalled: run COMMIT PREPARED '{gid}' or ROLLBACK PREPARED '{gid}'"
            ),
            (None, None) => println!("    cannot be signalled: no server process"),
        }
    }
    if !lock.waiters.is_empty() {
        println!(
            "{} session(s) wait for it; they are left alone.",
            lock.waiters.len()
        );
    }
    if !pids.is_empty() {
        let list: Vec<String> = pids.iter().map(i32::to_string).collect();
        println!("pglock will {verb} of pid {}.", list.join(", "));
    }
    pids
}

fn who(entry: &Entry) -> String {
    let r = &entry.row;
    let Some(s) = &r.session else {
        return match (&r.pid, &r.prepared) {
            (_, Some(gid)) => format!("prepared transaction '{gid}'"),
            (Some(pid), None) => format!("pid {pid} (session gone)"),
            (None, None) => "an unknown holder".into(),
        };
    };
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.into());
    format!(
        "pid {}  user {}  application {}  client {}  state {}",
        r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
        or(&s.user, "-"),
        or(&s.application, "-"),
        or(&s.client_addr, if s.hidden { "<hidden>" } else { "local" }),
        or(&s.state, "<hidden>"),
    )
}

/// Asks on a terminal; without one, only `--yes` lets it act.
fn confirm(args: &ReleaseArgs) -> Result<(), CliError> {
    if args.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Refused(
            "standard input is not a terminal, so pglock cannot ask: pass --yes to act; nothing done"
                .into(),
        ));
    }
    eprint!("Proceed? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CliError::Refused("not confirmed; nothing done".into())),
    }
}

/// Signals `pid` if it still holds the lock, then waits (up to `--wait`) for
/// `pg_locks` to show it no longer does.
async fn act(
    client: &Client,
    target: &Target,
    pid: i32,
    args: &ReleaseArgs,
) -> Result<Outcome, CliError> {
    let key = PgKey::of(target.key);
    let (classid, objid) = (i64::from(key.classid), i64::from(key.objid));
    let objsubid = key.objsubid as i16;
    let sql = if args.terminate { TERMINATE } else { CANCEL };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&pid, &classid, &objid, &objsubid];
    let sent: bool = match client.query_opt(sql, &params).await {
        Ok(None) => return Ok(Outcome::AlreadyGone),
        Ok(Some(row)) => row.try_get(0).map_err(|source| CliError::Reply {
            column: "pg_terminate_backend",
            source,
        })?,
        Err(e) => {
            return Ok(Outcome::Failed(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string()),
            ))
        }
    };
    let deadline = Instant::now() + args.wait;
    loop {
        let holds: bool = client
            .query_one(STILL_HOLDS, &params)
            .await
            .map_err(|source| CliError::Query {
                what: "checking pg_locks",
                source,
            })?
            .try_get(0)
            .map_err(|source| CliError::Reply {
                column: "exists",
                source,
            })?;
        if !holds {
            return Ok(Outcome::Released);
        }
        if Instant::now() >= deadline {
            return Ok(Outcome::StillHeld { sent });
        }
        // Polling pg_locks is the only way to see another session let go.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::AlreadyGone => "no longer held the lock; nothing sent".into(),
        Outcome::Released => "signalled; it no longer holds the lock".into(),
        Outcome::StillHeld { sent: true } => "signalled, but it still holds the lock".into(),
        Outcome::StillHeld { sent: false } => {
            "the server did not signal it (pg_*_backend returned false); it still holds the lock"
                .into()
        }
        Outcome::Failed(why) => format!("not signalled: {why}"),
    }
}

fn summary(target: &Target, lock: Option<&Lock>) -> String {
    match lock.filter(|l| !l.holders.is_empty()) {
        None => format!("{} is now free.", target.describe()),
        Some(lock) => {
            let holders: Vec<String> = lock.holders.iter().map(who).collect();
            format!(
                "{} is now held by: {}",
                target.describe(),
                holders.join("; ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CANCEL, STILL_HOLDS, TERMINATE};

    /// The signals' statements leave nothing to the search_path: the runtime's
    /// scanner (bare operators, unqualified calls, casts and relations).
    #[test]
    fn the_signals_leave_nothing_to_the_search_path() {
        for (name, text) in [
            ("STILL_HOLDS", STILL_HOLDS),
            ("CANCEL", CANCEL),
            ("TERMINATE", TERMINATE),
        ] {
            assert_eq!(
                pglock_runtime::__unqualified_sql(text),
                None,
                "{name}: {text}"
            );
        }
    }
}
