//! The process-wide database.

use std::sync::Arc;

use pglock_runtime::testdb::{self, TestDb};

use crate::support::{block_on, query_text};

#[test]
fn shared_is_one_database_for_every_thread_and_runtime() {
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let dbs: Vec<usize> = (0..4)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let db = testdb::shared();
                block_on(async {
                    let pool = db.pool(2);
                    let client = pool.get().await.unwrap();
                    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
                    assert_eq!(one, 1);
                });
                db as *const TestDb as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(dbs.iter().all(|&d| d == dbs[0]), "one TestDb per process");
}

#[test]
fn shared_database_hashes_names_as_utf8_databases_do() {
    let db = testdb::shared();
    assert_eq!(block_on(query_text(db, "SHOW server_encoding")), "UTF8");
    let hash = block_on(query_text(
        db,
        "SELECT hashtextextended('goldleader', 0)::text",
    ));
    assert!(hash.parse::<i64>().is_ok(), "{hash}");
}

#[test]
fn shared_cluster_has_the_fast_test_settings() {
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        return; // not ours to check
    }
    let db = testdb::shared();
    assert!(
        db.url().starts_with("postgres://postgres@127.0.0.1:"),
        "{}",
        db.url()
    );
    let show = |name: &str| block_on(query_text(db, &format!("SHOW {name}")));
    assert_eq!(show("fsync"), "off");
    assert_eq!(show("full_page_writes"), "off");
    assert_eq!(show("synchronous_commit"), "off");
    assert_eq!(show("max_connections"), "200");
    assert_eq!(show("listen_addresses"), "127.0.0.1");
}
