//! The witness API in-process (`router().oneshot()`): every refusal with its status and JSON
//! code, bounded work (body size, rate, concurrency), no probe for a target outside the
//! allowlist, and a good request answered with a vote that verifies.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use http_body_util::BodyExt as _;
use shared::probe::{HttpMethod, HttpProbe, ProbeSpec, TcpProbe};
use shared::protocol::{Envelope, Expected, KeyId, RequestHash, Verdict, VoteRequest, open_vote};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use witness::{AllowRule, Allowlist, AppState, Config, Limits, TrustedCoordinator};

struct Harness {
    app: axum::Router,
    coordinator: SigningKey,
    witness: SigningKey,
}

fn allow(net: &str, ports: &[u16]) -> AllowRule {
    AllowRule {
        net: witness::config::parse_cidr(net).unwrap(),
        ports: ports.to_vec(),
    }
}

fn harness(rules: Vec<AllowRule>, limits: Limits) -> Harness {
    shared::install_crypto_provider();
    let coordinator = shared::keys::generate();
    let witness = shared::keys::generate();
    let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
    let mut config = Config::from_parts(
        witness.clone(),
        vec![TrustedCoordinator::new(
            "backup-1",
            coordinator.verifying_key(),
        )],
        Allowlist(rules),
        cert,
        key,
    )
    .unwrap();
    config.limits = limits;
    Harness {
        app: witness::router(AppState::new(&config)),
        coordinator,
        witness,
    }
}

/// A TCP server that counts the connections it accepts.
async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..64 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, Ordering::SeqCst);
            held.push(tcp); // accepted, never answered
        }
    });
    (addr, count)
}

async fn wait_for_count(count: &AtomicUsize, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while count.load(Ordering::SeqCst) < want {
        assert!(Instant::now() < deadline, "count stayed below {want}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    hex::encode(b)
}

fn now_ms() -> u64 {
    shared::unix_ms(SystemTime::now())
}

fn request_for(coordinator: &SigningKey, target: ProbeSpec) -> VoteRequest {
    VoteRequest {
        version: shared::protocol::PROTOCOL_VERSION,
        coordinator: KeyId::of(&coordinator.verifying_key()),
        service: "www".into(),
        round: 7,
        nonce: nonce(),
        issued_at_ms: now_ms(),
        target,
    }
}

fn tcp(address: SocketAddr) -> ProbeSpec {
    ProbeSpec::Tcp(TcpProbe {
        address,
        timeout_ms: 2000,
    })
}

async fn post(app: &axum::Router, body: Vec<u8>) -> (StatusCode, serde_json::Value) {
    let req = Request::post("/v1/vote")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    send(app, req).await
}

async fn send(app: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn assert_refused(got: (StatusCode, serde_json::Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    assert!(
        got.1["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{}",
        got.1
    );
}

fn verify(h: &Harness, body: &serde_json::Value, hash: &RequestHash) -> shared::protocol::Vote {
    let envelope: Envelope = serde_json::from_value(body.clone()).unwrap();
    open_vote(
        &envelope,
        &Expected {
            witness_key: &h.witness.verifying_key(),
            request_hash: hash,
            service: "www",
            round: 7,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn good_request_gets_a_signed_vote_up_then_down() {
    let (addr, count) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let (env, hash) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    let (status, body) = post(&h.app, env.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let vote = verify(&h, &body, &hash);
    assert_eq!(vote.verdict, Verdict::Up);
    assert_eq!(vote.evidence.probe, "tcp");
    assert_eq!(vote.witness, KeyId::of(&h.witness.verifying_key()));
    wait_for_count(&count, 1).await;

    // A port that is allowed but closed: a signed "down".
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let h = harness(
        vec![allow("127.0.0.1", &[closed.port()])],
        Limits::default(),
    );
    let (env, hash) = request_for(&h.coordinator, tcp(closed)).sign(&h.coordinator);
    let (status, body) = post(&h.app, env.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let vote = verify(&h, &body, &hash);
    assert_eq!(vote.verdict, Verdict::Down);
    assert_eq!(
        vote.evidence.error,
        Some(shared::probe::ProbeError::Refused)
    );
}

#[tokio::test]
async fn tampered_payload_is_a_bad_signature() {
    let (addr, count) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    let payload = String::from_utf8(B64.decode(&env.payload).unwrap()).unwrap();
    let tampered = payload.replace("\"round\":7", "\"round\":8");
    assert_ne!(payload, tampered);
    let env = Envelope {
        payload: B64.encode(tampered),
        signature: env.signature,
    };
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn wrong_key_claiming_a_trusted_id_is_a_bad_signature() {
    let (addr, _) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let impostor = shared::keys::generate();
    // The request names the trusted coordinator but is signed by another key.
    let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&impostor);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
}

#[tokio::test]
async fn unknown_coordinator_is_forbidden() {
    let (addr, count) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let stranger = shared::keys::generate();
    let (env, _) = request_for(&stranger, tcp(addr)).sign(&stranger);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::FORBIDDEN,
        "unknown_coordinator",
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn stale_and_future_requests_are_refused() {
    let (addr, _) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    for offset in [-120_000i64, 120_000] {
        let mut req = request_for(&h.coordinator, tcp(addr));
        req.issued_at_ms = (now_ms() as i64 + offset) as u64;
        let (env, _) = req.sign(&h.coordinator);
        assert_refused(
            post(&h.app, env.to_json()).await,
            StatusCode::BAD_REQUEST,
            "stale",
        );
    }
}

#[tokio::test]
async fn replayed_nonce_is_a_conflict() {
    let (addr, _) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    let (status, body) = post(&h.app, env.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::CONFLICT,
        "replayed",
    );
}

#[tokio::test]
async fn malformed_and_unsupported_version_are_bad_requests() {
    let (addr, _) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    assert_refused(
        post(&h.app, b"{not json".to_vec()).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    assert_refused(
        post(&h.app, br#"{"payload":"!!","signature":"AA=="}"#.to_vec()).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
    let mut req = request_for(&h.coordinator, tcp(addr));
    req.version = 2;
    let (env, _) = req.sign(&h.coordinator);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::BAD_REQUEST,
        "unsupported_version",
    );
    // A signed request whose target is out of bounds.
    let mut req = request_for(&h.coordinator, tcp(addr));
    req.target = ProbeSpec::Tcp(TcpProbe {
        address: addr,
        timeout_ms: 999_999,
    });
    let (env, _) = req.sign(&h.coordinator);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::BAD_REQUEST,
        "malformed",
    );
}

#[tokio::test]
async fn oversized_body_is_413_with_or_without_content_length() {
    let h = harness(vec![allow("127.0.0.1/32", &[80])], Limits::default());
    let big = vec![b' '; witness::config::DEFAULT_MAX_BODY_BYTES + 1];
    // Declared length.
    let req = Request::post("/v1/vote")
        .header("content-length", big.len().to_string())
        .body(Body::from(big.clone()))
        .unwrap();
    assert_refused(
        send(&h.app, req).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
    // Streamed without a length.
    let stream = futures_like_stream(big);
    let req = Request::post("/v1/vote").body(stream).unwrap();
    assert_refused(
        send(&h.app, req).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
}

/// A body of unknown length, delivered in 1 KiB chunks.
fn futures_like_stream(data: Vec<u8>) -> Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = data
        .chunks(1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn target_outside_the_allowlist_is_forbidden_and_never_probed() {
    let (addr, count) = counting_server().await;
    // Same host, other port only; and nothing at all for IPv6.
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port().wrapping_add(1)])],
        Limits::default(),
    );
    let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::FORBIDDEN,
        "target_not_allowed",
    );
    let http = ProbeSpec::Http(HttpProbe {
        address: addr,
        tls: false,
        host: Some("www.example.test".into()),
        path: "/".into(),
        method: HttpMethod::Get,
        expect_status: vec![],
        body_contains: None,
        tls_verify: true,
        timeout_ms: 1000,
    });
    let (env, _) = request_for(&h.coordinator, http).sign(&h.coordinator);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::FORBIDDEN,
        "target_not_allowed",
    );
    // A sentinel connection of our own: once the server has accepted it, any earlier probe
    // connection (queued before it) would have been counted too. Exactly one means none.
    let _sentinel = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_for_count(&count, 1).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the witness probed a refused target"
    );
}

#[tokio::test]
async fn per_coordinator_rate_limit_is_429() {
    let (addr, _) = counting_server().await;
    let limits = Limits {
        rate_per_coordinator: 1,
        burst: 2,
        ..Limits::default()
    };
    let h = harness(vec![allow("127.0.0.1/32", &[addr.port()])], limits);
    for _ in 0..2 {
        let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
        let (status, body) = post(&h.app, env.to_json()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    assert_refused(
        post(&h.app, env.to_json()).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
}

/// Replays are refused before the rate limit takes a token: whoever can read a
/// coordinator's requests cannot starve its votes by replaying them.
#[tokio::test]
async fn replays_do_not_use_up_the_coordinators_rate() {
    let (addr, _) = counting_server().await;
    let limits = Limits {
        rate_per_coordinator: 1,
        burst: 2,
        ..Limits::default()
    };
    let h = harness(vec![allow("127.0.0.1/32", &[addr.port()])], limits);
    let (first, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    let (status, body) = post(&h.app, first.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for _ in 0..5 {
        assert_refused(
            post(&h.app, first.to_json()).await,
            StatusCode::CONFLICT,
            "replayed",
        );
    }
    // The second token of the burst is still there for a genuine new request.
    let (second, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    let (status, body) = post(&h.app, second.to_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn exhausted_concurrency_is_503_not_a_queue() {
    let (addr, count) = counting_server().await; // accepts, never answers: a slow HTTP probe
    let limits = Limits {
        max_concurrent: 1,
        ..Limits::default()
    };
    let h = harness(vec![allow("127.0.0.1/32", &[addr.port()])], limits);
    let slow = ProbeSpec::Http(HttpProbe {
        address: addr,
        tls: false,
        host: None,
        path: "/".into(),
        method: HttpMethod::Get,
        expect_status: vec![],
        body_contains: None,
        tls_verify: true,
        timeout_ms: 1500,
    });
    let (env, hash) = request_for(&h.coordinator, slow).sign(&h.coordinator);
    let app = h.app.clone();
    let first = tokio::spawn(async move { post(&app, env.to_json()).await });
    // The first request is probing (holding the only slot) once the server saw its connection.
    wait_for_count(&count, 1).await;
    let (env2, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    assert_refused(
        post(&h.app, env2.to_json()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
    );
    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    let vote = verify(&h, &body, &hash);
    assert_eq!(vote.verdict, Verdict::Down);
    assert_eq!(
        vote.evidence.error,
        Some(shared::probe::ProbeError::Timeout)
    );
}

#[tokio::test]
async fn identity_health_and_metrics() {
    let (addr, _) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let (status, id) = send(
        &h.app,
        Request::get("/v1/identity").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(id["protocol_version"], 1);
    assert_eq!(
        id["public_key"],
        shared::keys::format_public_key(&h.witness.verifying_key())
    );
    assert_eq!(id["key_id"], KeyId::of(&h.witness.verifying_key()).0);
    assert_eq!(id["cert_sha256"].as_str().unwrap().len(), 64);

    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let (env, _) = request_for(&h.coordinator, tcp(addr)).sign(&h.coordinator);
    post(&h.app, env.to_json()).await;
    post(&h.app, env.to_json()).await; // replayed
    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("quorate_witness_vote_requests_total{outcome=\"up\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("quorate_witness_vote_requests_total{outcome=\"replayed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("quorate_witness_probe_duration_seconds_count{probe=\"tcp\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("quorate_witness_vote_requests_in_flight 0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_that_never_finishes_times_out_with_408() {
    let limits = Limits {
        read_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let h = harness(vec![allow("127.0.0.1/32", &[80])], limits);
    let first: Result<bytes::Bytes, std::io::Error> =
        Ok(bytes::Bytes::from_static(b"{\"payload\":"));
    let stalled = futures::StreamExt::chain(
        futures::stream::iter(vec![first]),
        futures::stream::pending(),
    );
    let req = Request::post("/v1/vote")
        .body(Body::from_stream(stalled))
        .unwrap();
    let started = Instant::now();
    assert_refused(
        send(&h.app, req).await,
        StatusCode::REQUEST_TIMEOUT,
        "read_timeout",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Objects where the protocol says object: an envelope `[payload, signature]`, a payload or a
/// target sent as an array (each one that serde's derive alone reads as the real request, all
/// correctly signed by the trusted coordinator) is `400 malformed`, and nothing is probed.
#[tokio::test]
async fn arrays_where_objects_belong_are_malformed_and_never_probed() {
    use ed25519_dalek::Signer as _;
    let (addr, count) = counting_server().await;
    let h = harness(
        vec![allow("127.0.0.1/32", &[addr.port()])],
        Limits::default(),
    );
    let sealed = |payload: &str| {
        let mut signed = shared::protocol::REQUEST_DOMAIN.to_vec();
        signed.extend_from_slice(payload.as_bytes());
        Envelope {
            payload: B64.encode(payload),
            signature: B64.encode(h.coordinator.sign(&signed).to_bytes()),
        }
        .to_json()
    };
    let request = request_for(&h.coordinator, tcp(addr));
    let (good, _) = request.sign(&h.coordinator);
    let envelope_array = serde_json::to_vec(&(&good.payload, &good.signature)).unwrap();

    let r = request_for(&h.coordinator, tcp(addr));
    let payload_array = serde_json::json!([
        r.version,
        r.coordinator,
        r.service,
        r.round,
        r.nonce,
        r.issued_at_ms,
        r.target
    ])
    .to_string();
    let t = request_for(&h.coordinator, tcp(addr));
    let mut target_array = serde_json::to_value(&t).unwrap();
    target_array["target"] = serde_json::json!(["tcp", addr, 2000]);
    let target_array = target_array.to_string();

    let cases = [
        (
            envelope_array,
            request.clone(),
            "envelope: the message must be a JSON object, got an array",
        ),
        (
            sealed(&payload_array),
            r,
            "vote request: the message must be a JSON object, got an array",
        ),
        (
            sealed(&target_array),
            t,
            "vote request: `target` must be a JSON object, got an array",
        ),
    ];
    for (body, meant, mentions) in cases {
        // What the derive alone makes of the body: the request it stands for.
        let env: Envelope = serde_json::from_slice(&body).unwrap();
        let read: VoteRequest = serde_json::from_slice(&B64.decode(&env.payload).unwrap()).unwrap();
        assert_eq!(read, meant);
        let got = post(&h.app, body).await;
        assert_refused(got.clone(), StatusCode::BAD_REQUEST, "malformed");
        let reason = got.1["reason"].as_str().unwrap();
        assert!(reason.contains(mentions), "{reason:?} lacks {mentions:?}");
    }
    // As in the allowlist test: exactly one connection (our own sentinel) means no probe.
    let _sentinel = tokio::net::TcpStream::connect(addr).await.unwrap();
    wait_for_count(&count, 1).await;
    assert_eq!(
        count.load(Ordering::SeqCst),
        1,
        "the witness probed for a refused request"
    );
}

/// The committed refusal vectors for requests are `400 malformed` here too: the shape is
/// checked before the coordinator's key or the clock, so even this witness (which trusts
/// neither the vector key nor lives in 2023) names the shape as the reason.
#[tokio::test]
async fn the_request_refusal_vectors_are_malformed() {
    let h = harness(vec![allow("192.0.2.0/24", &[80])], Limits::default());
    for body in [
        &include_bytes!(
            "../../tests/data/protocol-v1/refused/request-envelope-array.envelope.json"
        )[..],
        include_bytes!("../../tests/data/protocol-v1/refused/request-payload-array.envelope.json"),
        include_bytes!("../../tests/data/protocol-v1/refused/request-target-array.envelope.json"),
    ] {
        let got = post(&h.app, body.to_vec()).await;
        assert_refused(got.clone(), StatusCode::BAD_REQUEST, "malformed");
        assert!(
            got.1["reason"]
                .as_str()
                .unwrap()
                .contains("must be a JSON object, got an array"),
            "{}",
            got.1
        );
    }
}
