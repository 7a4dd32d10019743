//! TLS with rustls (ring provider): the server side for STARTTLS, STLS and
//! the implicit-TLS listeners, and the client side for outbound delivery.
//!
//! # Server
//!
//! [`TlsAcceptor`] holds the `ServerConfig` behind an [`ArcSwap`], so that a
//! SIGHUP can [`reload`](TlsAcceptor::reload) renewed certificates without
//! touching connections in progress: each handshake takes the config current
//! when it starts. The certificate comes from PEM files, or, when none is
//! configured, is a self-signed one generated once into the data directory,
//! so that STARTTLS works out of the box (MTAs encrypt opportunistically
//! and do not verify; submission clients must be told to trust it).
//!
//! TLS 1.2 and 1.3 only, no ALPN, no 0-RTT (early data can be replayed),
//! no client certificates.
//!
//! # The sans-IO cores
//!
//! The SMTP and POP3 sessions never see rustls: the driver runs the
//! handshake and hands them [`TlsInfo`] (defined in `smtp::session`, plain
//! strings), made by [`info`].

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, ProtocolVersion, RootCertStore, ServerConfig,
    SignatureScheme,
};

pub use crate::smtp::session::TlsInfo;

/// The protocol versions offered, newest first: SSLv3 to TLS 1.1 are broken
/// or deprecated (RFC 8996), and rustls does not implement them anyway.
static VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// File names of the generated self-signed certificate and key in the data
/// directory.
const SELF_SIGNED_CERT: &str = "cert.pem";
const SELF_SIGNED_KEY: &str = "key.pem";

/// Why TLS could not be set up. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A generated certificate or key could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not PEM, or holds no certificate or no private key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Only one of the certificate and the key was configured.
    #[error("a TLS certificate and its key must be configured together")]
    Incomplete,
    /// rustls refused the certificate or key (e.g. a key that does not
    /// match the certificate, or an unsupported key type).
    #[error("{path}: {source}")]
    Rejected {
        /// The certificate file.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// Generating the self-signed certificate failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The client's root certificates could not be set up.
    #[error("client TLS configuration: {0}")]
    Client(rustls::Error),
}

/// Where the server certificate and key come from.
#[derive(Debug, Clone)]
enum Source {
    /// Configured PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated into the data directory if missing.
    SelfSigned {
        hostname: String,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// Server-side TLS: certificate + key from PEM files, or a self-signed
/// certificate for `hostname` generated (once) into `data_dir` (`cert.pem`,
/// `key.pem`, the key file mode 0600) when none is configured. Holds an
/// [`ArcSwap`]`<ServerConfig>` so that [`reload`](Self::reload) (SIGHUP)
/// swaps certificates; a failed reload keeps the old config.
pub struct TlsAcceptor {
    source: Source,
    current: ArcSwap<ServerConfig>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads `cert` (the chain, leaf first) and `key` when both are given;
    /// with neither, uses `data_dir/cert.pem` and `data_dir/key.pem`,
    /// generating a self-signed certificate for `hostname` there first if
    /// either is missing (an existing pair is reused, so the certificate
    /// a client may have pinned survives restarts).
    ///
    /// # Errors
    ///
    /// Only one of `cert` and `key` given, unreadable or invalid files, a
    /// key that does not match the certificate, or a failure to create the
    /// self-signed pair.
    pub fn new(
        hostname: &str,
        cert: Option<&Path>,
        key: Option<&Path>,
        data_dir: &Path,
    ) -> Result<Self, TlsError> {
        let source = match (cert, key) {
            (Some(cert), Some(key)) => Source::Files {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            (None, None) => Source::SelfSigned {
                hostname: hostname.to_owned(),
                cert: data_dir.join(SELF_SIGNED_CERT),
                key: data_dir.join(SELF_SIGNED_KEY),
            },
            _ => return Err(TlsError::Incomplete),
        };
        let config = load(&source)?;
        Ok(TlsAcceptor {
            source,
            current: ArcSwap::from_pointee(config),
        })
    }

    /// Reads the certificate and key again (after a renewal) and makes
    /// them the ones new handshakes use. On error the previous config stays
    /// in use. A deleted self-signed pair is generated anew.
    ///
    /// # Errors
    ///
    /// As [`TlsAcceptor::new`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.source)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// The config for the next handshake, e.g. for
    /// `tokio_rustls::TlsAcceptor::from(acceptor.config())`. Take it per
    /// connection, so that a reload applies to new connections.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// The certificate file in use (configured or generated): what a
    /// client that is to trust this server must be given.
    pub fn cert_path(&self) -> PathBuf {
        match &self.source {
            Source::Files { cert, .. } | Source::SelfSigned { cert, .. } => cert.clone(),
        }
    }
}

/// What `conn` negotiated, for the sessions: the version as OpenSSL and
/// Postfix spell it (`TLSv1.3`) and the cipher suite's IANA name
/// (`TLS_AES_256_GCM_SHA384`; rustls calls the TLS 1.3 ones `TLS13_…`).
/// Takes a rustls `ServerConnection` or `ClientConnection` (they deref to
/// `CommonState`); empty strings before the handshake.
pub fn info(conn: &CommonState) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let cipher = conn.negotiated_cipher_suite().map_or_else(String::new, |suite| {
        let name = suite
            .suite()
            .as_str()
            .map_or_else(|| format!("{:?}", suite.suite()), str::to_owned);
        match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name,
        }
    });
    TlsInfo { version, cipher }
}

/// Client-side TLS for outbound delivery.
///
/// With `verify`, the server's certificate must chain to a root of
/// webpki-roots (Mozilla's list) or of `extra_roots` (a PEM file, added to
/// them; tests point it at [`TlsAcceptor::cert_path`]) and name the host.
/// Without, any certificate is accepted: opportunistic TLS, as MTAs do
/// when neither DANE nor MTA-STS says otherwise (RFC 7435), which still
/// defeats passive eavesdropping. The handshake signature is checked
/// either way, so the peer must hold the key of the certificate it shows.
///
/// # Errors
///
/// `extra_roots` unreadable, not PEM, without certificates, or with one
/// that is not a valid trust anchor.
pub fn client_config(verify: bool, extra_roots: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(TlsError::Client)?;
    let config = if verify {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_roots {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|source| TlsError::Rejected {
                    path: path.to_owned(),
                    source,
                })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The verifier of opportunistic TLS: any certificate, for any name, but
/// a valid handshake signature by its key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
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

/// Builds the server config from `source`, generating the self-signed
/// pair first if it is missing.
fn load(source: &Source) -> Result<ServerConfig, TlsError> {
    let (cert_path, key_path) = match source {
        Source::Files { cert, key } => (cert, key),
        Source::SelfSigned { hostname, cert, key } => {
            if !(cert.exists() && key.exists()) {
                generate_self_signed(hostname, cert, key)?;
            }
            (cert, key)
        }
    };
    let certs = read_certs(cert_path)?;
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        message: format!("no usable private key ({e})"),
    })?;
    ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(VERSIONS)
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|source| TlsError::Rejected {
            path: cert_path.clone(),
            source,
        })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, in order; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no certificate found".to_owned(),
        });
    }
    Ok(certs)
}

/// Generates a self-signed certificate for `hostname` (ECDSA P-256, the
/// hostname as subject alternative name and common name) and writes the
/// key (mode 0600) and the certificate. Each file is written under a
/// temporary name and renamed, so a crash leaves no half-written PEM that
/// the next start would refuse.
fn generate_self_signed(hostname: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let key_pair = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key_pair)?;
    if let Some(dir) = key_path.parent() {
        fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    }
    // The key first: a certificate without its key would be regenerated
    // anyway, but this way no window shows a new certificate with an old key.
    write_atomically(key_path, key_pair.serialize_pem().as_bytes(), 0o600)?;
    write_atomically(cert_path, cert.pem().as_bytes(), 0o644)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("pem.tmp");
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Created with its final mode: the key is never readable by others,
        // not even between create and chmod.
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(error)?;
    // `mode` applies only to a file being created; a stale temporary file
    // left by a crash keeps its mode, so set it explicitly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(error)?;
    }
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)?;
    fs::rename(&tmp, path).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const HOST: &str = "mx.poczta.test";

    /// Runs one handshake over an in-memory pipe and exchanges a line both
    /// ways; returns what each side saw, or the client's error.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> Result<(TlsInfo, TlsInfo, Vec<u8>), io::Error> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let server_side = async move {
            let mut tls = acceptor.accept(server_io).await?;
            let mut line = [0u8; 6];
            tls.read_exact(&mut line).await?;
            assert_eq!(&line, b"EHLO\r\n");
            tls.write_all(b"250 OK\r\n").await?;
            tls.flush().await?;
            Ok::<_, io::Error>(info(tls.get_ref().1))
        };
        let client_side = async move {
            let mut tls = connector.connect(name, client_io).await?;
            tls.write_all(b"EHLO\r\n").await?;
            tls.flush().await?;
            let mut reply = [0u8; 8];
            tls.read_exact(&mut reply).await?;
            assert_eq!(&reply, b"250 OK\r\n");
            let (_, conn) = tls.get_ref();
            let cert = conn.peer_certificates().unwrap()[0].to_vec();
            Ok::<_, io::Error>((info(conn), cert))
        };
        let (server, client) = tokio::join!(server_side, client_side);
        let (client_info, cert) = client?;
        // The server fails too when the client refuses it; the client's
        // error is the one worth reporting.
        Ok((server?, client_info, cert))
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn pem_cert_der(path: &Path) -> Vec<u8> {
        read_certs(path).unwrap()[0].to_vec()
    }

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = TlsAcceptor::new(HOST, None, None, &data).unwrap();
        assert_eq!(first.cert_path(), data.join("cert.pem"));
        let cert = fs::read(data.join("cert.pem")).unwrap();
        let key = fs::read(data.join("key.pem")).unwrap();
        assert!(String::from_utf8_lossy(&key).contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(data.join("key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!data.join("key.pem.tmp").exists());
        // A second start reuses the pair.
        let second = TlsAcceptor::new(HOST, None, None, &data).unwrap();
        assert_eq!(fs::read(second.cert_path()).unwrap(), cert);
        assert_eq!(fs::read(data.join("key.pem")).unwrap(), key);

        // A client trusting cert.pem verifies the server under its name.
        let client = client_config(true, Some(&second.cert_path())).unwrap();
        let (server_info, client_info, seen) = block_on(handshake(second.config(), client, HOST)).unwrap();
        assert_eq!(seen, pem_cert_der(&second.cert_path()));
        assert_eq!(server_info, client_info);
        assert_eq!(server_info.version, "TLSv1.3");
        assert!(server_info.cipher.starts_with("TLS_"), "{server_info:?}");
        assert!(!server_info.cipher.starts_with("TLS13_"), "{server_info:?}");
    }

    #[test]
    fn client_verification() {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = TlsAcceptor::new(HOST, None, None, dir.path()).unwrap();
        let cases: &[(&str, bool, bool, &str, bool)] = &[
            // (case, verify, trust cert.pem, name, succeeds)
            (
                "opportunistic accepts a self-signed cert",
                false,
                false,
                HOST,
                true,
            ),
            ("opportunistic accepts any name", false, false, "other.test", true),
            ("webpki roots alone refuse it", true, false, HOST, false),
            ("trusted via extra roots", true, true, HOST, true),
            ("trusted, but for another name", true, true, "other.test", false),
        ];
        for &(case, verify, trust, name, succeeds) in cases {
            let roots = trust.then(|| acceptor.cert_path());
            let client = client_config(verify, roots.as_deref()).unwrap();
            let result = block_on(handshake(acceptor.config(), client, name));
            assert_eq!(result.is_ok(), succeeds, "{case}: {result:?}");
        }
    }

    #[test]
    fn tls12_is_negotiated_with_a_tls12_client() {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = TlsAcceptor::new(HOST, None, None, dir.path()).unwrap();
        let client = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate {
                provider: Arc::new(ring::default_provider()),
            }))
            .with_no_client_auth();
        let (server_info, _, _) = block_on(handshake(acceptor.config(), Arc::new(client), HOST)).unwrap();
        assert_eq!(server_info.version, "TLSv1.2");
        assert!(
            server_info.cipher.starts_with("TLS_ECDHE_ECDSA_WITH_"),
            "{server_info:?}"
        );
        assert!(acceptor.config().alpn_protocols.is_empty());
        assert_eq!(acceptor.config().max_early_data_size, 0);
    }

    /// Writes a fresh self-signed pair for `HOST` to `cert`/`key`.
    fn write_pair(cert: &Path, key: &Path) {
        let _ = fs::remove_file(cert);
        let _ = fs::remove_file(key);
        generate_self_signed(HOST, cert, key).unwrap();
    }

    #[test]
    fn configured_files_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
        write_pair(&cert, &key);
        let data = dir.path().join("data");
        let acceptor = TlsAcceptor::new(HOST, Some(&cert), Some(&key), &data).unwrap();
        assert_eq!(acceptor.cert_path(), cert);
        assert!(!data.exists(), "nothing generated when files are configured");
        let old = pem_cert_der(&cert);
        let opportunistic = client_config(false, None).unwrap();
        let (_, _, seen) = block_on(handshake(acceptor.config(), opportunistic.clone(), HOST)).unwrap();
        assert_eq!(seen, old);

        // A renewed certificate is picked up by the next handshake.
        write_pair(&cert, &key);
        let new = pem_cert_der(&cert);
        assert_ne!(new, old);
        acceptor.reload().unwrap();
        let (_, _, seen) = block_on(handshake(acceptor.config(), opportunistic.clone(), HOST)).unwrap();
        assert_eq!(seen, new);

        // A broken renewal is refused and the last good config stays.
        fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(acceptor.reload(), Err(TlsError::Pem { .. })));
        let (_, _, seen) = block_on(handshake(acceptor.config(), opportunistic, HOST)).unwrap();
        assert_eq!(seen, new);
    }

    #[test]
    fn configuration_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("a.crt"), dir.path().join("a.key"));
        write_pair(&cert, &key);
        let (cert2, key2) = (dir.path().join("b.crt"), dir.path().join("b.key"));
        write_pair(&cert2, &key2);
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let new = |c: Option<&Path>, k: Option<&Path>| TlsAcceptor::new(HOST, c, k, dir.path());
        assert!(matches!(new(Some(&cert), None), Err(TlsError::Incomplete)));
        assert!(matches!(new(None, Some(&key)), Err(TlsError::Incomplete)));
        assert!(matches!(
            new(Some(&missing), Some(&key)),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            new(Some(&cert), Some(&missing)),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            new(Some(&garbage), Some(&key)),
            Err(TlsError::Pem { .. })
        ));
        // A certificate file holding only a key, and the reverse.
        assert!(matches!(new(Some(&key), Some(&key)), Err(TlsError::Pem { .. })));
        assert!(matches!(new(Some(&cert), Some(&cert)), Err(TlsError::Pem { .. })));
        // A key that is not the certificate's.
        let err = new(Some(&cert), Some(&key2)).unwrap_err();
        assert!(matches!(err, TlsError::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("a.crt"), "{err}");
        // Client roots.
        assert!(matches!(
            client_config(true, Some(&missing)),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            client_config(true, Some(&key)),
            Err(TlsError::Pem { .. })
        ));
    }

    #[test]
    fn self_signed_pair_missing_a_file_is_regenerated() {
        let dir = tempfile::tempdir().unwrap();
        let acceptor = TlsAcceptor::new(HOST, None, None, dir.path()).unwrap();
        let old = pem_cert_der(&acceptor.cert_path());
        fs::remove_file(dir.path().join("key.pem")).unwrap();
        acceptor.reload().unwrap();
        let new = pem_cert_der(&acceptor.cert_path());
        assert_ne!(new, old);
        let (_, _, seen) = block_on(handshake(
            acceptor.config(),
            client_config(false, None).unwrap(),
            HOST,
        ))
        .unwrap();
        assert_eq!(seen, new);
    }
}
