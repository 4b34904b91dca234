//! [`TestDb`]: where a test connects, as a URL, a `tokio_postgres::Config` or a pool (plain,
//! or over TLS when its cluster has TLS on).

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::TestDbError;

/// The database tests talk to: `DATABASE_URL` if set, else a throwaway cluster
/// (see [`shared()`](super::shared) and [`Cluster`](super::Cluster)).
#[derive(Clone, Debug)]
pub struct TestDb {
    url: String,
    config: tokio_postgres::Config,
    /// The CA of the cluster's certificate, when it has TLS on.
    ca: Option<CertificateDer<'static>>,
}

impl TestDb {
    /// The database at `url` (a `postgres://` URL or a `key=value` connection string).
    pub fn from_url(url: &str) -> Result<TestDb, TestDbError> {
        let config = url
            .parse()
            .map_err(|source| TestDbError::BadDatabaseUrl { source })?;
        Ok(TestDb {
            url: url.to_string(),
            config,
            ca: None,
        })
    }

    /// The `postgres` database of a throwaway server on 127.0.0.1:`port`, whose TLS
    /// certificate (if any) `ca` signed.
    pub(crate) fn local(port: u16, ca: Option<CertificateDer<'static>>) -> TestDb {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname("postgres");
        TestDb { url, config, ca }
    }

    /// The connection URL, e.g. `postgres://postgres@127.0.0.1:20123/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection settings, to connect directly or to adjust (e.g. timeouts) first.
    pub fn config(&self) -> tokio_postgres::Config {
        self.config.clone()
    }

    /// A new deadpool pool of at most `max_size` connections, with
    /// [`RecyclingMethod::Fast`] (deadpool's default, what users have) and no TLS.
    pub fn pool(&self, max_size: usize) -> Pool {
        let manager = Manager::from_config(self.config(), NoTls, fast_recycling());
        build_pool(manager, max_size)
    }

    /// Whether the cluster was started with TLS on (so [`TestDb::tls_pool`] works).
    pub fn has_tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The connection settings with `sslmode=require`, as managed services document: use
    /// them with [`TestDb::tls_connector`]. [`TestDbError::TlsOff`] without TLS.
    pub fn tls_config(&self) -> Result<tokio_postgres::Config, TestDbError> {
        self.ca.as_ref().ok_or(TestDbError::TlsOff)?;
        let mut config = self.config();
        config.ssl_mode(SslMode::Require);
        Ok(config)
    }

    /// A rustls connector (`MakeTlsConnect`) that trusts only the CA the cluster generated
    /// at start, so it verifies the server's certificate and its name (`127.0.0.1`), which
    /// libpq's `sslmode=require` alone would not. [`TestDbError::TlsOff`] without TLS.
    pub fn tls_connector(&self) -> Result<MakeRustlsConnect, TestDbError> {
        super::tls::connector(self.ca.as_ref().ok_or(TestDbError::TlsOff)?)
    }

    /// As [`TestDb::pool`], over TLS: `sslmode=require` and [`TestDb::tls_connector`].
    /// [`TestDbError::TlsOff`] without TLS.
    pub fn tls_pool(&self, max_size: usize) -> Result<Pool, TestDbError> {
        let manager =
            Manager::from_config(self.tls_config()?, self.tls_connector()?, fast_recycling());
        Ok(build_pool(manager, max_size))
    }

    /// One new connection (no TLS); its connection task is spawned on the current tokio
    /// runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

fn fast_recycling() -> ManagerConfig {
    ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    }
}

fn build_pool(manager: Manager, max_size: usize) -> Pool {
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .expect("a pool without timeouts needs no runtime to build")
}
