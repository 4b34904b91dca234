//! Client authentication of a cluster that requires TLS: `pg_hba.conf` admits TCP clients
//! only over TLS (`hostssl`) and rejects plain ones by name, as managed services do.

use super::dir::ClusterDir;
use super::TestDbError;

/// Only the Unix socket (for the server's own tools) and TLS over TCP are let in.
const TLS_ONLY: &str = "\
# pglock testdb: TCP clients must use TLS, as on managed PostgreSQL services
local     all all              trust
hostssl   all all 127.0.0.1/32 trust
hostnossl all all 127.0.0.1/32 reject
";

/// Replaces the `pg_hba.conf` written by `initdb` (the server reads it at start).
pub(crate) fn require_tls(dir: &ClusterDir) -> Result<(), TestDbError> {
    let path = dir.data().join("pg_hba.conf");
    // Written in place: the file keeps the owner and mode initdb gave it.
    std::fs::write(&path, TLS_ONLY).map_err(TestDbError::io(format!("write {}", path.display())))
}
