//! The directory of one throwaway cluster, guarded by its watchdog from the moment it exists.
//!
//! Layout: `<TMPDIR>/pglock-testdb-<pid>-<n>-<nanos>/` holds `data/` (the data directory),
//! `server.log` and the server's Unix socket.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::bin::Binaries;
use super::os_user::RunAs;
use super::watchdog::Watchdog;
use super::TestDbError;

/// A cluster's directory; dropping it stops the server in it and removes it.
#[derive(Debug)]
pub(crate) struct ClusterDir {
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    _watchdog: Watchdog,
}

impl ClusterDir {
    /// Creates a fresh directory owned by `run_as`, with a watchdog already on duty.
    pub(crate) fn create(bin: &Binaries, run_as: RunAs) -> Result<ClusterDir, TestDbError> {
        let root = fresh_dir("pglock-testdb")?;
        let data = root.join("data");
        let watchdog = run_as
            .own(&root)
            .and_then(|()| Watchdog::spawn(bin, run_as, &data, &root));
        match watchdog {
            Ok(watchdog) => Ok(ClusterDir {
                log: root.join("server.log"),
                root,
                data,
                _watchdog: watchdog,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&root);
                Err(e)
            }
        }
    }

    /// The directory itself (also the server's socket directory).
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The data directory (`PGDATA`).
    pub(crate) fn data(&self) -> &Path {
        &self.data
    }

    /// The server log.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }
}

/// Creates a new directory `<TMPDIR>/<prefix>-<pid>-<n>-<nanos>`, mode 0700.
pub(crate) fn fresh_dir(prefix: &str) -> Result<PathBuf, TestDbError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let tmp = std::env::temp_dir();
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = tmp.join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&root) {
            Ok(()) => return Ok(root),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(TestDbError::io(format!(
                    "create a directory in {} (set TMPDIR to a writable directory)",
                    tmp.display()
                ))(e))
            }
        }
    }
}
