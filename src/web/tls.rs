//! HTTPS: the certificate chain and private key of `[web]`, loaded into a
//! rustls server configuration.
//!
//! Files are read at start-up, on every reload and by `check-config`; the
//! HTTP server swaps in the new configuration for new connections. Only HTTP/1.1 is offered, like the plain server.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot be used, naming the `[web]` key it
/// concerns.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no certificate.
    #[error("{path}: {reason}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file cannot be read or holds no private key.
    #[error("{path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refuses the pair (unsupported key type, key not matching).
    #[error("certificate and key cannot be used together: {0}")]
    Pair(rustls::Error),
}

impl TlsError {
    /// The `[web]` key the problem is reported under.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } | TlsError::Pair(_) => "tls_cert_file",
            TlsError::Key { .. } => "tls_key_file",
        }
    }
}

/// Reads the PEM certificate chain (server certificate first) and the PEM
/// private key (PKCS#8, PKCS#1 or SEC1) into a server configuration.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: cert_file.display().to_string(),
        reason,
    };
    let key_err = |reason: String| TlsError::Key {
        path: key_file.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| cert_err(pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_reason(e)))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| key_err(pem_reason(e)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Pair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => format!("could not read: {io}"),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &garbage).unwrap_err();
        assert_eq!(e.key(), "tls_cert_file");
        assert!(e.to_string().contains("could not read"), "{e}");
        let e = server_config(&garbage, &garbage).unwrap_err();
        assert_eq!(e.key(), "tls_cert_file");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
