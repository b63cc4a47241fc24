//! The probe *runner*: [`Prober`] runs a [`ProbeSpec`] over the network — HTTP/HTTPS, TCP
//! connect or DNS over UDP — by address (never by resolving the name being failed over), under
//! one hard timeout, with bounded reads, and turns every outcome into [`Evidence`].
//!
//! All the I/O and TLS of probing lives here; the types it runs are in [`super::spec`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use super::spec::{
    BODY_PREFIX_LIMIT, DnsProbe, Evidence, HttpMethod, HttpProbe, MAX_DETAIL_LEN, MAX_TIMEOUT_MS,
    ProbeError, ProbeSpec, TcpProbe,
};

/// Runs probes. Holds the TLS client configs (built once) so each probe is cheap to start;
/// clone it freely (the configs are shared).
#[derive(Clone)]
pub struct Prober {
    /// Validates certificates against webpki roots plus the operator's extra roots.
    verified: Arc<rustls::ClientConfig>,
    /// For `tls_verify = false`: any certificate, handshake signatures still checked.
    unverified: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

/// How a probe went wrong, before it becomes [`Evidence`].
struct Failure {
    kind: ProbeError,
    status: Option<u16>,
    detail: String,
}

impl Failure {
    fn new(kind: ProbeError, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            status: None,
            detail: detail.into(),
        }
    }
}

/// What a successful probe saw.
struct Success {
    status: Option<u16>,
    detail: Option<String>,
}

/// Aborts the spawned HTTP connection task when the probe ends (or is dropped on timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Largest DNS response read (a UDP answer without EDNS is at most 512 bytes).
const MAX_DNS_RESPONSE: usize = 4096;
/// Unrelated datagrams tolerated on the DNS socket before giving up.
const MAX_DNS_STRAY_PACKETS: usize = 16;

impl Prober {
    /// A prober trusting the webpki roots plus `extra_roots` (e.g. a private CA). Roots that
    /// do not parse are skipped with a warning.
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Prober {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let (_, ignored) = roots.add_parsable_certificates(extra_roots);
        if ignored > 0 {
            tracing::warn!(ignored, "some extra CA roots could not be used");
        }
        let mut verified = rustls::ClientConfig::builder_with_provider(crate::tls::ring_provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        verified.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut unverified = crate::tls::pinned_client_config(None);
        unverified.alpn_protocols = vec![b"http/1.1".to_vec()];
        Prober {
            verified: Arc::new(verified),
            unverified: Arc::new(unverified),
        }
    }

    /// Runs one probe under one hard timeout (`timeout_ms`, capped at [`MAX_TIMEOUT_MS`]).
    /// Never fails: every failure is evidence of "down".
    pub async fn run(&self, spec: &ProbeSpec) -> Evidence {
        let start = Instant::now();
        let probe = match spec {
            ProbeSpec::Http(p) if p.tls => "https",
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Dns(_) => "dns",
        };
        let outcome = match spec.validate() {
            Err(e) => Err(Failure::new(ProbeError::Io, format!("invalid probe: {e}"))),
            Ok(()) => {
                let ms = spec.timeout_ms().min(MAX_TIMEOUT_MS);
                let limit = Duration::from_millis(u64::from(ms));
                let work = async {
                    match spec {
                        ProbeSpec::Http(p) => self.http(p).await,
                        ProbeSpec::Tcp(p) => tcp(p).await,
                        ProbeSpec::Dns(p) => dns(p).await,
                    }
                };
                match tokio::time::timeout(limit, work).await {
                    Ok(r) => r,
                    Err(_) => Err(Failure::new(
                        ProbeError::Timeout,
                        format!("no answer within {ms} ms"),
                    )),
                }
            }
        };
        let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Ok(s) => Evidence {
                probe: probe.into(),
                latency_us,
                status: s.status,
                error: None,
                detail: s.detail.map(|d| bounded(&d)),
            },
            Err(f) => Evidence {
                probe: probe.into(),
                latency_us,
                status: f.status,
                error: Some(f.kind),
                detail: Some(bounded(&f.detail)),
            },
        }
    }

    async fn http(&self, p: &HttpProbe) -> Result<Success, Failure> {
        let tcp = tokio::net::TcpStream::connect(p.address)
            .await
            .map_err(|e| io_failure("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        if p.tls {
            let config = if p.tls_verify {
                self.verified.clone()
            } else {
                self.unverified.clone()
            };
            let server_name = match &p.host {
                Some(h) => ServerName::try_from(h.clone())
                    .map_err(|e| Failure::new(ProbeError::Tls, format!("sni {h:?}: {e}")))?,
                None => ServerName::IpAddress(p.address.ip().into()),
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await
                .map_err(|e| tls_failure(&e))?;
            http_exchange(p, tls).await
        } else {
            http_exchange(p, tcp).await
        }
    }
}

/// The Host header: the configured host (or the address), with the port when not the
/// scheme's default (RFC 9110 §7.2).
fn host_header(p: &HttpProbe) -> String {
    let default_port = if p.tls { 443 } else { 80 };
    let host = match (&p.host, p.address.ip()) {
        (Some(h), _) => h.clone(),
        (None, IpAddr::V4(ip)) => ip.to_string(),
        (None, IpAddr::V6(ip)) => format!("[{ip}]"),
    };
    if p.address.port() == default_port {
        host
    } else {
        format!("{host}:{}", p.address.port())
    }
}

async fn http_exchange<S>(p: &HttpProbe, stream: S) -> Result<Success, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| hyper_failure(&e, None))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let method = match p.method {
        HttpMethod::Get => hyper::Method::GET,
        HttpMethod::Head => hyper::Method::HEAD,
    };
    let request = hyper::Request::builder()
        .method(method)
        .uri(p.path.as_str())
        .header(hyper::header::HOST, host_header(p))
        .header(hyper::header::USER_AGENT, "quorate-probe/1")
        .header(hyper::header::CONNECTION, "close")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| Failure::new(ProbeError::Http, format!("cannot build request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| hyper_failure(&e, None))?;
    let status = response.status().as_u16();
    let status_ok = if p.expect_status.is_empty() {
        (200..=399).contains(&status)
    } else {
        p.expect_status.contains(&status)
    };
    if !status_ok {
        let expected = if p.expect_status.is_empty() {
            "200..=399".to_string()
        } else {
            format!("{:?}", p.expect_status)
        };
        return Err(Failure {
            kind: ProbeError::Status,
            status: Some(status),
            detail: format!("status {status}, expected {expected}"),
        });
    }
    let Some(needle) = &p.body_contains else {
        return Ok(Success {
            status: Some(status),
            detail: None,
        });
    };
    let needle = needle.as_bytes();
    let mut body = response.into_body();
    let mut prefix: Vec<u8> = Vec::new();
    while prefix.len() < BODY_PREFIX_LIMIT {
        let frame = match http_body_util::BodyExt::frame(&mut body).await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Err(hyper_failure(&e, Some(status))),
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let search_from = prefix.len().saturating_sub(needle.len().saturating_sub(1));
        let take = data.len().min(BODY_PREFIX_LIMIT - prefix.len());
        prefix.extend_from_slice(&data[..take]);
        if contains(&prefix[search_from..], needle) {
            return Ok(Success {
                status: Some(status),
                detail: None,
            });
        }
    }
    Err(Failure {
        kind: ProbeError::Body,
        status: Some(status),
        detail: format!(
            "body does not contain the expected text within its first {} bytes",
            prefix.len()
        ),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

async fn tcp(p: &TcpProbe) -> Result<Success, Failure> {
    tokio::net::TcpStream::connect(p.address)
        .await
        .map_err(|e| io_failure("connect", &e))?;
    Ok(Success {
        status: None,
        detail: None,
    })
}

async fn dns(p: &DnsProbe) -> Result<Success, Failure> {
    use hickory_proto::op::{Message, MessageType, Query};
    use hickory_proto::rr::{Name, RecordType};

    let rtype: RecordType = p
        .rtype
        .parse()
        .map_err(|_| Failure::new(ProbeError::Io, format!("unknown record type {:?}", p.rtype)))?;
    let mut name = Name::from_ascii(&p.name)
        .map_err(|e| Failure::new(ProbeError::Io, format!("name {:?}: {e}", p.name)))?;
    name.set_fqdn(true);
    let query = Query::query(name, rtype);
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(query.clone());
    let id = message.metadata.id;
    let wire = message
        .to_vec()
        .map_err(|e| Failure::new(ProbeError::Io, format!("cannot encode query: {e}")))?;

    let bind: SocketAddr = match p.server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| io_failure("bind", &e))?;
    socket
        .connect(p.server)
        .await
        .map_err(|e| io_failure("connect", &e))?;
    socket
        .send(&wire)
        .await
        .map_err(|e| io_failure("send", &e))?;

    let mut buf = vec![0u8; MAX_DNS_RESPONSE];
    for _ in 0..MAX_DNS_STRAY_PACKETS {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| io_failure("receive", &e))?;
        let Ok(response) = Message::from_vec(&buf[..n]) else {
            continue; // garbage: keep waiting for the real answer
        };
        if response.metadata.id != id
            || response.metadata.message_type != MessageType::Response
            || response.queries.len() != 1
            || response.queries[0].name != query.name
            || response.queries[0].query_type != query.query_type
        {
            continue; // not the answer to our question (spoofed or stray)
        }
        let rcode = response.metadata.response_code;
        if rcode != hickory_proto::op::ResponseCode::NoError {
            return Err(Failure::new(
                ProbeError::DnsRcode,
                format!("server answered {rcode:?} ({rcode})"),
            ));
        }
        let answers = response
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .count();
        if answers == 0 {
            return Err(Failure::new(
                ProbeError::DnsEmpty,
                format!("no {rtype} record in the answer"),
            ));
        }
        return Ok(Success {
            status: None,
            detail: Some(format!("{answers} {rtype} record(s)")),
        });
    }
    Err(Failure::new(
        ProbeError::Io,
        "too many unrelated datagrams, no answer to the query",
    ))
}

/// Maps an I/O error to a probe error kind.
fn io_kind(e: &std::io::Error) -> ProbeError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => ProbeError::Refused,
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable | K::NetworkDown => {
            ProbeError::Unreachable
        }
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            ProbeError::Reset
        }
        K::TimedOut => ProbeError::Timeout,
        _ => ProbeError::Io,
    }
}

fn io_failure(what: &str, e: &std::io::Error) -> Failure {
    Failure::new(io_kind(e), format!("{what}: {e}"))
}

/// A TLS handshake error: a rustls error inside is a TLS failure, anything else is I/O.
fn tls_failure(e: &std::io::Error) -> Failure {
    let is_tls = e
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    if is_tls {
        Failure::new(ProbeError::Tls, format!("tls: {e}"))
    } else {
        io_failure("tls handshake", e)
    }
}

fn hyper_failure(e: &hyper::Error, status: Option<u16>) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut kind = ProbeError::Http;
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            kind = io_kind(io);
            if kind == ProbeError::Io && io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                kind = ProbeError::Tls;
            }
            break;
        }
        source = s.source();
    }
    if e.is_incomplete_message() && kind == ProbeError::Http {
        kind = ProbeError::Reset;
    }
    Failure {
        kind,
        status,
        detail: format!("http: {e}"),
    }
}

/// Cuts a detail string to [`MAX_DETAIL_LEN`] characters.
fn bounded(s: &str) -> String {
    s.chars().take(MAX_DETAIL_LEN).collect()
}
