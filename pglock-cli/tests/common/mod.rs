//! Helpers of the command's live tests: the throwaway database, `psql` sessions that
//! hold or wait for locks, a watcher that waits on `pg_locks`, and the binary itself.

#![allow(dead_code)] // each test file uses its own part of these helpers

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pglock_runtime::testdb::{self, TestDb};
use tokio::runtime::Runtime;

/// How long a test waits for the server to reach a state before it fails: generous,
/// the machine is shared.
const PATIENCE: Duration = Duration::from_secs(30);

/// A connection to the test database for checks, with a runtime of its own (the
/// tests are plain `#[test]` fns, so the binary can run while locks stay held).
pub struct Db {
    pub runtime: Runtime,
    pub client: tokio_postgres::Client,
    pub url: String,
}

impl Db {
    /// The process's shared test database.
    pub fn shared() -> Db {
        Db::of(testdb::shared())
    }

    /// A connection to `db`.
    pub fn of(db: &TestDb) -> Db {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let client = runtime
            .block_on(db.connect())
            .expect("connect to the test database");
        Db {
            runtime,
            client,
            url: db.url().to_string(),
        }
    }

    /// Runs `sql` (one boolean column, one row) until it is true; panics after
    /// [`PATIENCE`] naming `what`.
    pub fn wait_until(&self, what: &str, sql: &str) {
        let start = Instant::now();
        loop {
            let row = self
                .runtime
                .block_on(self.client.query_one(sql, &[]))
                .unwrap_or_else(|e| panic!("{what}: {sql}: {e}"));
            if row.get::<_, bool>(0) {
                return;
            }
            assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The pid of the session whose `application_name` is `app`, once it exists.
    pub fn pid_of(&self, app: &str) -> i32 {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = '{app}')"
        );
        self.wait_until(&format!("session {app} is connected"), &sql);
        let row = self
            .runtime
            .block_on(self.client.query_one(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            ))
            .expect("read the pid");
        row.get(0)
    }

    /// Waits until `pid` holds (`granted`) or waits for (`!granted`) the advisory lock
    /// `classid/objid/objsubid`.
    pub fn wait_lock(&self, pid: i32, raw: (u32, u32, i32), granted: bool) {
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = {pid} \
             AND classid::int8 = {} AND objid::int8 = {} AND objsubid = {} AND granted = {granted})",
            raw.0, raw.1, raw.2
        );
        self.wait_until(
            &format!("pid {pid} has lock {raw:?} granted={granted}"),
            &sql,
        );
    }

    /// How many sessions hold the advisory lock `classid/objid/objsubid` now.
    pub fn holders(&self, raw: (u32, u32, i32)) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::int8 = {} AND objid::int8 = {} AND objsubid = {}",
            raw.0, raw.1, raw.2
        );
        let row = self
            .runtime
            .block_on(self.client.query_one(sql.as_str(), &[]))
            .expect("count holders");
        row.get(0)
    }

    /// Runs one statement.
    pub fn execute(&self, sql: &str) {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

/// The `pg_locks` form of the key a name hashes to.
pub fn raw_of_name(name: &str) -> (u32, u32, i32) {
    raw_of_bigint(pglock_runtime::LockKey::from_name(name).bigint())
}

/// The `pg_locks` form of a bigint key.
pub fn raw_of_bigint(key: i64) -> (u32, u32, i32) {
    (((key as u64) >> 32) as u32, key as u64 as u32, 1)
}

trait Bigint {
    fn bigint(self) -> i64;
}

impl Bigint for pglock_runtime::LockKey {
    fn bigint(self) -> i64 {
        match self {
            pglock_runtime::LockKey::BigInt(k) => k,
            pglock_runtime::LockKey::Pair(..) => panic!("a name hashes to a bigint key"),
        }
    }
}

/// A `psql` session that runs `sql` and then stays connected, idle (or still
/// waiting), until dropped: its statements are written to its standard input, which
/// stays open.
pub struct Psql {
    child: Child,
}

impl Psql {
    /// Starts `psql` on `url` with `application_name` `app`, running `sql`.
    pub fn start(url: &str, app: &str, sql: &str) -> Psql {
        let mut child = Command::new(psql())
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
            .env("PGAPPNAME", app)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn psql");
        let stdin = child.stdin.as_mut().expect("psql's stdin");
        writeln!(stdin, "{sql}").expect("write to psql");
        stdin.flush().expect("flush psql's stdin");
        Psql { child }
    }

    /// Whether psql is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `psql` from `PATH`, else from the newest installed server.
pub fn psql() -> PathBuf {
    let on_path = Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return PathBuf::from("psql");
    }
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("bin/psql"))
        .filter(|p| p.exists())
        .collect();
    installed.sort();
    installed
        .pop()
        .expect("psql is installed (postgresql-client)")
}

/// The `pglock` binary, with `DATABASE_URL` set to `url`.
pub fn pglock(url: &str) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pglock"));
    cmd.env("DATABASE_URL", url)
        .timeout(Duration::from_secs(60));
    cmd
}

/// The output of a run, as text.
pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The standard error of a run, as text.
pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
