//! The client side of a TLS cluster: a rustls connector that trusts the cluster's own CA and
//! nothing else, for pools with `sslmode=require`.
//!
//! In libpq, `sslmode=require` means "encrypt, but do not verify the server". In
//! tokio-postgres the mode only decides whether TLS is required; verifying is the
//! connector's job, and this one does verify: the server's certificate must chain to the CA
//! the cluster generated at start and name `127.0.0.1`. So the test pools are at least as
//! strict as `sslmode=verify-full` would be, while using the `sslmode=require` that managed
//! services document.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::TestDbError;

/// A connector trusting only `ca`. The crypto provider is named (ring) rather than taken
/// from the process default, so that another rustls user in the same test binary cannot
/// make this fail or change it.
pub(crate) fn connector(ca: &CertificateDer<'static>) -> Result<MakeRustlsConnect, TestDbError> {
    let failed = |e: rustls::Error| TestDbError::Certificate {
        reason: e.to_string(),
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(failed)?;
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(failed)?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
