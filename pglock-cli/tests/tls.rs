//! TLS: `sslmode=require` against a server with a self-signed certificate encrypts
//! without authenticating the server (libpq's meaning); `--ca-file` verifies the
//! certificate against an authority, and a server certificate it did not sign is refused.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{pglock, stderr, Db};
use pglock_runtime::testdb::Cluster;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority `{stem}.crt` / `{stem}.key` in `dir`.
fn authority(dir: &Path, stem: &str) {
    let (crt, key) = (format!("{stem}.crt"), format!("{stem}.key"));
    let subject = format!("/CN=pglock test {stem}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", &key, "-out", &crt,
        ],
    );
}

/// `server.crt` / `server.key` in `dir`: a certificate for 127.0.0.1 signed by the
/// authority `ca`, owned like `dir` with mode 0600 (the server reads its key as its
/// own OS user and refuses a key others may read).
fn server_cert(dir: &Path, ca: &str) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write san.ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    let owner = std::fs::metadata(dir).expect("the data directory");
    for file in ["server.crt", "server.key"] {
        let file = dir.join(file);
        std::os::unix::fs::chown(&file, Some(owner.uid()), Some(owner.gid())).expect("chown");
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
    }
}

#[test]
fn sslmode_require_encrypts_and_ca_file_verifies() {
    let cluster = Cluster::start().expect("a cluster");
    let dir = cluster.data_dir();
    authority(dir, "ca");
    authority(dir, "other");
    server_cert(dir, "ca");
    let db = Db::of(cluster.db());
    let url = format!("{}?sslmode=require", cluster.db().url());
    // The control: before TLS is on, `require` cannot connect.
    let out = pglock(&url).arg("ls").assert().failure().code(1);
    assert!(stderr(out.get_output()).contains("server does not support TLS"));

    // One statement at a time: ALTER SYSTEM cannot run in a (implicit) transaction.
    for setting in [
        "ssl_cert_file = 'server.crt'",
        "ssl_key_file = 'server.key'",
        "ssl = on",
    ] {
        db.execute(&format!("ALTER SYSTEM SET {setting}"));
    }
    db.execute("SELECT pg_reload_conf()");
    db.wait_until(
        "the server has TLS on",
        "SELECT setting = 'on' FROM pg_settings WHERE name = 'ssl'",
    );
    // New sessions fork from the postmaster, which has loaded the certificate once a
    // fresh session sees `ssl` on.
    let fresh = Db::of(cluster.db());
    fresh.wait_until(
        "a new session sees TLS on",
        "SELECT current_setting('ssl') = 'on'",
    );

    pglock(&url).arg("ls").assert().success();
    pglock(&url)
        .arg("ls")
        .arg("--ca-file")
        .arg(dir.join("ca.crt"))
        .assert()
        .success();
    let out = pglock(&url)
        .arg("ls")
        .arg("--ca-file")
        .arg(dir.join("other.crt"))
        .assert()
        .failure()
        .code(1);
    let err = stderr(out.get_output());
    assert!(err.contains("could not connect to the database"), "{err}");
    assert!(err.contains("certificate"), "{err}");

    let out = pglock(&url)
        .args(["ls", "--ca-file", "/nonexistent/ca.pem"])
        .assert()
        .failure()
        .code(1);
    assert!(stderr(out.get_output()).contains("cannot use --ca-file /nonexistent/ca.pem"));
}
