//! Fencing tokens against a real server:
//!
//! - the control: a transaction id taken the naive way (a transaction that writes no
//!   WAL, even with `synchronous_commit = on`) is handed out again after an immediate
//!   shutdown, so a token must be more than "the current transaction id";
//! - a fenced lock's token is strictly greater after each of several immediate
//!   restarts, and after each handover between sessions and processes;
//! - a fenced lock taken inside a transaction left open on its session is refused
//!   with a named error, and not kept.

mod common;

use pglock::testdb::Cluster;

/// `pg_current_xact_id()` in a transaction of its own that writes nothing else.
async fn naive_xid(client: &tokio_postgres::Client) -> u64 {
    let messages = client
        .simple_query("SET synchronous_commit = on; SELECT pg_catalog.pg_current_xact_id()::text")
        .await
        .expect("take a transaction id");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
        .parse()
        .expect("a transaction id")
}

async fn connect(cluster: &Cluster) -> tokio_postgres::Client {
    let (client, connection) = cluster
        .db()
        .config()
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the cluster");
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn control_a_naive_transaction_id_comes_back_after_an_immediate_restart() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let before = naive_xid(&connect(&cluster).await).await;
        cluster.restart_immediate().expect("immediate restart");
        let after = naive_xid(&connect(&cluster).await).await;
        seen.push((before, after));
        if after <= before {
            break;
        }
    }
    println!("naive ids before and after each restart: {seen:?}");
    assert!(
        seen.iter().any(|(before, after)| after <= before),
        "the naive id always grew: the control cannot show why tokens must be flushed"
    );
}

/// Runs `examples/fenced_write` with `args`: its exit status and what it printed.
async fn fenced_write_example(args: &[&str]) -> (bool, String) {
    let binary = common::example_binary("fenced_write");
    let out = tokio::process::Command::new(binary)
        .args(args)
        .env("DATABASE_URL", pglock::testdb::shared().url())
        .output()
        .await
        .expect("run examples/fenced_write");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_fenced_write_example_refuses_the_stale_leader() {
    let (ok, out) = fenced_write_example(&[]).await;
    println!("{out}");
    assert!(ok, "{out}");
    assert!(out.contains("A's late write with fence"), "{out}");
    assert!(out.contains("refused (stale fence)"), "{out}");
    assert!(out.contains("balance 10,"), "{out}");
}

#[tokio::test]
async fn control_without_the_fence_condition_the_stale_write_lands() {
    let (ok, out) = fenced_write_example(&["--unfenced"]).await;
    println!("{out}");
    assert!(!ok, "the example reports the stale write: {out}");
    assert!(out.contains("balance 110,"), "{out}");
}
