//! rustls client configurations matching libpq's `sslmode` semantics.
//!
//! libpq's weaker modes encrypt without authenticating the server, which
//! rustls does not offer out of the box, and `verify-ca` checks the chain but
//! not the host name; both need small custom verifiers, defined here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WantsClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connection::dsn::{ConnParams, SslMode};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The root certificate file needed for verification does not exist.
    #[error(
        "root certificate file \"{}\" does not exist; provide it, use sslrootcert=system, \
         or use an sslmode that does not verify the server certificate",
        path.display()
    )]
    RootCertMissing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// Verification was requested without `sslrootcert` and `$HOME` is unknown,
    /// so libpq's `~/.postgresql/root.crt` cannot be located.
    #[error("sslmode {mode} needs a root certificate: set sslrootcert (HOME is not set)")]
    NoRootCertLocation {
        /// The mode that needed the certificate.
        mode: SslMode,
    },
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} \"{}\": {error}", path.display())]
    ReadPem {
        /// `root certificate file`, `client certificate` or `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying I/O or PEM error. Part of the message rather than a
        /// `source()`, because callers report errors with `to_string()`.
        error: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{what} \"{}\" contains no PEM certificate", path.display())]
    NoCertificates {
        /// `root certificate file` or `client certificate`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A root certificate could not be used as a trust anchor.
    #[error("root certificate file \"{}\" holds an unusable certificate: {error}", path.display())]
    InvalidRootCert {
        /// The file.
        path: PathBuf,
        /// Why webpki rejected it.
        error: rustls::Error,
    },
    /// `sslrootcert=system` but the OS trust store yielded nothing usable.
    #[error("sslrootcert=system: no usable certificates in the system trust store ({detail})")]
    NoSystemRoots {
        /// What rustls-native-certs reported.
        detail: String,
    },
    /// PG16+ libpq refuses to trust public CAs without host name checks.
    #[error("sslmode \"{mode}\" may not be used with sslrootcert=system (use verify-full)")]
    WeakSslModeWithSystemRoots {
        /// The explicitly requested mode.
        mode: SslMode,
    },
    /// Only one of `sslcert` / `sslkey` was given.
    #[error("{given} is set but {missing} is not; a client certificate needs both")]
    IncompleteClientCert {
        /// The key that was given.
        given: &'static str,
        /// The key that is missing.
        missing: &'static str,
    },
    /// rustls rejected the client certificate and key (e.g. they do not match).
    #[error("client certificate \"{}\" / key \"{}\" rejected: {error}", cert.display(), key.display())]
    ClientAuth {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        error: rustls::Error,
    },
    /// The verifier could not be built from the root certificates.
    #[error("cannot build a certificate verifier from the root certificates of {origin}: {error}")]
    Verifier {
        /// The root file path, or `system`.
        origin: String,
        /// rustls's reason.
        error: rustls::client::VerifierBuilderError,
    },
    /// The ring provider does not support rustls's default protocol versions.
    #[error("the ring crypto provider cannot be configured: {error}")]
    Provider {
        /// rustls's reason.
        error: rustls::Error,
    },
}

/// Builds the tokio-postgres TLS connector for one target's sslmode.
pub fn make_connector(params: &ConnParams) -> Result<MakeRustlsConnect, TlsError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    client_config(params, home.as_deref()).map(MakeRustlsConnect::new)
}

/// The rustls configuration for a `rediss://` target, whose TLS settings
/// are written as a DSN's (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`)
/// so they are checked exactly as a PostgreSQL server's.
pub fn redis_client_config(params: &ConnParams) -> Result<ClientConfig, TlsError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    client_config(params, home.as_deref())
}

/// `home` locates libpq's default `~/.postgresql/root.crt`; a parameter so
/// tests need not touch the process environment.
fn client_config(params: &ConnParams, home: Option<&Path>) -> Result<ClientConfig, TlsError> {
    reject_weak_system_mode(params)?;
    // An explicit provider, so behaviour never depends on which provider some
    // other part of the process installed as the default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mode = params.effective_sslmode();
    let verifier = server_verifier(params, mode, home, &provider)?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Provider { error })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    if mode == SslMode::Disable {
        // libpq does not touch certificate files when TLS is off.
        return Ok(builder.with_no_client_auth());
    }
    with_client_cert(builder, params)
}

fn reject_weak_system_mode(params: &ConnParams) -> Result<(), TlsError> {
    match (params.sslrootcert.as_deref(), params.sslmode) {
        (Some("system"), Some(mode)) if mode != SslMode::VerifyFull => {
            Err(TlsError::WeakSslModeWithSystemRoots { mode })
        }
        _ => Ok(()),
    }
}

fn server_verifier(
    params: &ConnParams,
    mode: SslMode,
    home: Option<&Path>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    match mode {
        SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => {
            Ok(Arc::new(EncryptionOnlyVerifier {
                algorithms: provider.signature_verification_algorithms,
            }))
        }
        SslMode::VerifyCa => {
            let inner = webpki_verifier(params, mode, home, provider)?;
            Ok(Arc::new(ChainOnlyVerifier { inner }))
        }
        SslMode::VerifyFull => Ok(webpki_verifier(params, mode, home, provider)?),
    }
}

fn webpki_verifier(
    params: &ConnParams,
    mode: SslMode,
    home: Option<&Path>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let (roots, origin) = root_store(params.sslrootcert.as_deref(), mode, home)?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|error| TlsError::Verifier { origin, error })
}

/// Loads the trust anchors libpq would use, with a label for error messages.
fn root_store(
    sslrootcert: Option<&str>,
    mode: SslMode,
    home: Option<&Path>,
) -> Result<(RootCertStore, String), TlsError> {
    let path = match sslrootcert {
        Some("system") => return Ok((system_roots()?, "the system trust store".to_owned())),
        Some(path) => PathBuf::from(path),
        None => home
            .ok_or(TlsError::NoRootCertLocation { mode })?
            .join(".postgresql")
            .join("root.crt"),
    };
    let roots = pem_roots(&path)?;
    Ok((roots, format!("\"{}\"", path.display())))
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // OS stores routinely contain a few certificates webpki cannot parse;
    // skipping them is what every rustls user of the system store does.
    roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        let detail = match loaded.errors.first() {
            Some(error) => error.to_string(),
            None => "the store is empty".to_owned(),
        };
        return Err(TlsError::NoSystemRoots { detail });
    }
    Ok(roots)
}

fn pem_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    const WHAT: &str = "root certificate file";
    let certs = read_certificates(path, WHAT).map_err(|err| match err {
        TlsError::ReadPem {
            error: rustls::pki_types::pem::Error::Io(io),
            ..
        } if io.kind() == std::io::ErrorKind::NotFound => TlsError::RootCertMissing {
            path: path.to_path_buf(),
        },
        other => other,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        // Unlike the system store, a file the user named must be entirely
        // usable: a silently skipped CA would surface as a baffling
        // verification failure later.
        roots.add(cert).map_err(|error| TlsError::InvalidRootCert {
            path: path.to_path_buf(),
            error,
        })?;
    }
    Ok(roots)
}

fn read_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |error| TlsError::ReadPem {
        what,
        path: path.to_path_buf(),
        error,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn with_client_cert(
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
    params: &ConnParams,
) -> Result<ClientConfig, TlsError> {
    let (cert_path, key_path) = match (&params.sslcert, &params.sslkey) {
        (None, None) => return Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(TlsError::IncompleteClientCert {
                given: "sslcert",
                missing: "sslkey",
            });
        }
        (None, Some(_)) => {
            return Err(TlsError::IncompleteClientCert {
                given: "sslkey",
                missing: "sslcert",
            });
        }
    };
    let chain = read_certificates(cert_path, "client certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|error| TlsError::ReadPem {
        what: "client key",
        path: key_path.clone(),
        error,
    })?;
    builder
        .with_client_auth_cert(chain, key)
        .map_err(|error| TlsError::ClientAuth {
            cert: cert_path.clone(),
            key: key_path.clone(),
            error,
        })
}

/// libpq's `prefer`/`require`: any certificate is accepted, because those
/// modes promise encryption only. Handshake signatures are still checked so
/// the peer must at least hold the key of the certificate it presents.
#[derive(Debug)]
struct EncryptionOnlyVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptionOnlyVerifier {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the full webpki chain check, minus the host name.
///
/// Relies on webpki checking the chain before the name, so a name mismatch
/// error implies the chain already verified.
#[derive(Debug)]
struct ChainOnlyVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    use rustls::{ClientConnection, Connection, ServerConfig, ServerConnection};

    /// Throwaway PKI generated with the `openssl` CLI for each test.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn path_str(&self, name: &str) -> String {
            self.path(name).display().to_string()
        }
    }

    const CA_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = pgvigil test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

    const LEAF_EXTENSIONS: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost
";

    /// Runs `openssl` with whitespace-separated `args` (all file names here
    /// are relative and space-free).
    fn openssl(dir: &Path, args: &str) {
        let output = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("these tests need the `openssl` command line tool: {e}"));
        assert!(
            output.status.success(),
            "openssl {args} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn make_ca(dir: &Path, name: &str) {
        openssl(
            dir,
            &format!(
                "req -x509 -config ca.cnf -extensions v3_ca -subj /CN={name} -newkey ec \
                 -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key \
                 -out {name}.pem -days 2"
            ),
        );
    }

    fn make_leaf(dir: &Path, name: &str, ca: &str) {
        openssl(
            dir,
            &format!(
                "req -new -config ca.cnf -subj /CN=localhost -newkey ec \
                 -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {name}.key -out {name}.csr"
            ),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -set_serial 2 -days 2 \
                 -extfile leaf.ext -out {name}.pem"
            ),
        );
    }

    /// `ca` signs `server` and `client`; `other-ca` is an unrelated CA.
    fn pki() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.cnf"), CA_CONFIG).expect("write openssl config");
        std::fs::write(dir.path().join("leaf.ext"), LEAF_EXTENSIONS).expect("write extensions");
        make_ca(dir.path(), "ca");
        make_ca(dir.path(), "other-ca");
        make_leaf(dir.path(), "server", "ca");
        make_leaf(dir.path(), "client", "ca");
        Pki { dir }
    }

    fn params(dsn: &str) -> ConnParams {
        ConnParams::parse(dsn).unwrap_or_else(|e| panic!("test DSN {dsn:?}: {e}"))
    }

    #[test]
    fn builds_a_config_for_every_mode() {
        let pki = pki();
        let (ca, cert, key) = (
            pki.path_str("ca.pem"),
            pki.path_str("client.pem"),
            pki.path_str("client.key"),
        );
        let cases = [
            "".to_owned(),
            "sslmode=disable".to_owned(),
            "sslmode=allow".to_owned(),
            "sslmode=prefer".to_owned(),
            "sslmode=require".to_owned(),
            format!("sslmode=require sslrootcert={ca}"),
            format!("sslmode=verify-ca sslrootcert={ca}"),
            format!("sslmode=verify-full sslrootcert={ca}"),
            format!("sslmode=verify-full sslrootcert={ca} sslcert={cert} sslkey={key}"),
            format!("sslmode=require sslcert={cert} sslkey={key}"),
            // libpq ignores certificate files entirely when TLS is off.
            "sslmode=disable sslcert=/nonexistent.pem sslkey=/nonexistent.key".to_owned(),
        ];
        for dsn in cases {
            if let Err(err) = client_config(&params(&dsn), None) {
                panic!("{dsn:?}: {err}");
            }
            assert!(make_connector(&params(&dsn)).is_ok(), "{dsn:?}");
        }
    }

    #[test]
    fn default_root_cert_comes_from_home() {
        let pki = pki();
        let home = tempfile::tempdir().expect("tempdir");
        let missing = client_config(&params("sslmode=verify-ca"), Some(home.path()))
            .expect_err("no root.crt yet");
        let expected = home.path().join(".postgresql").join("root.crt");
        assert!(
            missing
                .to_string()
                .contains(&expected.display().to_string()),
            "{missing} does not name {}",
            expected.display()
        );
        std::fs::create_dir(home.path().join(".postgresql")).expect("mkdir");
        std::fs::copy(pki.path("ca.pem"), &expected).expect("copy root.crt");
        for dsn in ["sslmode=verify-ca", "sslmode=verify-full"] {
            assert!(
                client_config(&params(dsn), Some(home.path())).is_ok(),
                "{dsn:?}"
            );
        }
    }

    #[test]
    fn bad_files_and_combinations_are_reported() {
        let pki = pki();
        std::fs::write(pki.path("empty.pem"), "").expect("write");
        std::fs::write(pki.path("junk.pem"), "-----BEGIN CERTIFICATE-----\n!!!\n").expect("write");
        let (ca, cert, key) = (
            pki.path_str("ca.pem"),
            pki.path_str("client.pem"),
            pki.path_str("client.key"),
        );
        let missing = pki.path_str("no/such/root.crt");
        let cases = [
            // (params, text the error must contain)
            (
                params(&format!("sslmode=verify-full sslrootcert={missing}")),
                missing.clone(),
            ),
            (
                params(&format!("sslmode=verify-ca sslrootcert={missing}")),
                missing.clone(),
            ),
            (
                params(&format!("sslmode=require sslrootcert={missing}")),
                missing.clone(),
            ),
            (params("sslmode=verify-ca"), "HOME".to_owned()),
            (
                params(&format!(
                    "sslmode=verify-full sslrootcert={}",
                    pki.path_str("empty.pem")
                )),
                pki.path_str("empty.pem"),
            ),
            (
                params(&format!(
                    "sslmode=verify-full sslrootcert={}",
                    pki.path_str("junk.pem")
                )),
                pki.path_str("junk.pem"),
            ),
            (
                params(&format!("sslmode=require sslcert={cert}")),
                "sslkey".to_owned(),
            ),
            (
                params(&format!("sslmode=require sslkey={key}")),
                "sslcert".to_owned(),
            ),
            (
                params(&format!(
                    "sslmode=require sslcert={cert} sslkey={}",
                    pki.path_str("nokey.pem")
                )),
                pki.path_str("nokey.pem"),
            ),
            (
                params(&format!("sslmode=require sslcert={ca} sslkey={key}")),
                ca.clone(),
            ),
            (
                ConnParams {
                    sslmode: Some(SslMode::Require),
                    sslrootcert: Some("system".to_owned()),
                    ..Default::default()
                },
                "sslrootcert=system".to_owned(),
            ),
        ];
        for (params, needle) in cases {
            match client_config(&params, None) {
                Ok(_) => panic!("{} built a config", params.redacted()),
                Err(err) => assert!(err.to_string().contains(&needle), "{err} lacks {needle}"),
            }
        }
    }

    #[test]
    fn verifiers_enforce_each_mode_during_a_handshake() {
        let pki = pki();
        let (ca, other) = (pki.path_str("ca.pem"), pki.path_str("other-ca.pem"));
        let tls12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        let tls13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        const UNKNOWN_CA: Option<&str> = Some("client: invalid peer certificate: UnknownIssuer");
        const WRONG_NAME: Option<&str> =
            Some("client: invalid peer certificate: certificate not valid for name");
        let cases = [
            // (dsn, name the client connects to, server versions, expected error)
            ("sslmode=prefer".to_owned(), "wrong.example", tls13, None),
            ("sslmode=require".to_owned(), "wrong.example", tls12, None),
            (
                format!("sslmode=require sslrootcert={other}"),
                "localhost",
                tls13,
                UNKNOWN_CA,
            ),
            (
                format!("sslmode=verify-ca sslrootcert={ca}"),
                "wrong.example",
                tls13,
                None,
            ),
            (
                format!("sslmode=verify-ca sslrootcert={ca}"),
                "wrong.example",
                tls12,
                None,
            ),
            (
                format!("sslmode=verify-ca sslrootcert={other}"),
                "localhost",
                tls13,
                UNKNOWN_CA,
            ),
            (
                format!("sslmode=verify-full sslrootcert={ca}"),
                "localhost",
                tls13,
                None,
            ),
            (
                format!("sslmode=verify-full sslrootcert={ca}"),
                "localhost",
                tls12,
                None,
            ),
            (
                format!("sslmode=verify-full sslrootcert={ca}"),
                "wrong.example",
                tls13,
                WRONG_NAME,
            ),
            (
                format!("sslmode=verify-full sslrootcert={other}"),
                "localhost",
                tls12,
                UNKNOWN_CA,
            ),
        ];
        for (dsn, name, versions, expected_error) in cases {
            let client = client_config(&params(&dsn), None).expect("client config");
            let result = handshake(client, server_config(&pki, versions), name);
            match (&result, expected_error) {
                (Ok(()), None) => {}
                (Err(error), Some(expected)) if error.starts_with(expected) => {}
                _ => panic!("{dsn:?} to {name}: got {result:?}, expected error {expected_error:?}"),
            }
        }
    }

    fn server_config(
        pki: &Pki,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ServerConfig> {
        let chain =
            read_certificates(&pki.path("server.pem"), "server certificate").expect("server cert");
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).expect("server key");
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config");
        Arc::new(config)
    }

    /// Runs a complete in-memory handshake; the error says which side failed.
    fn handshake(
        client: ClientConfig,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<(), String> {
        let server_name = ServerName::try_from(name.to_owned()).expect("server name");
        let mut client = Connection::Client(
            ClientConnection::new(Arc::new(client), server_name).expect("client connection"),
        );
        let mut server =
            Connection::Server(ServerConnection::new(server).expect("server connection"));
        for _ in 0..16 {
            let sent = pump(&mut client, &mut server).map_err(|e| format!("server: {e}"))?;
            let answered = pump(&mut server, &mut client).map_err(|e| format!("client: {e}"))?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
            if !sent && !answered {
                break;
            }
        }
        Err("handshake stalled".to_owned())
    }

    fn pump(from: &mut Connection, to: &mut Connection) -> Result<bool, rustls::Error> {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).expect("write to a Vec");
        }
        let mut pending = wire.as_slice();
        while !pending.is_empty() {
            to.read_tls(&mut pending).expect("read from a slice");
            to.process_new_packets()?;
        }
        Ok(!wire.is_empty())
    }
}
