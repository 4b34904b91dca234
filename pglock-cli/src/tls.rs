//! TLS for `sslmode=prefer` and `require` URLs, with rustls.
//!
//! rustls (through `tokio-postgres-rustls`, with the `ring` provider) rather than
//! `postgres-openssl` or `postgres-native-tls`: it needs no system library, so the
//! command builds and runs the same on any machine, static builds and minimal
//! containers included, and `ring` needs no C toolchain beyond `cc` (unlike
//! `aws-lc-rs`, which also wants `cmake`).
//!
//! Without `--ca-file` the server's certificate is not authenticated, which is what
//! libpq's `sslmode=prefer`/`require` mean (the connection is encrypted; the network
//! is trusted to reach the right server); the handshake signatures are still checked.
//! With `--ca-file` the certificate chain and host name are verified against it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::CliError;

/// The connector for a TLS connection: verifying against `ca_file` when given.
pub fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, CliError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match ca_file {
        Some(path) => builder
            .with_root_certificates(roots(path)?)
            .with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file, at least one.
fn roots(path: &Path) -> Result<RootCertStore, CliError> {
    let bad = |reason: String| CliError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        store.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(bad("the file holds no PEM certificate".into()));
    }
    Ok(store)
}

/// Accepts any server certificate (libpq's `require`), but still checks that the
/// server signed the handshake with the key of the certificate it sent.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
