//! The certificates of a TLS cluster, generated at start into the cluster's directory: a
//! throwaway CA (self-signed) and a server certificate it signs for `127.0.0.1` and
//! `localhost`. The client side trusts exactly that CA (see [`super::tls`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;

use super::os_user::RunAs;
use super::TestDbError;

/// The files the server reads and the CA certificate clients trust.
#[derive(Debug)]
pub(crate) struct ServerCert {
    /// The CA certificate (DER), the only root the test clients trust.
    pub(crate) ca: CertificateDer<'static>,
    /// `server.crt`: the server certificate, PEM.
    pub(crate) cert_file: PathBuf,
    /// `server.key`: its private key, PEM, mode 0600, owned by the server's OS user (the
    /// server refuses a key that others can read or that another user owns).
    pub(crate) key_file: PathBuf,
}

/// Generates the CA and the server certificate into `dir`, owned by `run_as`.
pub(crate) fn generate(dir: &Path, run_as: RunAs) -> Result<ServerCert, TestDbError> {
    let failed = |e: rcgen::Error| TestDbError::Certificate {
        reason: e.to_string(),
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // A name of its own (the directory's is unique): a client that trusts another cluster's
    // CA then fails as "unknown issuer", not as a CA of the same name with a bad signature.
    let dir_name = dir.file_name().unwrap_or_default().to_string_lossy();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("pglock testdb throwaway CA {dir_name}"),
    );
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(failed)?)
        .map_err(failed)?;

    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .map_err(failed)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate().map_err(failed)?;
    let cert = params.signed_by(&key, &ca).map_err(failed)?;

    let cert_file = dir.join("server.crt");
    let key_file = dir.join("server.key");
    write_file(&cert_file, cert.pem().as_bytes(), 0o644, run_as)?;
    write_file(&key_file, key.serialize_pem().as_bytes(), 0o600, run_as)?;
    write_file(&dir.join("root.crt"), ca.pem().as_bytes(), 0o644, run_as)?;
    Ok(ServerCert {
        ca: ca.der().clone(),
        cert_file,
        key_file,
    })
}

/// Creates `path` with `mode` from the start (a key is never readable by others, not even
/// for a moment), writes `contents` and gives it to `run_as`.
fn write_file(path: &Path, contents: &[u8], mode: u32, run_as: RunAs) -> Result<(), TestDbError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(TestDbError::io(format!("write {}", path.display())))?;
    run_as.own(path)
}
