//! [`PgBouncer`]: Debian's `pgbouncer` in transaction pooling mode in front of a throwaway
//! cluster, for tests of what works through a connection pooler and what does not.
//!
//! It runs in the foreground as a child of this process, as the cluster's OS user (it
//! refuses to run as root), from a directory of its own under `TMPDIR` holding its
//! configuration, user list, pid file and log. Dropping it kills it and removes the
//! directory; a watchdog (the cluster's mechanism: see the [module docs](super)) does the
//! same if this process ends without dropping it, SIGKILL included.

use std::fs::File;
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bouncer_bin::find_pgbouncer;
use super::bouncer_conf::{BouncerConf, USERLIST};
use super::dir::fresh_dir;
use super::os_user::RunAs;
use super::watchdog::Watchdog;
use super::{port, Cluster, TestDb, TestDbError};

/// How long PgBouncer may take to accept connections.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try when the chosen one gets taken before PgBouncer binds it.
const PORT_TRIES: usize = 8;

/// A running PgBouncer in transaction pooling mode; dropped, it is killed and its directory
/// removed.
///
/// ```no_run
/// use pglock_runtime::testdb::{Cluster, PgBouncer};
///
/// let cluster = Cluster::start()?;
/// let bouncer = PgBouncer::transaction_pooling(&cluster, 2)?;
/// let pool = bouncer.db().pool(16); // 16 clients share 2 server connections
/// # Ok::<(), pglock_runtime::testdb::TestDbError>(())
/// ```
#[derive(Debug)]
pub struct PgBouncer {
    db: TestDb,
    child: Child,
    dir: PathBuf,
    _watchdog: Watchdog,
}

impl PgBouncer {
    /// Starts PgBouncer (`pool_mode = transaction`) on a free port of 127.0.0.1 in front of
    /// every database of `cluster`, with at most `server_connections` connections to the
    /// server shared by all its clients. When the cluster has TLS on, PgBouncer reaches it
    /// over TLS (`server_tls_sslmode = require`); its clients talk to it in plain TCP.
    pub fn transaction_pooling(
        cluster: &Cluster,
        server_connections: u32,
    ) -> Result<PgBouncer, TestDbError> {
        let program = find_pgbouncer()?;
        let run_as = RunAs::detect()?;
        let dir = fresh_dir("pglock-testdb-pgbouncer")?;
        let watchdog = run_as
            .own(&dir)
            .and_then(|()| Watchdog::spawn_pgbouncer(run_as, &dir.join("pgbouncer.pid"), &dir));
        let watchdog = match watchdog {
            Ok(watchdog) => watchdog,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        let mut conf = BouncerConf {
            port: 0,
            server_port: cluster.port(),
            server_tls: cluster.db().has_tls(),
            server_connections,
            dir: &dir,
        };
        write_owned(&dir.join("userlist.txt"), USERLIST, run_as)?;
        for attempt in 1..=PORT_TRIES {
            conf.port = port::pick_free_port().map_err(TestDbError::io("find a free TCP port"))?;
            write_owned(&dir.join("pgbouncer.ini"), &conf.render(), run_as)?;
            let child = spawn(&program, &dir, run_as)?;
            match wait_until_listening(child, conf.port, &dir) {
                Ok(child) => {
                    return Ok(PgBouncer {
                        db: TestDb::local(conf.port, None),
                        child,
                        dir,
                        _watchdog: watchdog,
                    })
                }
                Err(e) if attempt < PORT_TRIES && is_port_taken(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Where its clients connect: `postgres://postgres@127.0.0.1:<its port>/postgres`
    /// (plain TCP).
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its directory (configuration, user list, pid file, `pgbouncer.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        // Its clients and server connections end with it; nothing of it needs to survive.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then the watchdog removes the directory (dropped after this, as a field).
    }
}

fn write_owned(path: &Path, text: &str, run_as: RunAs) -> Result<(), TestDbError> {
    std::fs::write(path, text).map_err(TestDbError::io(format!("write {}", path.display())))?;
    run_as.own(path)
}

/// Starts `pgbouncer <dir>/pgbouncer.ini` in the foreground, as `run_as`, in a process
/// group of its own (a Ctrl-C aimed at the tests is for the watchdog to handle), with
/// early errors (before its log file opens) in `stderr.log`.
fn spawn(program: &Path, dir: &Path, run_as: RunAs) -> Result<Child, TestDbError> {
    let stderr_path = dir.join("stderr.log");
    let stderr = File::create(&stderr_path)
        .map_err(TestDbError::io(format!("create {}", stderr_path.display())))?;
    let mut cmd = Command::new(program);
    cmd.arg(dir.join("pgbouncer.ini"))
        .current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0);
    run_as.apply(&mut cmd);
    cmd.spawn()
        .map_err(TestDbError::io(format!("run {}", program.display())))
}

/// Returns `child` once its port accepts TCP connections; if it exits first or the time is
/// up, kills it and returns an error with its log.
fn wait_until_listening(mut child: Child, port: u16, dir: &Path) -> Result<Child, TestDbError> {
    let deadline = Instant::now() + TIMEOUT;
    let addr = (Ipv4Addr::LOCALHOST, port).into();
    let reason = loop {
        match child.try_wait() {
            Ok(Some(status)) => break format!("it exited ({status})"),
            Ok(None) => {}
            Err(e) => break format!("could not watch it: {e}"),
        }
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            break format!("nothing accepted connections on 127.0.0.1:{port} within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    Err(TestDbError::PgBouncer {
        dir: dir.to_path_buf(),
        port,
        reason,
        log: format!("{}{}", read("stderr.log"), read("pgbouncer.log")),
    })
}

fn is_port_taken(e: &TestDbError) -> bool {
    matches!(e, TestDbError::PgBouncer { log, .. } if log.contains("Address already in use"))
}
