//! [`ClusterBuilder`]: the options a throwaway cluster starts with (settings, TLS).

use super::{Cluster, TestDbError};

/// Whether a cluster speaks TLS, and whether it insists on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tls {
    /// No TLS (`ssl = off`): the default.
    #[default]
    Off,
    /// `ssl = on` with a certificate generated at start; plain connections are still let in.
    On,
    /// As [`Tls::On`], and `pg_hba.conf` admits TCP clients only over TLS (`hostssl`), so a
    /// plain connection is refused, as managed PostgreSQL services do.
    Required,
}

/// How to start a [`Cluster`]: `Cluster::builder().setting(..).tls(..).start()`.
///
/// ```no_run
/// use pglock_runtime::testdb::{Cluster, Tls};
///
/// let cluster = Cluster::builder()
///     .tls(Tls::Required)
///     .setting("idle_session_timeout", "2s")
///     .setting("max_prepared_transactions", "10")
///     .start()?;
/// let pool = cluster.db().tls_pool(4)?; // sslmode=require, trusts the generated CA
/// # Ok::<(), pglock_runtime::testdb::TestDbError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClusterBuilder {
    pub(crate) settings: Vec<(String, String)>,
    pub(crate) tls: Tls,
}

impl ClusterBuilder {
    /// Adds a server setting, as `postgres -c name=value` would: it overrides the defaults
    /// and survives [`Cluster::restart`]. The name is checked before anything starts: one
    /// the installed server does not know is [`TestDbError::UnknownSetting`] (names with a
    /// `.` are custom settings and pass); a value the server rejects fails the start with
    /// the server's log in the error.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Whether the cluster uses TLS (default [`Tls::Off`]).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Starts the cluster.
    pub fn start(&self) -> Result<Cluster, TestDbError> {
        Cluster::start_from(self)
    }

    /// The settings as the configuration file takes them.
    pub(crate) fn setting_pairs(&self) -> Vec<(&str, &str)> {
        self.settings
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }
}
