//! This test binary, re-run as a child process that starts clusters and then dies in a
//! chosen way; the parent side runs it and reports what it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use pglock_runtime::testdb::{self, Cluster, PgBouncer};

use crate::support::{block_on, query_text};

const MODE_VAR: &str = "PGLOCK_TESTDB_CHILD";
/// Set (to anything) when the child must also start a PgBouncer in front of its cluster.
const BOUNCER_VAR: &str = "PGLOCK_TESTDB_CHILD_PGBOUNCER";
const MARK: &str = "PGLOCK_TESTDB_STARTED";

/// How the child ends, after it has started the shared cluster and an owned one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Death {
    /// Its test panics (the harness reports it and the process exits with 101).
    Panic,
    /// It calls `std::process::abort()`.
    Abort,
    /// The parent SIGKILLs its whole process group, as a CI timeout or Ctrl-C might.
    KillGroup,
    /// It SIGSTOPs the owned cluster's postmaster (a stalled server), then is killed as above.
    StallThenKillGroup,
}

/// A cluster the child started: its directory and postmaster pid.
#[derive(Debug)]
pub struct Started {
    pub root: PathBuf,
    pub pid: u32,
}

/// The child side. In a normal run (no `PGLOCK_TESTDB_CHILD`) it does nothing.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(MODE_VAR) else {
        return;
    };
    let data = block_on(query_text(testdb::shared(), "SHOW data_directory"));
    let data = PathBuf::from(data);
    let shared_pid = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    let shared_pid = shared_pid.lines().next().unwrap();
    let owned = Cluster::start().unwrap();
    let bouncer =
        std::env::var_os(BOUNCER_VAR).map(|_| PgBouncer::transaction_pooling(&owned, 1).unwrap());
    if mode == "StallThenKillGroup" {
        signal("-STOP", &owned.postmaster_pid().to_string());
    }
    let mut out = std::io::stdout().lock();
    let owned_root = owned.data_dir().parent().unwrap();
    let shared_root = data.parent().unwrap();
    writeln!(out, "{MARK} {} {shared_pid}", shared_root.display()).unwrap();
    writeln!(
        out,
        "{MARK} {} {}",
        owned_root.display(),
        owned.postmaster_pid()
    )
    .unwrap();
    if let Some(bouncer) = &bouncer {
        writeln!(out, "{MARK} {} {}", bouncer.dir().display(), bouncer.pid()).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    match mode.as_str() {
        "Panic" => panic!("the child panics on purpose"),
        "Abort" => std::process::abort(),
        _ => std::thread::sleep(Duration::from_secs(120)), // until the parent kills us
    }
}

/// Runs the child, lets it die as `death` says, checks that it did, and returns the shared
/// cluster and the owned cluster it had started.
pub fn run_child(death: Death) -> (Started, Started) {
    let [shared, owned] = run(death, false).try_into().unwrap();
    (shared, owned)
}

/// As [`run_child`], with a PgBouncer started in front of the owned cluster too: returns
/// the shared cluster, the owned one and the PgBouncer (its directory and pid).
pub fn run_child_with_pgbouncer(death: Death) -> [Started; 3] {
    run(death, true).try_into().unwrap()
}

fn run(death: Death, pgbouncer: bool) -> Vec<Started> {
    let expected = if pgbouncer { 3 } else { 2 };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if pgbouncer {
        cmd.env(BOUNCER_VAR, "1");
    }
    let mut child = cmd
        .args([
            "child::child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MODE_VAR, format!("{death:?}"))
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness may print "test ... " before our output on the same line.
            if let Some(at) = line.find(MARK) {
                let (root, pid) = line[at + MARK.len()..].trim().rsplit_once(' ').unwrap();
                let _ = tx.send(Started {
                    root: root.into(),
                    pid: pid.parse().unwrap(),
                });
            }
        }
    });
    let mut started = Vec::new();
    while started.len() < expected {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(s) => started.push(s),
            Err(e) => {
                if e == std::sync::mpsc::RecvTimeoutError::Timeout {
                    signal("-KILL", &format!("-{pgid}"));
                }
                let status = child.wait().unwrap();
                panic!(
                    "the child did not report its clusters ({status}); its stderr:\n{}",
                    stderr.join().unwrap()
                );
            }
        }
    }
    if matches!(death, Death::KillGroup | Death::StallThenKillGroup) {
        signal("-KILL", &format!("-{pgid}"));
    }
    let status = child.wait().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(
        died_as(death, status),
        "child ended with {status}, stderr:\n{stderr}"
    );
    started
}

fn died_as(death: Death, status: ExitStatus) -> bool {
    match death {
        Death::Panic => status.code() == Some(101),
        Death::Abort => status.signal() == Some(6),
        Death::KillGroup | Death::StallThenKillGroup => status.signal() == Some(9),
    }
}

/// `kill <sig> -- <target>` (a negative target is a process group).
fn signal(sig: &str, target: &str) {
    let status = Command::new("kill")
        .args([sig, "--", target])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} -- {target} failed");
}
