//! TLS for Kiln's listeners (rustls): a server certificate re-read when its files change, and
//! mutual TLS on the cluster port, where a peer must present a certificate signed by the
//! cluster's CA before any request is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kiln_runtime::{FirstTick, spawn_every};
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How often certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(5);

/// A TLS file that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind wanted.
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
    /// rustls refused the certificate, key or CA.
    #[error("{what}: {source}")]
    Rustls {
        what: String,
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider every TLS connection uses: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The certificates of a PEM file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            what: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            what: "holds no certificate".to_string(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        what: format!("holds no PEM private key: {e}"),
    })
}

/// A certificate and key pair on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// PEM certificate chain, the end entity first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl CertFiles {
    fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        CertifiedKey::from_der(certificates(&self.cert)?, private_key(&self.key)?, provider)
            .map_err(|source| TlsError::Rustls {
                what: format!(
                    "certificate {} and key {}",
                    self.cert.display(),
                    self.key.display()
                ),
                source,
            })
    }

    fn modified(&self) -> Option<Modified> {
        let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((at(&self.cert)?, at(&self.key)?))
    }
}

/// When the certificate and the key files were last modified.
type Modified = (SystemTime, SystemTime);

/// Serves the current certificate, replaced when its files change.
#[derive(Debug)]
struct ReloadingCert {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    /// The key in use and the files' modification times it was read at.
    current: RwLock<(Arc<CertifiedKey>, Option<Modified>)>,
}

impl ReloadingCert {
    fn reload_if_changed(&self) {
        let modified = self.files.modified();
        if modified == self.current.read().1 {
            return;
        }
        match self.files.load(&self.provider) {
            Ok(key) => {
                *self.current.write() = (Arc::new(key), modified);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %e, "keeping the previous TLS certificate"),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().0))
    }
}

/// A TLS acceptor presenting `files` (re-read within seconds of a change, until `stop`); with
/// `client_ca`, a peer must present a certificate signed by it (mutual TLS). ALPN offers h2 and
/// HTTP/1.1, as gRPC clients require.
pub fn acceptor(
    files: &CertFiles,
    client_ca: Option<&Path>,
    stop: CancellationToken,
) -> Result<TlsAcceptor, TlsError> {
    let provider = provider();
    let cert = Arc::new(ReloadingCert {
        current: RwLock::new((Arc::new(files.load(&provider)?), files.modified())),
        files: files.clone(),
        provider: Arc::clone(&provider),
    });
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions".to_string(),
            source,
        })?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|source| TlsError::Rustls {
                    what: format!("CA certificate {}", ca.display()),
                    source,
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TlsError::Pem {
                        path: ca.display().to_string(),
                        what: format!("cannot verify clients with it: {e}"),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    spawn_every(RELOAD_CHECK, FirstTick::AfterPeriod, stop, move || {
        cert.reload_if_changed();
        std::future::ready(())
    });
    Ok(TlsAcceptor::from(Arc::new(config)))
}
