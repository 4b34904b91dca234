//! TLS: `sslmode=require` against a server with a self-signed certificate encrypts
//! without authenticating the server (libpq's meaning); `--ca-file` verifies the
//! certificate against an authority, and a server certificate it did not sign is refused.
//! The certificates are made in the test (rcgen): no `openssl` binary is needed.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{pglock, stderr, Db};
use pglock_runtime::testdb::Cluster;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority, its certificate written to `{stem}.crt` in `dir`.
fn authority(dir: &Path, stem: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
        .distinguished_name
        .push(DnType::CommonName, format!("pglock test {stem}"));
    let key = KeyPair::generate().expect("a CA key");
    let ca = CertifiedIssuer::self_signed(params, key).expect("a self-signed CA");
    std::fs::write(dir.join(format!("{stem}.crt")), ca.pem()).expect("write the CA");
    ca
}

/// `server.crt` / `server.key` in `dir`: a certificate for 127.0.0.1 signed by `ca`,
/// owned like `dir` with mode 0600 (the server reads its key as its own OS user and
/// refuses a key others may read).
fn server_cert(dir: &Path, ca: &CertifiedIssuer<'static, KeyPair>) {
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().expect("a server key");
    let cert = params.signed_by(&key, ca).expect("a signed certificate");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("write server.crt");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write server.key");
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
    let ca = authority(dir, "ca");
    authority(dir, "other");
    server_cert(dir, &ca);
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
