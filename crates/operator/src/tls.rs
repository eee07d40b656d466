//! Mutual TLS for the operator-side listener, as CloudNativePG's operator dials it: TLS
//! 1.3 only, ALPN `h2` (grpc-go refuses a server without it), a client certificate
//! required and verified against `--client-cert` (the client certificate itself, as
//! cert-manager's self-signed issuer makes it, or a CA bundle).
//!
//! The three files are re-read when they change (their modification time, size or
//! inode differ from the last read; one `stat` per file and handshake), so a
//! cert-manager rotation, which swaps the Secret volume's files, takes effect on the
//! next handshake without a restart. A file that cannot be read or parsed after a
//! change keeps the last good certificate and logs why: a half-written rotation must
//! not take the plugin down.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

/// The certificate files of the TCP listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--server-cert`: the server certificate chain (PEM), leaf first.
    pub server_cert: PathBuf,
    /// `--server-key`: the server's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub server_key: PathBuf,
    /// `--client-cert`: the certificates a client certificate must chain to (PEM).
    pub client_cert: PathBuf,
}

/// Why a certificate file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {what} {}: {source}; check the {flag} flag and the mounted Secret", path.display())]
    Read {
        /// Which file ("the server certificate").
        what: &'static str,
        /// The flag naming it.
        flag: &'static str,
        /// Its path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file holds no usable PEM of the expected kind.
    #[error("{what} {} holds no usable PEM ({reason}); check the {flag} flag and the mounted Secret", path.display())]
    Parse {
        /// Which file.
        what: &'static str,
        /// The flag naming it.
        flag: &'static str,
        /// Its path.
        path: PathBuf,
        /// What was wrong (never key material).
        reason: String,
    },
    /// rustls refused the combination (key not matching the certificate, …).
    #[error("the TLS configuration cannot be built: {0}")]
    Config(String),
}

impl barrelman_core::error::Classified for TlsError {
    fn class(&self) -> barrelman_core::error::ErrorClass {
        barrelman_core::error::ErrorClass::Input
    }
}

/// What identifies one version of a file: a change of any part means "read it again".
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks: a Secret volume's `tls.crt` is a link into the
    // `..data` directory that the kubelet swaps atomically.
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A value loaded from files, reloaded when their stamps change.
struct Reloading<T> {
    paths: Vec<PathBuf>,
    load: Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>,
    current: Mutex<(Vec<Option<Stamp>>, T)>,
}

impl<T: Clone> Reloading<T> {
    fn new(
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        let value = load()?;
        Ok(Reloading {
            paths,
            load: Box::new(load),
            current: Mutex::new((stamps, value)),
        })
    }

    fn get(&self) -> T {
        let stamps: Vec<_> = self.paths.iter().map(|p| stamp(p)).collect();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != stamps {
            match (self.load)() {
                Ok(v) => {
                    tracing::info!(files = ?self.paths, "certificate files changed; reloaded");
                    *current = (stamps, v);
                }
                // Keep serving with the last good value; the stamps stay old so the
                // next handshake tries again (the rotation may be half-written).
                Err(e) => tracing::warn!("{e}; keeping the previous certificate"),
            }
        }
        current.1.clone()
    }
}

fn read(path: &Path, what: &'static str, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    path: &Path,
    what: &'static str,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what, flag)?;
    let parse = |reason: String| TlsError::Parse {
        what,
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse(e.to_string()))?;
    if certs.is_empty() {
        return Err(parse("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

fn load_server_key(
    files: &TlsFiles,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    const CERT: &str = "the server certificate";
    const KEY: &str = "the server key";
    let certs = certificates(&files.server_cert, CERT, "--server-cert")?;
    let pem = read(&files.server_key, KEY, "--server-key")?;
    // The parser's error never echoes the key's bytes.
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Parse {
        what: KEY,
        flag: "--server-key",
        path: files.server_key.clone(),
        reason: e.to_string(),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Parse {
            what: KEY,
            flag: "--server-key",
            path: files.server_key.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| {
        TlsError::Config(format!(
            "the key {} does not match the certificate {}: {e}",
            files.server_key.display(),
            files.server_cert.display()
        ))
    })?;
    Ok(Arc::new(certified))
}

fn load_client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let certs = certificates(path, "the client certificate", "--client-cert")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        // A self-signed leaf works as its own trust anchor: webpki checks the
        // presented certificate's signature with the anchor's key.
        roots.add(cert).map_err(|e| TlsError::Parse {
            what: "the client certificate",
            flag: "--client-cert",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// The server certificate, re-read when its files change.
struct ReloadingCert(Reloading<Arc<CertifiedKey>>);

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("files", &self.0.paths)
            .finish()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.get())
    }
}

/// The client verifier, rebuilt when `--client-cert` changes.
struct ReloadingVerifier {
    inner: Reloading<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ReloadingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingVerifier")
            .field("files", &self.inner.paths)
            .finish()
    }
}

impl ClientCertVerifier for ReloadingVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The hints would have to outlive a reload; they are optional (Go and rustls
        // clients present their only certificate without them).
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The listener's TLS configuration: TLS 1.3 only, ALPN `h2`, client certificate
/// required, all three files re-read on change. Fails when any file is unusable now.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = {
        let (files, provider) = (files.clone(), provider.clone());
        Reloading::new(
            vec![files.server_cert.clone(), files.server_key.clone()],
            move || load_server_key(&files, &provider),
        )?
    };
    let verifier = {
        let (path, p) = (files.client_cert.clone(), provider.clone());
        ReloadingVerifier {
            inner: Reloading::new(vec![path.clone()], move || load_client_verifier(&path, &p))?,
            provider: provider.clone(),
        }
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(ReloadingCert(cert)));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
