//! HTTP plumbing shared by the HTTP backends (PowerDNS, Virtualmin): the client (timeouts, no
//! redirects, trust in the system roots, a CA file or one pinned certificate), bounded body
//! reads, and the mapping of a failed request or an HTTP status to a [`DnsError`].
//!
//! The certificate pin is `shared::tls`'s verifier: there is one pin check in the workspace.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use super::{DnsError, SettingError};

/// Largest body read from a DNS API answer. A PowerDNS zone answer is the whole zone as JSON
/// (roughly 150 bytes a record): 16 MiB holds about 100,000 records, far more than a zone a
/// failover manages, and stops a broken or hostile server from filling memory.
pub const MAX_BODY: usize = 16 << 20;

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's roots (or plain http).
    System,
    /// Only the CA certificate(s) in this PEM file.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256, like an ssh host key; name and expiry are
    /// not checked, the handshake signature is.
    Pin([u8; 32]),
}

impl Trust {
    /// From a backend's `ca_file` / `cert_sha256` keys; errors name the key and the fix.
    pub fn from_keys(
        ca_file: Option<&Path>,
        cert_sha256: Option<&str>,
    ) -> Result<Trust, SettingError> {
        match (ca_file, cert_sha256) {
            (Some(_), Some(_)) => Err(SettingError::new(
                "cert_sha256",
                "give either ca_file or cert_sha256, not both",
            )),
            (Some(ca), None) => Ok(Trust::CaFile(ca.to_path_buf())),
            (None, Some(fp)) => shared::tls::parse_fingerprint(fp)
                .map(Trust::Pin)
                .map_err(|e| {
                    SettingError::new(
                        "cert_sha256",
                        format!("expected 64 hex digits (colons allowed), got {fp:?}: {e}"),
                    )
                }),
            (None, None) => Ok(Trust::System),
        }
    }
}

/// A client with `timeout` for connecting and for each whole request, no redirects (a
/// redirect would carry the credentials elsewhere), and `trust`. Errors name the key.
pub fn client(timeout: Duration, trust: &Trust) -> Result<reqwest::Client, SettingError> {
    shared::install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    match trust {
        Trust::System => {}
        Trust::CaFile(ca) => {
            let pem = std::fs::read(ca)
                .map_err(|e| SettingError::new("ca_file", format!("{}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SettingError::new(
                    "ca_file",
                    format!("{}: expected PEM certificates ({e})", ca.display()),
                )
            })?;
            if certs.is_empty() {
                return Err(SettingError::new(
                    "ca_file",
                    format!("{}: no certificate in the file", ca.display()),
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        Trust::Pin(pin) => {
            let verifier = shared::tls::PinnedVerifier::new(Some(*pin));
            let tls = rustls::ClientConfig::builder_with_provider(shared::tls::ring_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| SettingError::new("cert_sha256", format!("cannot set up TLS ({e})")))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(tls);
        }
    }
    builder
        .build()
        .map_err(|e| SettingError::new("url", format!("cannot set up an HTTP client ({e})")))
}

/// A body read with a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// At most the limit's bytes, lossily decoded as UTF-8.
    pub text: String,
    /// False when the server sent more than the limit (the rest was not read).
    pub complete: bool,
}

/// Reads at most `limit` bytes of `resp`'s body, chunk by chunk, and stops there.
pub async fn read_body(mut resp: reqwest::Response, limit: usize) -> Result<Body, reqwest::Error> {
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Ok(Body {
                text: String::from_utf8_lossy(&bytes).into_owned(),
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Body {
        text: String::from_utf8_lossy(&bytes).into_owned(),
        complete: true,
    })
}

/// The whole body of a successful answer, or an error naming `what` when it cannot be read
/// or is larger than [`MAX_BODY`].
pub async fn read_answer(resp: reqwest::Response, what: &str) -> Result<String, DnsError> {
    let body = read_body(resp, MAX_BODY)
        .await
        .map_err(|e| send_error(what, e))?;
    if !body.complete {
        return Err(DnsError::Rejected(format!(
            "{what}: answer larger than {MAX_BODY} bytes; expected a smaller answer (is the URL right?)"
        )));
    }
    Ok(body.text)
}

/// The body of an error answer for quoting: what could be read within [`MAX_BODY`], empty when
/// nothing could.
pub async fn error_body(resp: reqwest::Response) -> String {
    read_body(resp, MAX_BODY)
        .await
        .map(|b| b.text)
        .unwrap_or_default()
}

/// `text` trimmed and cut to at most `keep` bytes (on a character boundary, with `…` when
/// cut), for quoting a server's answer in an error message.
pub fn quote(text: &str, keep: usize) -> String {
    let t = text.trim();
    if t.len() <= keep {
        return t.to_string();
    }
    let mut end = keep;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", t.get(..end).unwrap_or_default())
}

/// An HTTP request that got no answer: a certificate the client does not trust is an
/// authentication failure (retrying will not help, and it may be someone in the middle);
/// anything else (refused, timed out, reset) is transient.
pub fn send_error(what: &str, e: reqwest::Error) -> DnsError {
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("cert_sha256") {
        DnsError::Auth(format!("{what}: server certificate not trusted: {chain}"))
    } else {
        DnsError::Transient(format!("{what}: {chain}"))
    }
}

/// What a non-success HTTP status means for the driver: 401/403 → [`DnsError::Auth`] with
/// `refused` (e.g. "powerdns API refused the API key (HTTP 401 Unauthorized)"), 5xx and 429 →
/// [`DnsError::Transient`], anything else → [`DnsError::Rejected`]. `service` names the
/// server; `detail` is the server's reason, quoted after a colon when not empty.
pub fn status_error(service: &str, status: StatusCode, refused: &str, detail: &str) -> DnsError {
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    };
    match status.as_u16() {
        401 | 403 => DnsError::Auth(format!("{refused}{detail}")),
        s if s >= 500 || s == 429 => {
            DnsError::Transient(format!("{service} failed (HTTP {status}){detail}"))
        }
        _ => DnsError::Rejected(format!("{service} answered HTTP {status}{detail}")),
    }
}

/// Longest `Retry-After` taken from a header: a day. Past that the header is broken, not a
/// plan (the worker caps what it honours lower still).
const MAX_RETRY_AFTER_HEADER: u64 = 86_400;

/// A provider's `Retry-After` header in its delay-seconds form (`Retry-After: 30`), the one
/// Cloudflare and AWS send; an HTTP date or garbage gives `None` (the worker's own backoff
/// then applies).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_HEADER)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn trust_keys() {
        assert_eq!(Trust::from_keys(None, None).unwrap(), Trust::System);
        assert!(matches!(
            Trust::from_keys(None, Some(&"ab".repeat(32))).unwrap(),
            Trust::Pin(_)
        ));
        assert!(matches!(
            Trust::from_keys(None, Some(&vec!["AB"; 32].join(":"))).unwrap(),
            Trust::Pin(_)
        ));
        for bad in ["abcd", "zz"] {
            let e = Trust::from_keys(None, Some(bad)).unwrap_err().to_string();
            assert!(e.starts_with("cert_sha256: expected 64 hex digits"), "{e}");
        }
        let e = Trust::from_keys(Some(Path::new("/ca.pem")), Some(&"ab".repeat(32)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn statuses_map_to_what_the_driver_does() {
        let e = status_error("x", StatusCode::UNAUTHORIZED, "x refused the key", "no");
        assert_eq!(e, DnsError::Auth("x refused the key: no".into()));
        let e = status_error("x", StatusCode::FORBIDDEN, "x refused", "");
        assert_eq!(e, DnsError::Auth("x refused".into()));
        for s in [500, 502, 503, 429] {
            let e = status_error("x", StatusCode::from_u16(s).unwrap(), "", "busy");
            assert!(e.is_retryable(), "{s}: {e}");
        }
        let e = status_error("x", StatusCode::NOT_FOUND, "", "gone");
        assert_eq!(
            e,
            DnsError::Rejected("x answered HTTP 404 Not Found: gone".into())
        );
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, " 7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        h.insert(reqwest::header::RETRY_AFTER, "99999999".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn quotes_are_cut_on_a_character_boundary() {
        assert_eq!(quote("  short \n", 10), "short");
        assert_eq!(quote("ééé", 3), "é…");
    }

    /// One HTTP answer whose body is `len` bytes of `x`, on a fresh loopback port.
    async fn serve_body(len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await.unwrap();
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
            stream.write_all(head.as_bytes()).await.unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                // The client may stop reading and close: that is the point of the bound.
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return;
                }
                left -= n;
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn body_reads_stop_at_the_bound() {
        let c = client(Duration::from_secs(5), &Trust::System).unwrap();
        let url = serve_body(100_000).await;
        let body = read_body(c.get(&url).send().await.unwrap(), 1000)
            .await
            .unwrap();
        assert_eq!(body.text.len(), 1000);
        assert!(!body.complete);

        let url = serve_body(1000).await;
        let body = read_body(c.get(&url).send().await.unwrap(), 1000)
            .await
            .unwrap();
        assert_eq!((body.text.len(), body.complete), (1000, true));

        let url = serve_body(MAX_BODY + 1).await;
        let e = read_answer(c.get(&url).send().await.unwrap(), "test API")
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DnsError::Rejected(t) if t.contains("larger than")),
            "{e}"
        );
    }
}
