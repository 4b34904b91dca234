//! Finding the installed `pgbouncer` program.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::TestDbError;

/// Environment variable naming the `pgbouncer` program, overriding the search.
const PROGRAM_VAR: &str = "PGLOCK_TESTDB_PGBOUNCER";

/// Debian installs it in `/usr/sbin`, which a normal user's `PATH` often lacks.
const SBIN: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// `PGLOCK_TESTDB_PGBOUNCER` if set, else the first `pgbouncer` on `PATH`, else in the sbin
/// directories.
pub(crate) fn find_pgbouncer() -> Result<PathBuf, TestDbError> {
    if let Some(program) = std::env::var_os(PROGRAM_VAR).filter(|p| !p.is_empty()) {
        let program = PathBuf::from(program);
        return if is_executable(&program) {
            Ok(program)
        } else {
            Err(TestDbError::NoPgBouncer {
                looked: format!("{PROGRAM_VAR}={}", program.display()),
            })
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .collect();
    dirs.iter()
        .map(|dir| dir.join("pgbouncer"))
        .find(|p| is_executable(p))
        .ok_or_else(|| TestDbError::NoPgBouncer {
            looked: format!("PATH, {}", SBIN.join(", ")),
        })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
