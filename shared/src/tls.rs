//! TLS helpers: self-signed certificates for witnesses, certificate fingerprints, and rustls
//! client configs (normal validation, or pinned to one certificate's SHA-256).
//!
//! Every config here is built with the ring provider explicitly, so it works whether or not a
//! process-wide default provider was installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a certificate for {names:?}: {reason}")]
    Generate { names: Vec<String>, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected a PEM certificate (-----BEGIN CERTIFICATE-----): {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: expected a PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadPrivateKey { path: PathBuf, reason: String },
    #[error("expected a certificate fingerprint of 64 hex digits (SHA-256), got {0:?}")]
    BadFingerprint(String),
}

/// A fresh self-signed certificate (ECDSA P-256) for `names`; a name that parses as an IP
/// address becomes an IP SAN, anything else a DNS SAN. Returns `(cert_pem, key_pem)`.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let err = |reason: String| TlsError::Generate {
        names: names.to_vec(),
        reason,
    };
    if names.is_empty() {
        return Err(err("at least one name is needed".into()));
    }
    for name in names {
        if name.parse::<std::net::IpAddr>().is_err() {
            crate::hostname::check_hostname(name).map_err(|e| {
                err(format!(
                    "{name:?} is neither an IP address nor a host name: {e}"
                ))
            })?;
        }
    }
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| err(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0].clone());
    let key = rcgen::KeyPair::generate().map_err(|e| err(e.to_string()))?;
    let cert = params.self_signed(&key).map_err(|e| err(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Lowercase hex SHA-256 of a DER certificate: what a coordinator pins.
pub fn cert_sha256_hex(der: &[u8]) -> String {
    hex::encode(cert_sha256(der))
}

/// SHA-256 of a DER certificate.
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Parses a pin written as 64 hex digits (colons allowed, any case).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let clean: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&clean).map_err(|_| TlsError::BadFingerprint(text.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| TlsError::BadFingerprint(text.to_string()))
}

/// A certificate read from a PEM file: its DER bytes and SHA-256 fingerprint.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub der: CertificateDer<'static>,
    pub sha256_hex: String,
}

/// Parses the first certificate of a PEM text; `origin` names it in errors.
pub fn parse_cert_pem(pem: &[u8], origin: &Path) -> Result<CertInfo, TlsError> {
    let der = CertificateDer::from_pem_slice(pem).map_err(|e| TlsError::BadCertificate {
        path: origin.to_owned(),
        reason: e.to_string(),
    })?;
    let sha256_hex = cert_sha256_hex(&der);
    Ok(CertInfo { der, sha256_hex })
}

/// Reads a PEM certificate file and returns the first certificate's DER and fingerprint.
pub fn read_cert_file(path: &Path) -> Result<CertInfo, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_cert_pem(&pem, path)
}

/// Reads every certificate of a PEM bundle (e.g. extra CA roots); at least one is required.
pub fn read_cert_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadCertificate {
            path: path.to_owned(),
            reason: "no certificate found".into(),
        });
    }
    Ok(certs)
}

/// Checks that a PEM private key parses; `origin` names it in errors.
pub fn check_private_key_pem(pem: &[u8], origin: &Path) -> Result<(), TlsError> {
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem)
        .map(|_| ())
        .map_err(|e| TlsError::BadPrivateKey {
            path: origin.to_owned(),
            reason: e.to_string(),
        })
}

/// A server config (ring provider, h2 + http/1.1) for the certificate chain and private key in
/// `cert_pem` and `key_pem`; `origin` (the certificate file) names them in errors.
pub fn server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    origin: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let bad_cert = |reason: String| TlsError::BadCertificate {
        path: origin.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad_cert("no certificate found".into()));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TlsError::BadPrivateKey {
            path: origin.to_owned(),
            reason: format!("the certificate's key: {e}"),
        }
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            bad_cert(format!(
                "the certificate and the key do not go together: {e}"
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client config that trusts exactly `roots` (an operator's CA, or a self-signed end-entity
/// certificate as its own trust anchor), validated by rustls-webpki with the host name or IP
/// address checked as usual.
pub fn client_config_with_roots(
    roots: Vec<CertificateDer<'static>>,
) -> Result<ClientConfig, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r).map_err(|e| TlsError::BadCertificate {
            path: PathBuf::from("(trust anchor)"),
            reason: e.to_string(),
        })?;
    }
    Ok(ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// The `notAfter` of a DER certificate (RFC 5280 §4.1.2.5), or `None` if it cannot be read
/// or lies before 1970.
pub fn not_after(der: &[u8]) -> Option<std::time::SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The ring provider, as every config here uses it.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts the server's end-entity certificate iff its SHA-256 equals the pin (or any
/// certificate when there is no pin), and still checks the handshake signatures, so the peer
/// must hold the certificate's private key.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub fn new(pin: Option<[u8; 32]>) -> PinnedVerifier {
        PinnedVerifier {
            pin,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

/// The certificate a server presented is not the pinned one; both fingerprints are in the
/// message, so the operator can tell a renewed certificate from a wrong address.
#[derive(thiserror::Error)]
#[error("certificate pin mismatch: the server presents sha256 {presented}, the pin is {pinned}")]
pub struct PinMismatch {
    pub presented: String,
    pub pinned: String,
}

/// The same words as `Display`: rustls shows a `CertificateError::Other` by its `Debug`, and
/// that text is what reaches the operator through reqwest's error chain.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            Some(pin) if cert_sha256(end_entity) != pin => Err(rustls::Error::InvalidCertificate(
                CertificateError::Other(rustls::OtherError(std::sync::Arc::new(PinMismatch {
                    presented: hex::encode(cert_sha256(end_entity)),
                    pinned: hex::encode(pin),
                }))),
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
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

/// A client config that trusts exactly the certificate with SHA-256 `pin` (or, with `None`,
/// any certificate: witness votes are signed, TLS is defence in depth). ALPN offers h2 and
/// http/1.1. Give it to reqwest with `ClientBuilder::tls_backend_preconfigured(config)`.
pub fn pinned_client_config(pin: Option<[u8; 32]>) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(pin)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// A client config that validates certificates against the Mozilla roots (webpki-roots),
/// for outbound HTTPS to public services such as webhook receivers.
pub fn webpki_client_config() -> ClientConfig {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn self_signed_has_ip_and_dns_sans_and_stable_fingerprint() {
        let (cert, key) = self_signed(&["w1.example.test".into(), "127.0.0.1".into()]).unwrap();
        let info = parse_cert_pem(cert.as_bytes(), Path::new("mem")).unwrap();
        assert_eq!(info.sha256_hex.len(), 64);
        assert_eq!(info.sha256_hex, cert_sha256_hex(&info.der));
        check_private_key_pem(key.as_bytes(), Path::new("mem")).unwrap();
        assert_eq!(
            parse_fingerprint(&info.sha256_hex).unwrap(),
            cert_sha256(&info.der)
        );
        assert!(parse_fingerprint("abcd").is_err());
        assert!(self_signed(&[]).is_err());
        assert!(self_signed(&["not a name!".into()]).is_err());
    }

    #[test]
    fn not_after_is_read_from_the_certificate() {
        for (y, m, d, want) in [
            // UTCTime (before 2050) and GeneralizedTime (from 2050).
            (2030, 6, 15, 1_907_712_000u64),
            (1999, 12, 31, 946_598_400),
            (2051, 3, 1, 2_561_241_600),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.not_after = rcgen::date_time_ymd(y, m, d);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let got = not_after(cert.der()).unwrap();
            assert_eq!(
                got.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
                want,
                "{y}-{m}-{d}"
            );
        }
        assert_eq!(not_after(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn a_server_config_needs_a_matching_key() {
        let (cert, key) = self_signed(&["localhost".into()]).unwrap();
        let (_, other_key) = self_signed(&["localhost".into()]).unwrap();
        let origin = Path::new("/etc/quorate/api.crt");
        server_config(cert.as_bytes(), key.as_bytes(), origin).unwrap();
        let err = server_config(cert.as_bytes(), other_key.as_bytes(), origin).unwrap_err();
        assert!(
            err.to_string().contains("/etc/quorate/api.crt")
                && err.to_string().contains("do not go together"),
            "{err}"
        );
        assert!(server_config(b"", key.as_bytes(), origin).is_err());
    }

    #[test]
    fn bad_pem_names_the_file() {
        let err = parse_cert_pem(b"nonsense", Path::new("/etc/x.crt")).unwrap_err();
        assert!(err.to_string().contains("/etc/x.crt"), "{err}");
    }

    /// A one-shot HTTPS server on 127.0.0.1 answering every connection with 200 "pinned-ok".
    async fn https_server(
        cert_pem: &str,
        key_pem: &str,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            for _ in 0..8 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                        let Ok(n) = tls.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = tls
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\npinned-ok")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (addr, task)
    }

    fn client(pin: Option<[u8; 32]>) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured(pinned_client_config(pin))
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn reqwest_with_pinned_config_accepts_the_pin_and_refuses_another_cert() {
        crate::install_crypto_provider();
        let (cert, key) = self_signed(&["127.0.0.1".into()]).unwrap();
        let (other_cert, _) = self_signed(&["127.0.0.1".into()]).unwrap();
        let pin = cert_sha256(
            &parse_cert_pem(cert.as_bytes(), Path::new("mem"))
                .unwrap()
                .der,
        );
        let other_pin = cert_sha256(
            &parse_cert_pem(other_cert.as_bytes(), Path::new("mem"))
                .unwrap()
                .der,
        );
        let (addr, server) = https_server(&cert, &key).await;
        let url = format!("https://{addr}/");

        let body = client(Some(pin))
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "pinned-ok");

        let err = client(Some(other_pin)).get(&url).send().await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");

        // No pin: any certificate is accepted (votes carry the trust).
        let body = client(None)
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "pinned-ok");
        server.abort();
    }
}
