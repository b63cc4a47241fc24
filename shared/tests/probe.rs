//! Probe runner tests against small local servers on 127.0.0.1 and [::1]: HTTP, HTTPS (with
//! a self-signed certificate), TCP and DNS (a tiny UDP responder built with hickory-proto).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shared::probe::{
    BODY_PREFIX_LIMIT, DnsProbe, HttpMethod, HttpProbe, ProbeError, ProbeSpec, Prober, TcpProbe,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, UdpSocket};

/// What a test server saw: Host headers and TLS SNI names, one per request.
#[derive(Default)]
struct Seen {
    hosts: Vec<String>,
    snis: Vec<Option<String>>,
    methods: Vec<String>,
}

async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        if got.len() > 65536 {
            return None;
        }
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).ok()
}

fn record(seen: &Mutex<Seen>, head: &str) {
    let mut seen = seen.lock().unwrap();
    if let Some(method) = head.split(' ').next() {
        seen.methods.push(method.to_string());
    }
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("host")
        {
            seen.hosts.push(v.trim().to_string());
        }
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, response: &[u8], seen: &Mutex<Seen>) {
    let Some(head) = read_head(&mut s).await else {
        return;
    };
    record(seen, &head);
    let _ = s.write_all(response).await;
    let _ = s.shutdown().await;
}

/// An HTTP server that answers every request with `response` (raw bytes).
async fn http_server(bind: &str, response: Vec<u8>) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        for _ in 0..32 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (response, seen) = (response.clone(), s2.clone());
            tokio::spawn(async move { answer(tcp, &response, &seen).await });
        }
    });
    (addr, seen)
}

fn ok_response(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An HTTPS server with a fresh self-signed certificate for www.example.test and 127.0.0.1.
async fn https_server(body: &str) -> (SocketAddr, Arc<Mutex<Seen>>, CertificateDer<'static>) {
    let (cert_pem, key_pem) =
        shared::tls::self_signed(&["www.example.test".into(), "127.0.0.1".into()]).unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(shared::tls::ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s2 = seen.clone();
    let response = ok_response(body);
    tokio::spawn(async move {
        for _ in 0..32 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, response, seen) = (acceptor.clone(), response.clone(), s2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                seen.lock().unwrap().snis.push(sni);
                answer(tls, &response, &seen).await;
            });
        }
    });
    (addr, seen, cert)
}

fn http(address: SocketAddr) -> HttpProbe {
    HttpProbe {
        address,
        tls: false,
        host: None,
        path: "/health".into(),
        method: HttpMethod::Get,
        expect_status: vec![],
        body_contains: None,
        tls_verify: true,
        timeout_ms: 3000,
    }
}

fn prober() -> Prober {
    shared::install_crypto_provider();
    Prober::new(vec![])
}

#[tokio::test]
async fn http_up_on_ipv4_and_ipv6_sends_host_header() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let (addr, seen) = http_server(bind, ok_response("fine")).await;
        let mut p = http(addr);
        p.host = Some("www.example.test".into());
        let ev = prober().run(&ProbeSpec::Http(p)).await;
        assert!(ev.is_up(), "{bind}: {ev:?}");
        assert_eq!(ev.probe, "http");
        assert_eq!(ev.status, Some(200));
        assert!(ev.latency_us > 0);
        let expected_host = format!("www.example.test:{}", addr.port());
        assert_eq!(seen.lock().unwrap().hosts, vec![expected_host]);
    }
}

#[tokio::test]
async fn host_header_defaults_to_the_address_and_head_is_sent() {
    let (addr, seen) = http_server("[::1]:0", ok_response("")).await;
    let mut p = http(addr);
    p.method = HttpMethod::Head;
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert!(ev.is_up(), "{ev:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.hosts, vec![format!("[::1]:{}", addr.port())]);
    assert_eq!(seen.methods, vec!["HEAD".to_string()]);
}

#[tokio::test]
async fn wrong_status_is_down_unless_expected() {
    let resp =
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (addr, _) = http_server("127.0.0.1:0", resp.to_vec()).await;
    let ev = prober().run(&ProbeSpec::Http(http(addr))).await;
    assert_eq!(ev.error, Some(ProbeError::Status));
    assert_eq!(ev.status, Some(503));
    assert!(ev.detail.unwrap().contains("503"));

    let mut p = http(addr);
    p.expect_status = vec![503];
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert!(ev.is_up(), "{ev:?}");

    let (addr, _) = http_server("127.0.0.1:0", ok_response("x")).await;
    let mut p = http(addr);
    p.expect_status = vec![204];
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert_eq!(ev.error, Some(ProbeError::Status));
}

#[tokio::test]
async fn body_substring_match_mismatch_and_prefix_bound() {
    let (addr, _) = http_server("127.0.0.1:0", ok_response("<h1>all systems go</h1>")).await;
    let mut p = http(addr);
    p.body_contains = Some("systems go".into());
    assert!(prober().run(&ProbeSpec::Http(p.clone())).await.is_up());
    p.body_contains = Some("maintenance".into());
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert_eq!(ev.error, Some(ProbeError::Body));
    assert_eq!(ev.status, Some(200));

    // The text sits after the searched prefix: not found, and the body is not read to the end.
    let body = format!("{}NEEDLE", "a".repeat(BODY_PREFIX_LIMIT));
    let (addr, _) = http_server("127.0.0.1:0", ok_response(&body)).await;
    let mut p = http(addr);
    p.body_contains = Some("NEEDLE".into());
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert_eq!(ev.error, Some(ProbeError::Body), "{ev:?}");

    // Straddling the prefix end by one byte is still outside; fully inside is found.
    let body = format!("{}NEEDLE", "a".repeat(BODY_PREFIX_LIMIT - 6));
    let (addr, _) = http_server("127.0.0.1:0", ok_response(&body)).await;
    let mut p = http(addr);
    p.body_contains = Some("NEEDLE".into());
    assert!(prober().run(&ProbeSpec::Http(p)).await.is_up());
}

async fn closed_port(bind: &str) -> SocketAddr {
    let l = TcpListener::bind(bind).await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

#[tokio::test]
async fn refused_port_is_refused() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let addr = closed_port(bind).await;
        let ev = prober().run(&ProbeSpec::Http(http(addr))).await;
        assert_eq!(ev.error, Some(ProbeError::Refused), "{bind}: {ev:?}");
        assert!(ev.detail.unwrap().len() <= shared::probe::MAX_DETAIL_LEN);
    }
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_on_time() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..4 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            held.push(tcp); // accepted, never answered
        }
        std::future::pending::<()>().await;
    });
    let mut p = http(addr);
    p.timeout_ms = 300;
    let started = Instant::now();
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    let took = started.elapsed();
    assert_eq!(ev.error, Some(ProbeError::Timeout), "{ev:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(ev.latency_us >= 300_000);
    holder.abort();
}

#[tokio::test]
async fn https_self_signed_needs_trust_or_verify_off_and_sends_sni() {
    let (addr, seen, cert) = https_server("secure ok").await;
    let mut p = http(addr);
    p.tls = true;
    p.host = Some("www.example.test".into());
    p.body_contains = Some("secure".into());

    // Validation on, cert unknown: down with a TLS error.
    let ev = prober().run(&ProbeSpec::Http(p.clone())).await;
    assert_eq!(ev.error, Some(ProbeError::Tls), "{ev:?}");
    assert_eq!(ev.probe, "https");

    // Validation on, cert in the extra roots: up.
    let trusting = Prober::new(vec![cert]);
    let ev = trusting.run(&ProbeSpec::Http(p.clone())).await;
    assert!(ev.is_up(), "{ev:?}");

    // Validation on, trusted cert, but a host name the cert does not cover: down.
    let mut other = p.clone();
    other.host = Some("other.example.test".into());
    let ev = trusting.run(&ProbeSpec::Http(other)).await;
    assert_eq!(ev.error, Some(ProbeError::Tls), "{ev:?}");

    // Validation off: up.
    p.tls_verify = false;
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert!(ev.is_up(), "{ev:?}");

    let seen = seen.lock().unwrap();
    // Only completed handshakes are recorded: the trusted one and the unverified one.
    assert_eq!(seen.snis, vec![Some("www.example.test".to_string()); 2]);
    assert_eq!(
        seen.hosts.last().unwrap(),
        &format!("www.example.test:{}", addr.port())
    );
}

#[tokio::test]
async fn tcp_up_and_down_on_both_families() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ev = prober()
            .run(&ProbeSpec::Tcp(TcpProbe {
                address: addr,
                timeout_ms: 2000,
            }))
            .await;
        assert!(ev.is_up(), "{ev:?}");
        assert_eq!(ev.probe, "tcp");
        drop(listener);
        let ev = prober()
            .run(&ProbeSpec::Tcp(TcpProbe {
                address: addr,
                timeout_ms: 2000,
            }))
            .await;
        assert_eq!(ev.error, Some(ProbeError::Refused), "{ev:?}");
    }
}

#[tokio::test]
async fn invalid_spec_is_down_without_network() {
    let mut p = http(closed_port("127.0.0.1:0").await);
    p.timeout_ms = 0;
    let ev = prober().run(&ProbeSpec::Http(p)).await;
    assert_eq!(ev.error, Some(ProbeError::Io));
    assert!(ev.detail.unwrap().contains("timeout_ms"));
}

/// A tiny authoritative responder: `www.example.test` has an A and AAAA record,
/// `empty.example.test` exists with no records, anything else is NXDOMAIN. When `stray` is
/// set, each answer is preceded by a datagram with the wrong id.
async fn dns_server(bind: &str, stray: bool) -> SocketAddr {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    let socket = UdpSocket::bind(bind).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        for _ in 0..64 {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, OpCode::Query);
            resp.add_queries(req.queries.clone());
            let q = &req.queries[0];
            let www = Name::from_ascii("www.example.test.").unwrap();
            let empty = Name::from_ascii("empty.example.test.").unwrap();
            if q.name == www {
                match q.query_type {
                    RecordType::A => {
                        resp.add_answer(Record::from_rdata(
                            www,
                            60,
                            RData::A(A::new(192, 0, 2, 10)),
                        ));
                    }
                    RecordType::AAAA => {
                        resp.add_answer(Record::from_rdata(
                            www,
                            60,
                            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                        ));
                    }
                    _ => {}
                }
            } else if q.name != empty {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            if stray {
                let mut wrong = resp.clone();
                wrong.metadata.id = req.metadata.id.wrapping_add(1);
                let _ = socket.send_to(&wrong.to_vec().unwrap(), peer).await;
            }
            let _ = socket.send_to(&resp.to_vec().unwrap(), peer).await;
        }
    });
    addr
}

fn dns(server: SocketAddr, name: &str, rtype: &str) -> ProbeSpec {
    ProbeSpec::Dns(DnsProbe {
        server,
        name: name.into(),
        rtype: rtype.into(),
        timeout_ms: 2000,
    })
}

#[tokio::test]
async fn dns_answers_rcodes_and_empty() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let server = dns_server(bind, false).await;
        let ev = prober().run(&dns(server, "www.example.test.", "A")).await;
        assert!(ev.is_up(), "{bind}: {ev:?}");
        assert_eq!(ev.probe, "dns");
        let ev = prober().run(&dns(server, "WWW.example.test", "AAAA")).await;
        assert!(ev.is_up(), "{bind}: {ev:?}");
        let ev = prober().run(&dns(server, "www.example.test.", "TXT")).await;
        assert_eq!(ev.error, Some(ProbeError::DnsEmpty), "{ev:?}");
        let ev = prober().run(&dns(server, "empty.example.test.", "A")).await;
        assert_eq!(ev.error, Some(ProbeError::DnsEmpty), "{ev:?}");
        let ev = prober().run(&dns(server, "nope.example.test.", "A")).await;
        assert_eq!(ev.error, Some(ProbeError::DnsRcode), "{ev:?}");
        assert!(ev.detail.unwrap().to_lowercase().contains("nxdomain"));
    }
}

#[tokio::test]
async fn dns_ignores_a_datagram_with_the_wrong_id() {
    let server = dns_server("127.0.0.1:0", true).await;
    let ev = prober().run(&dns(server, "www.example.test.", "A")).await;
    assert!(ev.is_up(), "{ev:?}");
}

#[tokio::test]
async fn dns_silence_is_a_timeout() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = socket.local_addr().unwrap();
    let mut spec = dns(server, "www.example.test.", "A");
    if let ProbeSpec::Dns(d) = &mut spec {
        d.timeout_ms = 200;
    }
    let ev = prober().run(&spec).await;
    assert_eq!(ev.error, Some(ProbeError::Timeout), "{ev:?}");
    drop(socket);
}
