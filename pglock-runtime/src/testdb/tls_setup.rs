//! What TLS adds to a cluster at its creation: the certificate (generated into its
//! directory), the settings that turn `ssl` on, and for [`Tls::Required`] a `pg_hba.conf`
//! that admits TCP clients only over TLS.

use std::path::Path;

use rustls::pki_types::CertificateDer;

use super::builder::Tls;
use super::dir::ClusterDir;
use super::os_user::RunAs;
use super::{cert, hba, TestDbError};

/// The settings TLS needs (written before the caller's, which may override them) and the CA
/// that clients are to trust; neither without TLS.
pub(crate) type TlsSetup = (Vec<(String, String)>, Option<CertificateDer<'static>>);

/// Prepares the freshly initialised cluster in `dir` for `tls`.
pub(crate) fn tls_setup(
    tls: Tls,
    run_as: RunAs,
    dir: &ClusterDir,
) -> Result<TlsSetup, TestDbError> {
    if tls == Tls::Off {
        return Ok((Vec::new(), None));
    }
    let cert = cert::generate(dir.root(), run_as)?;
    if tls == Tls::Required {
        hba::require_tls(dir)?;
    }
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let settings = vec![
        ("ssl".to_string(), "on".to_string()),
        ("ssl_cert_file".to_string(), path(&cert.cert_file)),
        ("ssl_key_file".to_string(), path(&cert.key_file)),
    ];
    Ok((settings, Some(cert.ca)))
}
