//! TLS for `tls://` comms, as distributed's `Security` sets it up.
//!
//! Dask's TLS is mutual: the scheduler presents its certificate to clients
//! and workers and requires theirs, both checked against the cluster's CA
//! file, with no host-name check ("We expect a dedicated CA for the cluster
//! and people using IP addresses rather than hostnames", `security.py`). The
//! same certificate identifies the scheduler when it dials a worker.
//!
//! OpenSSL, which Python uses, trusts a self-signed certificate that is in
//! the CA file even when it is also the peer's certificate (what
//! `Security.temporary()` and per-cluster self-signed set-ups do); the
//! verifiers here do the same before falling back to chain validation.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where a PEM document comes from: Dask accepts a path or, when the value
/// contains a newline, the PEM text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A file to read.
    File(PathBuf),
    /// PEM text given inline (Dask config values may hold it).
    Inline(String),
}

impl PemSource {
    /// Dask's rule: a value with a newline in it is the PEM text itself.
    pub fn from_config(value: &str) -> PemSource {
        if value.contains('\n') {
            PemSource::Inline(value.to_string())
        } else {
            PemSource::File(PathBuf::from(value))
        }
    }

    fn describe(&self) -> String {
        match self {
            PemSource::File(p) => p.display().to_string(),
            PemSource::Inline(_) => "<inline PEM>".to_string(),
        }
    }

    fn read(&self, what: &'static str) -> Result<Vec<u8>, TlsError> {
        match self {
            PemSource::Inline(s) => Ok(s.as_bytes().to_vec()),
            PemSource::File(p) => std::fs::read(p).map_err(|e| TlsError::Read {
                what,
                source_name: p.display().to_string(),
                error: e.to_string(),
            }),
        }
    }
}

/// A TLS protocol version as Dask's config names it (`1.2`, `1.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2
    V1_2,
    /// TLS 1.3
    V1_3,
}

impl TlsVersion {
    /// Parse `distributed.comm.tls.min-version`/`max-version` (Python only
    /// accepts 1.2 and 1.3 there too).
    pub fn parse(value: f64) -> Option<TlsVersion> {
        if (value - 1.2).abs() < 1e-9 {
            Some(TlsVersion::V1_2)
        } else if (value - 1.3).abs() < 1e-9 {
            Some(TlsVersion::V1_3)
        } else {
            None
        }
    }

    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::V1_2 => &rustls::version::TLS12,
            TlsVersion::V1_3 => &rustls::version::TLS13,
        }
    }
}

/// The scheduler's TLS settings: `--tls-ca-file`, `--tls-cert`, `--tls-key`
/// or `distributed.comm.tls.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA certificate(s) peers must chain to.
    pub ca_file: PemSource,
    /// The scheduler's certificate (chain); may hold the key too.
    pub cert: PemSource,
    /// The private key, when it is not in the certificate file.
    pub key: Option<PemSource>,
    /// Oldest protocol version accepted (Dask's default: 1.2).
    pub min_version: TlsVersion,
    /// Newest protocol version accepted, if limited.
    pub max_version: Option<TlsVersion>,
}

/// Why the TLS set-up could not be built. Each names the file or setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("could not read the TLS {what} {source_name}: {error}")]
    Read {
        /// which setting (CA file, certificate, key)
        what: &'static str,
        /// the path
        source_name: String,
        /// the OS error
        error: String,
    },
    /// The file holds no usable PEM object of the expected kind.
    #[error("the TLS {what} {source_name} holds no usable {kind}: {error}")]
    Pem {
        /// which setting
        what: &'static str,
        /// the path (or `<inline PEM>`)
        source_name: String,
        /// what was looked for
        kind: &'static str,
        /// why nothing was found
        error: String,
    },
    /// The settings do not make a valid configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// Acceptor and connector built once from [`TlsSettings`]; cheap to share.
pub struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// Read the certificates and key and build both ends' configurations.
    pub fn load(settings: &TlsSettings) -> Result<Tls, TlsError> {
        let ca_name = settings.ca_file.describe();
        let ca_pem = settings.ca_file.read("CA file")?;
        let ca_certs = read_certs(&ca_pem, "CA file", &ca_name)?;
        let mut roots = RootCertStore::empty();
        for cert in &ca_certs {
            roots.add(cert.clone()).map_err(|e| TlsError::Pem {
                what: "CA file",
                source_name: ca_name.clone(),
                kind: "CA certificate",
                error: e.to_string(),
            })?;
        }
        let roots = Arc::new(roots);

        let (chain, key) = read_identity(&settings.cert, settings.key.as_ref())?;

        if settings
            .max_version
            .is_some_and(|m| m < settings.min_version)
        {
            return Err(TlsError::Config(
                "distributed.comm.tls.max-version is below min-version".into(),
            ));
        }
        let versions: Vec<&'static SupportedProtocolVersion> = [TlsVersion::V1_2, TlsVersion::V1_3]
            .into_iter()
            .filter(|v| *v >= settings.min_version && settings.max_version.is_none_or(|m| *v <= m))
            .map(TlsVersion::rustls)
            .collect();

        let provider = provider();
        let algorithms = provider.signature_verification_algorithms;
        let config_error = |e: rustls::Error| TlsError::Config(e.to_string());

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(config_error)?
            .with_client_cert_verifier(Arc::new(TrustedOrChained {
                inner: client_verifier,
                trusted: ca_certs.clone(),
            }))
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config_error)?;

        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainWithoutHostname {
                roots,
                trusted: ca_certs,
                algorithms,
            }))
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?;

        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }

    /// The server side, for connections accepted on a `tls://` listener.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The client side, for dialing `tls://` workers.
    pub fn connector(&self) -> &TlsConnector {
        &self.connector
    }
}

/// The dashboard's HTTPS side (`distributed.scheduler.dashboard.tls.cert`
/// and `.key`): encryption only, no client certificates asked for, as
/// Python's HTTP server sets it up.
pub fn https_acceptor(cert: &PemSource, key: Option<&PemSource>) -> Result<TlsAcceptor, TlsError> {
    let (chain, key) = read_identity(cert, key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The cryptography used for every TLS set-up here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring builds without a C++/cmake toolchain; its key exchanges
    // (X25519, P-256, P-384) are the ones Python's OpenSSL offers too.
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its private key (from the key file, or from the
/// certificate file when no key file is given, as `load_cert_chain` does).
fn read_identity(
    cert: &PemSource,
    key: Option<&PemSource>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_name = cert.describe();
    let cert_pem = cert.read("certificate")?;
    let chain = read_certs(&cert_pem, "certificate", &cert_name)?;
    let (key_pem, key_name, what) = match key {
        Some(k) => (k.read("key")?, k.describe(), "key"),
        None => (cert_pem, cert_name, "certificate (no key file given)"),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        what,
        source_name: key_name,
        kind: "private key",
        error: e.to_string(),
    })?;
    Ok((chain, key))
}

/// The name sent to a dialed peer: its host (an IP address or a DNS name).
/// It is not checked against the certificate (Dask's `check_hostname = False`).
pub fn server_name(host: &str) -> ServerName<'static> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(bare.to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}

/// How comms are secured: the TLS set-up, if any, and whether plain `tcp://`
/// is refused (`distributed.comm.require-encryption`).
#[derive(Debug, Clone, Default)]
pub struct CommSecurity {
    /// Present when a CA file and a certificate are configured.
    pub tls: Option<Arc<Tls>>,
    /// Refuse unencrypted connections in both directions.
    pub require_encryption: bool,
}

fn read_certs(
    pem: &[u8],
    what: &'static str,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            source_name: name.to_string(),
            kind: "certificate",
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            source_name: name.to_string(),
            kind: "certificate",
            error: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// The client-certificate check of a `tls://` listener: a certificate that
/// is itself in the CA file is trusted as OpenSSL trusts it; anything else
/// must chain to the CA file.
#[derive(Debug)]
struct TrustedOrChained {
    inner: Arc<dyn ClientCertVerifier>,
    trusted: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for TrustedOrChained {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if self
            .trusted
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            // still a certificate we can parse and use (its key signs the handshake)
            ParsedCertificate::try_from(end_entity)?;
            return Ok(ClientCertVerified::assertion());
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
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

/// The server-certificate check when dialing a worker: trusted as above or
/// chained to the CA file, and never matched against the host name.
#[derive(Debug)]
struct ChainWithoutHostname {
    roots: Arc<RootCertStore>,
    trusted: Vec<CertificateDer<'static>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainWithoutHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        if !self
            .trusted
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
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
