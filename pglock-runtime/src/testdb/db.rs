//! [`TestDb`]: where a test connects, as a URL, a `tokio_postgres::Config` or a pool.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::TestDbError;

/// The database tests talk to: `DATABASE_URL` if set, else a throwaway cluster
/// (see [`shared()`](super::shared) and [`Cluster`](super::Cluster)).
#[derive(Clone, Debug)]
pub struct TestDb {
    url: String,
    config: tokio_postgres::Config,
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
        })
    }

    /// The `postgres` database of a throwaway server on 127.0.0.1:`port`.
    pub(crate) fn local(port: u16) -> TestDb {
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user("postgres")
            .dbname("postgres");
        TestDb { url, config }
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
        let manager = Manager::from_config(
            self.config(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(max_size)
            .build()
            .expect("a pool without timeouts needs no runtime to build")
    }

    /// One new connection (no TLS); its connection task is spawned on the current tokio
    /// runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}
