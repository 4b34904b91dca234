//! The configuration and user list of a throwaway PgBouncer, written to its own directory.

use std::path::Path;

/// What the configuration depends on.
pub(crate) struct BouncerConf<'a> {
    /// Where it listens, on 127.0.0.1.
    pub(crate) port: u16,
    /// The cluster's port on 127.0.0.1.
    pub(crate) server_port: u16,
    /// Whether the cluster has TLS on (then PgBouncer uses TLS to reach it).
    pub(crate) server_tls: bool,
    /// At most this many server connections (for all its clients together).
    pub(crate) server_connections: u32,
    /// Its directory (user list, pid file, log).
    pub(crate) dir: &'a Path,
}

/// The user list: `postgres`, no password (the cluster trusts local TCP clients).
pub(crate) const USERLIST: &str = "\"postgres\" \"\"\n";

impl BouncerConf<'_> {
    /// `pgbouncer.ini`: transaction pooling, every database of the cluster, no Unix socket
    /// (so nothing lands in a shared `/tmp`), `postgres` as admin for `SHOW` commands.
    pub(crate) fn render(&self) -> String {
        let dir = self.dir.display();
        let tls = if self.server_tls {
            // PgBouncer does not verify the server here; the test clients talk to PgBouncer.
            "server_tls_sslmode = require\n"
        } else {
            ""
        };
        format!(
            "[databases]\n\
             * = host=127.0.0.1 port={server_port}\n\
             \n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             pool_mode = transaction\n\
             default_pool_size = {n}\n\
             max_db_connections = {n}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 1000\n\
             auth_type = trust\n\
             auth_file = {dir}/userlist.txt\n\
             admin_users = postgres\n\
             ignore_startup_parameters = extra_float_digits\n\
             pidfile = {dir}/pgbouncer.pid\n\
             logfile = {dir}/pgbouncer.log\n\
             {tls}",
            server_port = self.server_port,
            port = self.port,
            n = self.server_connections,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_pooling_in_front_of_the_cluster() {
        let conf = BouncerConf {
            port: 6500,
            server_port: 5500,
            server_tls: true,
            server_connections: 2,
            dir: Path::new("/tmp/b"),
        };
        let text = conf.render();
        for line in [
            "* = host=127.0.0.1 port=5500\n",
            "listen_port = 6500\n",
            "pool_mode = transaction\n",
            "default_pool_size = 2\n",
            "pidfile = /tmp/b/pgbouncer.pid\n",
            "server_tls_sslmode = require\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text}");
        }
    }
}
