//! Clear errors and non-zero exit codes, never a panic: a malformed URL, no URL, a
//! refused connection, a refused login, TLS demanded of a server without it, and a role
//! that may not see other roles' sessions; and where the URL comes from
//! (`--database-url` wins over `DATABASE_URL`).

mod common;

use std::sync::OnceLock;

use common::{pglock, raw_of_name, stderr, stdout, Db, Psql};
use pglock_runtime::testdb::Cluster;
use serde_json::Value;

/// A cluster of this file's own, whose `pg_hba.conf` demands a password of `cli_pw`.
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start().expect("a cluster");
        let hba = cluster.data_dir().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        let rules = format!("host all cli_pw 127.0.0.1/32 scram-sha-256\n{rules}");
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        let db = Db::of(cluster.db());
        db.execute(
            "CREATE ROLE cli_pw LOGIN PASSWORD 'right'; \
             CREATE ROLE cli_viewer LOGIN; SELECT pg_reload_conf()",
        );
        cluster
    })
}

fn port() -> u16 {
    let url = cluster().db().url();
    url.rsplit(':')
        .next()
        .and_then(|t| t.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

fn assert_clean_failure(err: &str) {
    assert!(err.starts_with("pglock: error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn a_malformed_url_is_named() {
    let out = pglock("postgres://u@127.0.0.1:notaport/db")
        .arg("ls")
        .assert()
        .failure()
        .code(1);
    let err = stderr(out.get_output());
    assert_clean_failure(&err);
    assert!(err.contains("the database URL is malformed"), "{err}");
}

#[test]
fn no_url_is_named() {
    let out = pglock("")
        .env_remove("DATABASE_URL")
        .arg("ls")
        .assert()
        .failure()
        .code(1);
    let err = stderr(out.get_output());
    assert_clean_failure(&err);
    assert!(
        err.contains("set DATABASE_URL or pass --database-url"),
        "{err}"
    );
}

/// A URL with nothing listening at its port (free a moment ago).
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

#[test]
fn a_refused_connection_is_named() {
    let out = pglock(&dead_url()).arg("ls").assert().failure().code(1);
    let err = stderr(out.get_output());
    assert_clean_failure(&err);
    assert!(err.contains("could not connect to the database"), "{err}");
    assert!(err.contains("refused"), "{err}");
}

#[test]
fn database_url_flag_works_without_the_variable() {
    let db = Db::shared();
    let out = pglock("")
        .env_remove("DATABASE_URL")
        .args(["ls", "--json", "--database-url", &db.url])
        .assert()
        .success();
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("JSON");
    assert_eq!(doc["schema"], "pglock.locks/1");
}

#[test]
fn database_url_flag_wins_over_the_variable() {
    let db = Db::shared();
    let dead = dead_url();
    // The control: the variable alone points at nothing.
    let out = pglock(&dead).arg("ls").assert().failure().code(1);
    assert!(stderr(out.get_output()).contains("refused"));

    let out = pglock(&dead)
        .args(["--database-url", &db.url, "ls", "--json"])
        .assert()
        .success();
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("JSON");
    assert_eq!(doc["schema"], "pglock.locks/1");
}

#[test]
fn a_refused_login_is_named() {
    let port = port();
    let right = format!("postgres://cli_pw:right@127.0.0.1:{port}/postgres");
    let wrong = format!("postgres://cli_pw:wrong@127.0.0.1:{port}/postgres");
    // The control: with the right password the same role gets in (once the server has
    // read the new pg_hba.conf, which is when a wrong password starts failing).
    let db = Db::of(cluster().db());
    let start = std::time::Instant::now();
    loop {
        let out = pglock(&wrong).arg("ls").output().expect("run pglock");
        if !out.status.success() {
            let err = stderr(&out);
            assert_clean_failure(&err);
            assert!(
                err.contains("password authentication failed for user \"cli_pw\""),
                "{err}"
            );
            assert_eq!(out.status.code(), Some(1));
            break;
        }
        assert!(
            start.elapsed().as_secs() < 30,
            "pg_hba.conf was never reloaded"
        );
        db.execute("SELECT pg_reload_conf()");
    }
    // `who` of a lock nobody holds: `ls` could be incomplete (exit 3), as this role may
    // not see the sessions other tests of this file keep on the cluster.
    pglock(&right)
        .args(["who", "cli-pw-free"])
        .assert()
        .success();
}

#[test]
fn sslmode_require_against_a_server_without_tls_is_named() {
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        port()
    );
    let out = pglock(&url).arg("ls").assert().failure().code(1);
    let err = stderr(out.get_output());
    assert_clean_failure(&err);
    assert!(err.contains("server does not support TLS"), "{err}");
}

#[test]
fn a_role_that_cannot_see_other_sessions_is_told_so() {
    let db = Db::of(cluster().db());
    let name = "cli-hidden";
    let _holder = Psql::start(
        &db.url,
        "cli-hidden-holder",
        &format!("SELECT pg_advisory_lock(hashtextextended('{name}', 0));"),
    );
    let pid = db.pid_of("cli-hidden-holder");
    db.wait_lock(pid, raw_of_name(name), true);
    let viewer = format!("postgres://cli_viewer@127.0.0.1:{}/postgres", port());

    let out = pglock(&viewer)
        .args(["ls", "--name", name])
        .assert()
        .failure()
        .code(3);
    let text = stdout(out.get_output());
    let row = text
        .lines()
        .find(|l| l.contains(&pid.to_string()))
        .expect("the holder is listed");
    assert!(row.contains("<hidden>"), "{text}");
    let err = stderr(out.get_output());
    assert!(
        err.contains("incomplete") && err.contains("pg_read_all_stats"),
        "{err}"
    );

    let out = pglock(&viewer)
        .args(["ls", "--json"])
        .assert()
        .failure()
        .code(3);
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("JSON");
    assert_eq!(doc["complete"], false);
    let holder = doc["locks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["holders"].as_array().unwrap())
        .find(|h| h["pid"] == pid)
        .expect("the holder");
    assert_eq!(holder["visible"], false);
    assert_eq!(holder["state"], Value::Null);

    // The control: the same listing for a role granted pg_read_all_stats is complete.
    db.execute("GRANT pg_read_all_stats TO cli_viewer");
    let out = pglock(&viewer)
        .args(["ls", "--name", name])
        .assert()
        .success();
    let text = stdout(out.get_output());
    assert!(!text.contains("<hidden>"), "{text}");
    db.execute("REVOKE pg_read_all_stats FROM cli_viewer");
}
