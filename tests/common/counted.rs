//! Clusters whose statements `pg_stat_statements` counts, for tests that prove a
//! mechanism by what the server ran: how many statements, of which text.

use std::sync::OnceLock;

use pglock::testdb::Cluster;
use tokio::sync::OnceCell;

/// A throwaway cluster of the test's own that counts its statements.
pub fn start() -> Cluster {
    Cluster::builder()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start()
        .expect("a cluster with pg_stat_statements (PostgreSQL's contrib extension)")
}

/// One counting cluster for the whole test binary.
pub fn shared() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(start)
}

/// A plain connection to `cluster`, with the extension created (once per cluster:
/// two tests creating it at once would collide).
pub async fn observer(cluster: &Cluster) -> tokio_postgres::Client {
    static SHARED_READY: OnceCell<()> = OnceCell::const_new();
    let client = cluster
        .db()
        .connect()
        .await
        .expect("an observer connection");
    let create = || async {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .expect("the extension");
    };
    if std::ptr::eq(cluster, shared()) {
        SHARED_READY.get_or_init(create).await;
    } else {
        create().await;
    }
    client
}

/// Forgets every count so far.
pub async fn reset(observer: &tokio_postgres::Client) {
    observer
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .expect("reset the counts");
}

/// Calls of statements whose text contains `text`.
pub async fn calls(observer: &tokio_postgres::Client, text: &str) -> i64 {
    observer
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
              WHERE strpos(query, $1) > 0",
            &[&text],
        )
        .await
        .expect("pg_stat_statements")
        .get(0)
}
