//! The watchdog: a small `sh` process that stops a cluster (or a PgBouncer) and removes its
//! directory once this process lets go of it, by dropping it or by ending in any way
//! (SIGKILL included).
//!
//! Its standard input is a pipe whose write end only this process holds (std opens pipes
//! close-on-exec, so no other child inherits it). The kernel closes that end when the
//! process ends, however it ends; the watchdog then reads end of file and cleans up. It
//! runs in a process group of its own and ignores the usual termination signals, so a
//! Ctrl-C or a kill of the test's process group does not take it down with the tests.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use super::bin::Binaries;
use super::os_user::RunAs;
use super::TestDbError;

/// `$1` = pg_ctl, `$2` = data directory, `$3` = directory to remove.
const CLUSTER_SCRIPT: &str = r#"
trap '' HUP INT QUIT TERM PIPE
while read -r _; do :; done
kids() {
    for s in /proc/[0-9]*/stat; do
        read -r p _ _ pp _ < "$s" && [ "$pp" = "$1" ] && echo "$p"
    done 2>/dev/null
}
pm=
[ -r "$2/postmaster.pid" ] && read -r pm < "$2/postmaster.pid"
if [ -n "$pm" ] && grep -qaF -- "$2" "/proc/$pm/cmdline" 2>/dev/null; then
    k=$(kids "$pm")
    kill -CONT "$pm" $k 2>/dev/null
    "$1" stop -D "$2" -m immediate -w -t 10 >/dev/null 2>&1 || kill -KILL "$pm" $k 2>/dev/null
fi
rm -rf -- "$3"
"#;

/// `$1` = pid file, `$2` = directory to remove. The pid is only trusted if that process's
/// command line names the directory (its configuration file is in it): a stale pid file
/// never gets another process killed.
const PGBOUNCER_SCRIPT: &str = r#"
trap '' HUP INT QUIT TERM PIPE
while read -r _; do :; done
pid=
[ -r "$1" ] && read -r pid < "$1"
if [ -n "$pid" ] && grep -qaF -- "$2" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
fi
rm -rf -- "$2"
"#;

/// A running watchdog; dropping it makes it clean up, and waits until it has.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts a watchdog for the cluster whose data directory is `data`, inside `dir`.
    pub(crate) fn spawn(
        bin: &Binaries,
        run_as: RunAs,
        data: &Path,
        dir: &Path,
    ) -> Result<Watchdog, TestDbError> {
        let pg_ctl = bin.program("pg_ctl");
        Watchdog::run(CLUSTER_SCRIPT, &[&pg_ctl, data, dir], run_as)
    }

    /// Starts a watchdog for the PgBouncer whose pid file is `pidfile`, inside `dir`.
    pub(crate) fn spawn_pgbouncer(
        run_as: RunAs,
        pidfile: &Path,
        dir: &Path,
    ) -> Result<Watchdog, TestDbError> {
        Watchdog::run(PGBOUNCER_SCRIPT, &[pidfile, dir], run_as)
    }

    fn run(script: &str, args: &[&Path], run_as: RunAs) -> Result<Watchdog, TestDbError> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .arg("pglock-testdb-watchdog")
            .args(args)
            .current_dir("/")
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        run_as.apply(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(TestDbError::io("start the watchdog (/bin/sh)"))?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.pipe.take());
        let _ = self.child.wait();
    }
}
