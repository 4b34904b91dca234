//! [`Cluster`]: a throwaway PostgreSQL cluster owned by one test.

use std::path::Path;

use super::server::Server;
use super::{ClusterBuilder, TestDb, TestDbError};

/// An owned throwaway cluster, always started from the installed server binaries (it ignores
/// `DATABASE_URL`): for tests that stop, restart or stall the server, or need special
/// settings.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and removes its directory, and
/// waits until both are done. If the process ends without dropping it (panic with
/// `panic = "abort"`, abort, SIGKILL, a `static`), its watchdog does the same moments later;
/// see the [module docs](super).
///
/// ```no_run
/// use pglock_runtime::testdb::Cluster;
///
/// let cluster = Cluster::start_with(&[("max_locks_per_transaction", "16")])?;
/// let pool = cluster.db().pool(4);
/// cluster.restart()?; // sessions are cut; the same URL works again afterwards
/// # Ok::<(), pglock_runtime::testdb::TestDbError>(())
/// ```
#[derive(Debug)]
pub struct Cluster {
    db: TestDb,
    server: Server,
}

impl Cluster {
    /// Starts a cluster with the default test settings (durability off,
    /// `max_connections = 200`).
    pub fn start() -> Result<Cluster, TestDbError> {
        Cluster::start_with(&[])
    }

    /// Starts a cluster with extra server settings, as `postgres -c name=value` would; they
    /// override the defaults and survive [`Cluster::restart`]. (They are written to a file
    /// that `postgresql.conf` includes, so `ALTER SYSTEM` can still override them.) Names
    /// are checked as [`ClusterBuilder::setting`] says.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<Cluster, TestDbError> {
        settings
            .iter()
            .fold(Cluster::builder(), |b, (name, value)| {
                b.setting(*name, *value)
            })
            .start()
    }

    /// The options to start a cluster with: settings, TLS ([`ClusterBuilder`]).
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    pub(crate) fn start_from(options: &ClusterBuilder) -> Result<Cluster, TestDbError> {
        let server = Server::create(options)?;
        let db = TestDb::local(server.port(), server.ca().cloned());
        Ok(Cluster { db, server })
    }

    /// Where to connect: `postgres://postgres@127.0.0.1:<port>/postgres`; with TLS on,
    /// [`TestDb::tls_pool`] gives pools that use it.
    pub fn db(&self) -> &TestDb {
        &self.db
    }

    /// `pg_ctl restart -m fast`: every session is terminated; the server comes back on the
    /// same port with the same settings, and this returns once it accepts connections.
    pub fn restart(&self) -> Result<(), TestDbError> {
        self.server.restart()
    }

    /// `pg_ctl restart -m immediate`: the server is killed without a checkpoint, as in a
    /// crash, and recovers from its write-ahead log on the way up (what a power cut or an
    /// OOM kill does); returns once it accepts connections.
    pub fn restart_immediate(&self) -> Result<(), TestDbError> {
        self.server.restart_immediate()
    }

    /// `pg_ctl stop -m fast`: terminates every session and waits until the server is down.
    /// Start it again with [`Cluster::start_again`].
    pub fn stop(&self) -> Result<(), TestDbError> {
        self.server.stop()
    }

    /// Starts the server again after [`Cluster::stop`], on the same port with the same
    /// settings; returns once it accepts connections.
    pub fn start_again(&self) -> Result<(), TestDbError> {
        self.server.start()
    }

    /// The pid of the postmaster (it changes with each restart). Panics while the server is
    /// stopped.
    pub fn postmaster_pid(&self) -> u32 {
        self.server.postmaster_pid().unwrap_or_else(|| {
            panic!(
                "the test cluster in {} is not running: no postmaster.pid",
                self.data_dir().display()
            )
        })
    }

    /// The data directory (`PGDATA`); the server log is `../server.log` beside it.
    pub fn data_dir(&self) -> &Path {
        self.server.data()
    }

    /// The TCP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.server.port()
    }

    /// The directory of the server programs used (`initdb`, `pg_ctl`, `postgres`, ...).
    pub fn bin_dir(&self) -> &Path {
        self.server.bin_dir()
    }
}
