//! Owned clusters: settings, restart, stop and start, errors, several at once.

use std::time::Instant;

use pglock_runtime::testdb::{Cluster, TestDbError};

use crate::support::{assert_cleaned_up, block_on, is_alive, query_text};

#[test]
fn start_with_applies_settings_and_restart_keeps_them_and_the_port() {
    let cluster = Cluster::start_with(&[
        ("max_locks_per_transaction", "128"),
        ("application_name", "pglock's test"),
        ("max_connections", "50"),
    ])
    .unwrap();
    let db = cluster.db().clone();
    let show = |name: &str| block_on(query_text(&db, &format!("SHOW {name}")));
    assert_eq!(show("max_locks_per_transaction"), "128");
    assert_eq!(show("application_name"), "pglock's test");
    assert_eq!(
        show("max_connections"),
        "50",
        "start_with overrides the defaults"
    );
    assert_eq!(show("fsync"), "off");

    let pid = cluster.postmaster_pid();
    block_on(async {
        let client = db.connect().await.unwrap();
        let started = Instant::now();
        cluster.restart().unwrap();
        eprintln!("restart took {:?}", started.elapsed());
        assert!(
            client.simple_query("SELECT 1").await.is_err(),
            "a session from before the restart is gone"
        );
        let pool = db.pool(2);
        let client = pool.get().await.unwrap();
        let row = client
            .query_one("SHOW max_locks_per_transaction", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "128");
    });
    assert_ne!(cluster.postmaster_pid(), pid);
    assert!(!is_alive(pid), "the old postmaster is gone");
    assert_eq!(cluster.db().url(), db.url(), "same port after restart");
}

#[test]
fn stop_and_start_again_on_the_same_port() {
    let cluster = Cluster::start().unwrap();
    let db = cluster.db();
    cluster.stop().unwrap();
    let err = block_on(db.connect()).unwrap_err();
    assert!(err.to_string().contains("error connecting"), "{err}");
    cluster.start_again().unwrap();
    assert_eq!(block_on(query_text(db, "SELECT 'back'")), "back");
}

#[test]
fn a_server_that_cannot_start_reports_its_log_and_leaves_nothing_behind() {
    // A known name with a value the server rejects: only the server can tell.
    let err = Cluster::start_with(&[("max_connections", "lots")]).unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("did not start"), "{msg}");
    assert!(
        msg.contains("max_connections"),
        "the log tail names the setting: {msg}"
    );
    let TestDbError::Server { data_dir, .. } = err else {
        panic!("expected a Server error, got {err:?}");
    };
    let root = data_dir.parent().unwrap();
    assert!(!root.exists(), "{} was left behind", root.display());
    assert_cleaned_up(root, u32::MAX);
}

#[test]
fn setting_names_are_checked_before_anything_starts() {
    let err = Cluster::start_with(&[("fsync = on\nport", "1")]).unwrap_err();
    assert!(matches!(err, TestDbError::InvalidSetting { .. }), "{err}");
}

#[test]
fn clusters_started_at_once_get_their_own_ports() {
    let started = Instant::now();
    let clusters: Vec<Cluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Cluster::start().unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("3 clusters in parallel took {:?}", started.elapsed());
    let mut urls: Vec<&str> = clusters.iter().map(|c| c.db().url()).collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 3, "{urls:?}");
    for cluster in &clusters {
        assert_eq!(
            block_on(query_text(cluster.db(), "SHOW server_encoding")),
            "UTF8"
        );
    }
}

#[test]
fn one_cluster_starts_quickly() {
    let started = Instant::now();
    let cluster = Cluster::start().unwrap();
    let took = started.elapsed();
    eprintln!("Cluster::start took {took:?}");
    assert_eq!(
        block_on(query_text(cluster.db(), "SELECT current_user::text")),
        "postgres"
    );
}
