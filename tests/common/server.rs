//! Connections to the test database (`DATABASE_URL` or the throwaway cluster), and
//! lock names no other test uses.

use deadpool_postgres::Pool;

/// A pool on the test database.
pub fn pool(max_size: usize) -> Pool {
    pglock::testdb::shared().pool(max_size)
}

/// A pool whose connections carry `application_name = name`, so the test can find
/// its backends in `pg_stat_activity`.
pub fn named_pool(max_size: usize, name: &str) -> Pool {
    let mut config = pglock::testdb::shared().config();
    config.application_name(name);
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    Pool::builder(manager).max_size(max_size).build().unwrap()
}

/// A plain connection of its own, for watching the server from outside the library.
pub async fn observer() -> tokio_postgres::Client {
    let (client, connection) = pglock::testdb::shared()
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("observer connection");
    tokio::spawn(connection);
    client
}

/// A connection of the test's own to a cluster that requires TLS (its own
/// certificate authority), for watching the server from outside the library.
pub async fn tls_observer(cluster: &pglock::testdb::Cluster) -> tokio_postgres::Client {
    let db = cluster.db();
    let (client, connection) = db
        .tls_config()
        .unwrap()
        .connect(db.tls_connector().unwrap())
        .await
        .expect("observer over TLS");
    tokio::spawn(connection);
    client
}

/// A lock name no other test uses, so tests can run side by side on one database.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
