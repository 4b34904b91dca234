//! TLS clusters: a certificate generated at start, TLS pools that verify it, and (with
//! `Tls::Required`) plain connections refused as managed services refuse them.

use std::os::unix::fs::MetadataExt;

use pglock_runtime::testdb::{self, Cluster, TestDbError, Tls};

use crate::support::block_on;

/// Whether the session behind `client` is encrypted, from the server's own view.
async fn ssl_in_use(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[test]
fn a_tls_required_cluster_refuses_plain_connections_and_accepts_tls_pools() {
    let cluster = Cluster::builder().tls(Tls::Required).start().unwrap();
    let db = cluster.db();
    assert!(db.has_tls());
    block_on(async {
        let err = db.connect().await.unwrap_err();
        let msg = format!("{err:?}");
        assert!(
            msg.contains("rejects connection") && msg.contains("no encryption"),
            "a plain connection is refused by pg_hba.conf: {msg}"
        );
        let pool = db.tls_pool(2).unwrap();
        let client = pool.get().await.unwrap();
        assert!(ssl_in_use(&client).await, "the pool's session is encrypted");
        let url_mode = db.tls_config().unwrap().get_ssl_mode();
        assert_eq!(url_mode, tokio_postgres::config::SslMode::Require);
    });
}

#[test]
fn a_tls_cluster_that_does_not_require_it_takes_both() {
    let cluster = Cluster::builder().tls(Tls::On).start().unwrap();
    let db = cluster.db();
    block_on(async {
        let plain = db.connect().await.unwrap();
        assert!(!ssl_in_use(&plain).await);
        let pool = db.tls_pool(1).unwrap();
        assert!(ssl_in_use(&pool.get().await.unwrap()).await);
    });
}

#[test]
fn the_key_is_private_to_the_server_user_and_lives_in_the_cluster_directory() {
    let cluster = Cluster::builder().tls(Tls::On).start().unwrap();
    let root = cluster.data_dir().parent().unwrap();
    let key = std::fs::metadata(root.join("server.key")).unwrap();
    assert_eq!(key.mode() & 0o777, 0o600, "server.key mode");
    let server_uid = std::fs::metadata(cluster.data_dir()).unwrap().uid();
    assert_eq!(
        key.uid(),
        server_uid,
        "owned by the user the server runs as"
    );
    let data = block_on(async {
        let client = cluster.db().tls_pool(1).unwrap().get().await.unwrap();
        let row = client.query_one("SHOW ssl_key_file", &[]).await.unwrap();
        row.get::<_, String>(0)
    });
    assert_eq!(std::path::Path::new(&data), root.join("server.key"));
    let root = root.to_path_buf();
    drop(cluster);
    assert!(!root.exists(), "the certificate goes with the cluster");
}

/// Control for the verification claim: a connector that trusts another cluster's CA is
/// refused, so the TLS pools do check the certificate (libpq's `sslmode=require` would not).
#[test]
fn control_a_pool_trusting_another_ca_cannot_connect() {
    let cluster = Cluster::builder().tls(Tls::Required).start().unwrap();
    let other = Cluster::builder().tls(Tls::On).start().unwrap();
    let wrong = other.db().tls_connector().unwrap();
    block_on(async {
        let config = cluster.db().tls_config().unwrap();
        let err = config.connect(wrong).await.err().expect("refused");
        let msg = format!("{err:?}");
        assert!(msg.contains("UnknownIssuer"), "{msg}");
        let right = cluster.db().tls_connector().unwrap();
        let (client, connection) = config.connect(right).await.unwrap();
        tokio::spawn(connection);
        assert!(ssl_in_use(&client).await);
    });
}

#[test]
fn asking_a_database_without_tls_for_a_tls_pool_is_a_named_error() {
    let err = testdb::shared().tls_pool(1).unwrap_err();
    assert!(matches!(err, TestDbError::TlsOff), "{err}");
    assert!(err.to_string().contains("Tls::Required"), "{err}");
}
