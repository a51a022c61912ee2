//! rustls configurations from PEM files, rebuilt when the files change.
//!
//! One certificate and key serve every TLS listener, the quorum port and this broker's own
//! connections to other brokers (it presents the same certificate as a client, so give it both
//! the serverAuth and clientAuth usages). The CA file verifies clients' certificates
//! (`--ssl-client-auth`) and other brokers' certificates.
//!
//! Rotation without a restart: [`TlsContext::reload_if_changed`] (called every
//! `--ssl-reload-interval-ms` by a broker task) compares the files' inode, size and mtime with
//! the last look (a Kubernetes Secret volume swaps a symlink, so all three change) and rebuilds
//! every configuration from them. A half-written or mismatched pair fails to build: the
//! previous configuration stays in use and the next change is tried again. New connections use
//! the new configuration; open ones keep the one they started with.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use rustls::client::ClientConfig;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{x509, ClientAuth};

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, this broker's certificate first.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates that sign clients' and other brokers' certificates.
    pub ca: Option<PathBuf>,
}

/// Why the TLS material could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS configuration from {certificate} and {key}: {reason}")]
    Build {
        certificate: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("no CA file (--ssl-ca-file): {0}")]
    NoCa(&'static str),
}

/// The configurations built from one version of the files.
#[derive(Debug)]
struct Built {
    server_none: Arc<ServerConfig>,
    server_requested: Option<Arc<ServerConfig>>,
    server_required: Option<Arc<ServerConfig>>,
    client: Option<Arc<ClientConfig>>,
    subject: Option<String>,
}

/// A file's identity and version: (inode, size, mtime in ns); `None` if it cannot be read.
type Stamp = Option<(u64, u64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec()))
}

/// The TLS configurations of one broker, reloadable.
#[derive(Debug)]
pub struct TlsContext {
    files: TlsFiles,
    built: RwLock<Arc<Built>>,
    seen: Mutex<Vec<Stamp>>,
    reloads: AtomicU64,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<Built, TlsError> {
    let chain = read_certs(&files.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, e))?;
    let build_err = |reason: String| TlsError::Build {
        certificate: files.certificate.clone(),
        key: files.key.clone(),
        reason,
    };
    let roots = match &files.ca {
        None => None,
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| file_err(ca, e))?;
            }
            Some(Arc::new(roots))
        }
    };
    let p = provider();
    let server = |verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>| {
        let b = ServerConfig::builder_with_provider(Arc::clone(&p))
            .with_safe_default_protocol_versions()
            .map_err(|e| build_err(e.to_string()))?;
        let b = match verifier {
            Some(v) => b.with_client_cert_verifier(v),
            None => b.with_no_client_auth(),
        };
        b.with_single_cert(chain.clone(), key.clone_key())
            .map(Arc::new)
            .map_err(|e| build_err(e.to_string()))
    };
    let verifier = |optional: bool| -> Result<_, TlsError> {
        let Some(roots) = &roots else {
            return Ok(None);
        };
        let b = WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), Arc::clone(&p));
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build()
            .map(Some)
            .map_err(|e| build_err(format!("client certificate verifier: {e}")))
    };
    let server_none = server(None)?;
    let server_requested = match verifier(true)? {
        Some(v) => Some(server(Some(v))?),
        None => None,
    };
    let server_required = match verifier(false)? {
        Some(v) => Some(server(Some(v))?),
        None => None,
    };
    let client = match &roots {
        None => None,
        Some(roots) => Some(Arc::new(
            ClientConfig::builder_with_provider(Arc::clone(&p))
                .with_safe_default_protocol_versions()
                .map_err(|e| build_err(e.to_string()))?
                .with_root_certificates(Arc::clone(roots))
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| build_err(e.to_string()))?,
        )),
    };
    let subject = chain.first().and_then(|c| x509::subject_dn(c));
    Ok(Built {
        server_none,
        server_requested,
        server_required,
        client,
        subject,
    })
}

impl TlsContext {
    /// Reads the files and builds every configuration; an error names the file and why.
    pub fn open(files: TlsFiles) -> Result<Arc<TlsContext>, TlsError> {
        let seen = TlsContext::stamps(&files);
        let built = build(&files)?;
        Ok(Arc::new(TlsContext {
            files,
            built: RwLock::new(Arc::new(built)),
            seen: Mutex::new(seen),
            reloads: AtomicU64::new(0),
        }))
    }

    fn stamps(files: &TlsFiles) -> Vec<Stamp> {
        [
            Some(&files.certificate),
            Some(&files.key),
            files.ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| stamp(p))
        .collect()
    }

    fn current(&self) -> Arc<Built> {
        match self.built.read() {
            Ok(b) => Arc::clone(&b),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Rebuilds the configurations if a file changed since the last look: `Ok(true)` when the
    /// new files are in use, `Ok(false)` when nothing changed, `Err` (the old configuration
    /// stays) when the changed files do not make a valid configuration.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = TlsContext::stamps(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let built = build(&self.files)?;
        match self.built.write() {
            Ok(mut b) => *b = Arc::new(built),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(built),
        }
        self.reloads.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// How many times new files were taken into use.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The server configuration for a listener with `auth`.
    pub fn server_config(&self, auth: ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
        let b = self.current();
        match auth {
            ClientAuth::None => Ok(Arc::clone(&b.server_none)),
            ClientAuth::Requested => b
                .server_requested
                .clone()
                .ok_or(TlsError::NoCa("clients' certificates cannot be verified")),
            ClientAuth::Required => b
                .server_required
                .clone()
                .ok_or(TlsError::NoCa("clients' certificates cannot be verified")),
        }
    }

    /// The configuration this broker connects to other brokers with (its certificate as the
    /// client certificate, the CA to verify theirs).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        self.current().client.clone().ok_or(TlsError::NoCa(
            "other brokers' certificates cannot be verified",
        ))
    }

    /// The subject of this broker's own certificate (RFC 2253), the principal other brokers
    /// see when it connects with it.
    pub fn own_subject(&self) -> Option<String> {
        self.current().subject.clone()
    }

    /// Connects a TLS client on `tcp` to the broker at `addr` (`host:port`; the host is the
    /// name its certificate must carry).
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let config = self.client_config().map_err(io::Error::other)?;
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a host name for TLS: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }
}

/// A connection to another broker: plain TCP or TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `addr` over `tcp`: TLS when `tls` is given.
    pub async fn over(tcp: TcpStream, addr: &str, tls: Option<&TlsContext>) -> io::Result<Stream> {
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(t) => Ok(Stream::Tls(Box::new(t.connect(addr, tcp).await?))),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a certificate for localhost signed by it, written as PEM files into `dir`.
    pub(crate) fn write_certs(dir: &Path, cn: &str) -> TlsFiles {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("cert");
        let files = TlsFiles {
            certificate: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            ca: Some(dir.join("ca.crt")),
        };
        std::fs::write(&files.certificate, cert.pem()).expect("write");
        std::fs::write(&files.key, key.serialize_pem()).expect("write");
        std::fs::write(files.ca.as_ref().expect("ca"), ca_cert.pem()).expect("write");
        files
    }

    #[test]
    fn configurations_build_from_pem_files_and_reload_on_change() {
        let dir = tempfile::tempdir().expect("dir");
        let files = write_certs(dir.path(), "broker-a");
        let tls = TlsContext::open(files.clone()).expect("open");
        assert_eq!(tls.own_subject().as_deref(), Some("CN=broker-a"));
        for auth in [
            ClientAuth::None,
            ClientAuth::Requested,
            ClientAuth::Required,
        ] {
            tls.server_config(auth).expect("server config");
        }
        tls.client_config().expect("client config");
        assert!(!tls.reload_if_changed().expect("unchanged"));

        // A key that does not match the certificate: refused, the old configuration stays.
        std::fs::write(
            &files.key,
            rcgen::KeyPair::generate().expect("key").serialize_pem(),
        )
        .expect("write");
        assert!(tls.reload_if_changed().is_err());
        assert_eq!(tls.own_subject().as_deref(), Some("CN=broker-a"));
        // Looked at once: not retried until the files change again.
        assert!(!tls.reload_if_changed().expect("same files"));

        write_certs(dir.path(), "broker-b");
        assert!(tls.reload_if_changed().expect("new pair"));
        assert_eq!(tls.own_subject().as_deref(), Some("CN=broker-b"));
        assert_eq!(tls.reloads(), 1);
    }

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let files = write_certs(dir.path(), "b");
        std::fs::write(&files.certificate, "not a certificate").expect("write");
        let e = TlsContext::open(files.clone())
            .expect_err("no certificate")
            .to_string();
        assert!(e.contains("tls.crt"), "{e}");
        let e = TlsContext::open(TlsFiles {
            key: dir.path().join("missing.key"),
            ..write_certs(dir.path(), "b")
        })
        .expect_err("no key")
        .to_string();
        assert!(e.contains("missing.key"), "{e}");
        let no_ca = TlsContext::open(TlsFiles {
            ca: None,
            ..write_certs(dir.path(), "b")
        })
        .expect("no CA is fine for server-only TLS");
        assert!(no_ca.server_config(ClientAuth::Required).is_err());
        assert!(no_ca.client_config().is_err());
    }
}
