//! PgBouncer in front of a throwaway cluster: transaction pooling, the right OS user, and
//! nothing left behind.

use std::os::unix::fs::MetadataExt;

use pglock_runtime::testdb::{Cluster, PgBouncer, Tls};

use crate::child::{run_child_with_pgbouncer, Death};
use crate::support::{assert_cleaned_up, block_on, is_alive};

/// `SHOW CONFIG` on PgBouncer's admin console: the value of `key`.
async fn bouncer_config(bouncer: &PgBouncer, key: &str) -> String {
    let mut config = bouncer.db().config();
    config.dbname("pgbouncer");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = client.simple_query("SHOW CONFIG").await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some(key) => {
                Some(r.get(1).unwrap_or_default().to_string())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {key} in SHOW CONFIG"))
}

/// The server backend that runs one statement sent by `client`.
async fn backend_pid(client: &tokio_postgres::Client) -> String {
    let rows = client
        .simple_query("SELECT pg_catalog.pg_backend_pid()")
        .await
        .unwrap();
    match &rows[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_string(),
        other => panic!("expected a row, got {other:?}"),
    }
}

#[test]
fn pgbouncer_pools_transactions_of_many_clients_on_few_server_connections() {
    let cluster = Cluster::start().unwrap();
    let bouncer = PgBouncer::transaction_pooling(&cluster, 1).unwrap();
    block_on(async {
        assert_eq!(bouncer_config(&bouncer, "pool_mode").await, "transaction");
        let pool = bouncer.db().pool(3);
        let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        let (pid_a, pid_b) = (backend_pid(&a).await, backend_pid(&b).await);
        assert_eq!(pid_a, pid_b, "two clients, one server connection");
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", bouncer.pid())).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let server_uid = std::fs::metadata(cluster.data_dir()).unwrap().uid();
    assert!(
        uid.split_whitespace().nth(1) == Some(&server_uid.to_string()),
        "PgBouncer runs as the cluster's user {server_uid}: {uid}"
    );
}

#[test]
fn pgbouncer_reaches_a_tls_only_cluster_over_tls() {
    let cluster = Cluster::builder().tls(Tls::Required).start().unwrap();
    let bouncer = PgBouncer::transaction_pooling(&cluster, 1).unwrap();
    let ssl = block_on(async {
        let client = bouncer.db().connect().await.unwrap();
        let rows = client
            .simple_query("SELECT ssl::text FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()")
            .await
            .unwrap();
        match &rows[1] {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).unwrap().to_string(),
            other => panic!("expected a row, got {other:?}"),
        }
    });
    assert_eq!(ssl, "true");
}

#[test]
fn dropping_pgbouncer_kills_it_and_removes_its_directory() {
    let cluster = Cluster::start().unwrap();
    let bouncer = PgBouncer::transaction_pooling(&cluster, 2).unwrap();
    let (pid, dir) = (bouncer.pid(), bouncer.dir().to_path_buf());
    assert!(is_alive(pid) && dir.join("pgbouncer.ini").exists());
    drop(bouncer);
    assert!(!is_alive(pid), "killed and reaped by drop");
    assert_cleaned_up(&dir, pid);
    assert_eq!(
        block_on(crate::support::query_text(
            cluster.db(),
            "SELECT 'still up'"
        )),
        "still up"
    );
}

#[test]
fn a_sigkilled_test_process_leaves_no_pgbouncer_behind() {
    let [shared, owned, bouncer] = run_child_with_pgbouncer(Death::KillGroup);
    assert_cleaned_up(&bouncer.root, bouncer.pid);
    assert_cleaned_up(&owned.root, owned.pid);
    assert_cleaned_up(&shared.root, shared.pid);
}
