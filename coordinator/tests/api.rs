//! The coordinator's HTTP API through `api::router(state).oneshot(..)`, over a real SQLite
//! history in a temp folder filled through `Store::record_decision`, with a real service task
//! started by `coordinator::start` (dry-run DNS): bearer-token auth, paging with the
//! `next_before_id` cursor, filters, 400s with a JSON reason for bad input, 404s, and a round's
//! votes with their `reverified` field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Lab, Opts};
use coordinator::Coordinator;
use coordinator::api::{ApiState, Live, LiveCell, router};
use coordinator::store::{Decision, NewRound, VoteRecord};
use ed25519_dalek::SigningKey;
use http_body_util::BodyExt as _;
use shared::probe::{Evidence, ProbeError, ProbeSpec, TcpProbe};
use shared::protocol::{KeyId, PROTOCOL_VERSION, RequestHash, Verdict, Vote, VoteRequest};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

const OUTCOMES: [&str; 4] = [
    "insufficient-votes",
    "disputed",
    "coordinator-isolated",
    "failover",
];
/// Fixture rounds: `i` in 0..ROUNDS, service alpha for even `i`, beta for odd, at
/// `base_ms + i` seconds.
const ROUNDS: u64 = 25;

struct Api {
    lab: Lab,
    app: axum::Router,
    coord: Option<Coordinator>,
    shutdown: CancellationToken,
    /// Keys of the two configured witnesses.
    w1: SigningKey,
    w2: SigningKey,
    /// A whole second an hour ago: recent enough that retention (90 days) keeps the fixture.
    base_ms: u64,
}

impl Api {
    /// A vote request for service "alpha" in round `round_no`, signed with the coordinator's
    /// key: its envelope as stored, and the hash its votes must answer.
    fn signed_request(&self, round_no: u64) -> (String, RequestHash) {
        let request = VoteRequest {
            version: PROTOCOL_VERSION,
            coordinator: KeyId::of(&self.lab.key.verifying_key()),
            service: "alpha".into(),
            round: round_no,
            nonce: "00112233445566778899aabbccddeeff".into(),
            issued_at_ms: round_no,
            target: ProbeSpec::Tcp(TcpProbe {
                address: "127.0.0.2:443".parse().unwrap(),
                timeout_ms: 500,
            }),
        };
        let (envelope, hash) = request.sign(&self.lab.key);
        (String::from_utf8(envelope.to_json()).unwrap(), hash)
    }

    /// A coordinator with one service `web` whose probes go to a closed loopback port and
    /// whose interval is an hour: after its first probe it writes nothing during the test.
    async fn start() -> Api {
        let lab = Lab::new();
        let (w1, w2) = (shared::keys::generate(), shared::keys::generate());
        let closed = common::free_port();
        let blocks = vec![
            common::witness_block(
                "w1",
                &format!("https://127.0.0.1:{closed}"),
                &w1.verifying_key(),
                None,
            ),
            common::witness_block(
                "w2",
                &format!("https://127.0.0.1:{closed}"),
                &w2.verifying_key(),
                None,
            ),
        ];
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut opts = Opts::new(blocks, lo, lo, closed);
        opts.interval = "1h".into();
        opts.quorum = 2;
        let config = lab.config(&opts.toml());
        let witnesses = config.witnesses.clone();
        let keys = coordinator::ledger::KeySet::from_config(&config);
        let token = config.api_token.clone();
        assert_eq!(token, lab.token);
        let shutdown = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dns = Arc::new(coordinator::dns::dryrun::DryRun::default());
        let coord = coordinator::start(config, listener, Some(dns), shutdown.clone())
            .await
            .unwrap();
        let state = Arc::new(ApiState {
            store: coord.store.clone(),
            live: LiveCell::new(Live {
                services: coord.services.clone(),
                witnesses,
                keys,
                reliability: Default::default(),
            }),
            metrics: coord.metrics.clone(),
            token,
            read_token: Some(READ_TOKEN.into()),
            metrics_token: None,
        });
        let base_ms = (shared::unix_ms(std::time::SystemTime::now()) - 3_600_000) / 1000 * 1000;
        Api {
            lab,
            app: router(state),
            coord: Some(coord),
            shutdown,
            w1,
            w2,
            base_ms,
        }
    }

    async fn record(&self, d: Decision) -> i64 {
        let store = self.coord.as_ref().unwrap().store.clone();
        store.record_decision(d).await.unwrap().0.unwrap()
    }

    /// The fixture rounds; returns their ids in insertion order.
    async fn fill(&self) -> Vec<i64> {
        let mut ids = Vec::new();
        for i in 0..ROUNDS {
            let service = if i.is_multiple_of(2) { "alpha" } else { "beta" };
            ids.push(
                self.record(decision(
                    service,
                    self.base_ms + i * 1000,
                    OUTCOMES[(i % 4) as usize],
                    Vec::new(),
                ))
                .await,
            );
        }
        ids
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, serde_json::Value, String) {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, json, text)
    }

    async fn get(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.lab.token))
            .body(Body::empty())
            .unwrap();
        let (s, j, _) = self.send(req).await;
        (s, j)
    }

    async fn get_ok(&self, uri: &str) -> serde_json::Value {
        let (s, j) = self.get(uri).await;
        assert_eq!(s, StatusCode::OK, "GET {uri}: {j}");
        j
    }

    async fn post(
        &self,
        uri: &str,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let req = Request::post(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.lab.token))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_string()))
            .unwrap();
        let (s, j, _) = self.send(req).await;
        (s, j)
    }

    /// Every round id the API lists for `query`, following `next_before_id` to the end.
    async fn walk(&self, query: &str, limit: u32) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut cursor: Option<i64> = None;
        for _ in 0..100 {
            let mut uri = format!("/v1/rounds?limit={limit}");
            if !query.is_empty() {
                uri.push('&');
                uri.push_str(query);
            }
            if let Some(c) = cursor {
                uri.push_str(&format!("&before_id={c}"));
            }
            let page = self.get_ok(&uri).await;
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= limit as usize);
            ids.extend(items.iter().map(|r| r["id"].as_i64().unwrap()));
            match page["next_before_id"].as_i64() {
                Some(c) => {
                    assert_eq!(
                        items.len(),
                        limit as usize,
                        "a cursor only after a full page"
                    );
                    assert_eq!(Some(c), items.last().and_then(|r| r["id"].as_i64()));
                    cursor = Some(c);
                }
                None => return ids,
            }
        }
        panic!("paging did not end within 100 pages");
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.coord.take() {
            c.wait(Duration::from_secs(10)).await;
        }
    }
}

fn decision(service: &str, at_ms: u64, outcome: &str, votes: Vec<VoteRecord>) -> Decision {
    Decision {
        service: service.into(),
        at_ms,
        round: Some(NewRound {
            service: service.into(),
            at_ms,
            trigger: coordinator::failover::Trigger::PrimaryDown,
            outcome: coordinator::failover::Outcome::parse(outcome).expect("a known outcome"),
            reason: format!("fixture {outcome}"),
            primary_up: false,
            backup_up: true,
            votes_up: 0,
            votes_down: votes
                .iter()
                .filter(|v| v.verdict.as_deref() == Some("down"))
                .count() as u32,
            votes_invalid: 0,
            votes_missing: votes.iter().filter(|v| v.vote_envelope.is_none()).count() as u32,
            changed_dns: outcome == "failover",
            policy: None,
            spell: None,
        }),
        votes,
        ..Default::default()
    }
}

fn assert_bad(status: StatusCode, body: &serde_json::Value, what: &str, mentions: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"], "bad_request", "{what}: {body}");
    let reason = body["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no reason in {body}"));
    assert!(
        reason.contains(mentions),
        "{what}: reason {reason:?} should mention {mentions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_guards_v1_but_not_healthz_or_metrics() {
    let api = Api::start().await;
    let no_auth = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let with = |uri: &str, v: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, v)
            .body(Body::empty())
            .unwrap()
    };

    for uri in [
        "/v1/services",
        "/v1/rounds",
        "/v1/events",
        "/v1/dns-changes",
        "/v1/services/web",
    ] {
        let (s, j, _) = api.send(no_auth(uri)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri} without a token");
        assert_eq!(j["error"], "unauthorized");
        assert!(
            j["reason"].as_str().unwrap().contains("Authorization"),
            "{j}"
        );
        let (s, j, _) = api.send(with(uri, "Bearer not-the-token-at-all")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri} with a wrong token");
        assert!(j["reason"].as_str().unwrap().contains("wrong"), "{j}");
        // A token of the right length but different bytes, and the right token without "Bearer".
        let wrong_same_len: String = api.lab.token.chars().rev().collect();
        let (s, _, _) = api
            .send(with(uri, &format!("Bearer {wrong_same_len}")))
            .await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{uri} with a same-length wrong token"
        );
        let (s, _, _) = api.send(with(uri, &api.lab.token)).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{uri} with the token but no Bearer scheme"
        );
        let (s, _, _) = api
            .send(with(uri, &format!("Bearer {}", api.lab.token)))
            .await;
        assert_eq!(s, StatusCode::OK, "{uri} with the right token");
    }
    // A POST is guarded too, before its body is looked at.
    let req = Request::post("/v1/services/web/override")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"mode":"pin-backup"}"#))
        .unwrap();
    assert_eq!(api.send(req).await.0, StatusCode::UNAUTHORIZED);

    let (s, _, text) = api.send(no_auth("/healthz")).await;
    assert_eq!((s, text.as_str()), (StatusCode::OK, "ok\n"));
    let (s, _, text) = api.send(no_auth("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(text.contains("# EOF"), "OpenMetrics text: {text}");
    assert!(
        !text.contains(&api.lab.token),
        "the token never appears in metrics"
    );

    let services = api.get_ok("/v1/services").await;
    let list = services["services"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["service"], "web");
    assert_eq!(list[0]["state"], "primary-active");
    api.stop().await;
}

/// The read-only token of the API under test.
const READ_TOKEN: &str = "read-only-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_only_token_reads_everything_and_acts_on_nothing() {
    let api = Api::start().await;
    let read = |uri: &str| {
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {READ_TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    for uri in [
        "/v1/services",
        "/v1/services/web",
        "/v1/witnesses",
        "/v1/rounds",
        "/v1/events",
        "/v1/dns-changes",
        "/metrics",
    ] {
        let (s, j, _) = api.send(read(uri)).await;
        assert_eq!(s, StatusCode::OK, "GET {uri} with the read-only token: {j}");
    }
    for (uri, body) in [
        ("/v1/services/web/override", r#"{"mode":"pin-backup"}"#),
        ("/v1/services/web/failback", "{}"),
    ] {
        let req = Request::post(uri)
            .header(header::AUTHORIZATION, format!("Bearer {READ_TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (s, j, _) = api.send(req).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "POST {uri}: {j}");
        assert_eq!(j["error"], "forbidden");
        assert!(j["reason"].as_str().unwrap().contains("admin token"), "{j}");
    }
    // Nothing changed; the admin token may.
    assert_eq!(api.get_ok("/v1/services/web").await["override"], "auto");
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/json",
            r#"{"mode":"pin-backup"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["status"]["override"], "pin-backup");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_walks_every_round_once_newest_first() {
    let api = Api::start().await;
    let ids = api.fill().await;
    let mut newest_first = ids.clone();
    newest_first.reverse();
    // 25 rounds: pages of 7 end on a short page, pages of 5 on an empty one.
    for limit in [7, 5, 1, 500] {
        assert_eq!(api.walk("", limit).await, newest_first, "limit {limit}");
    }
    // Default limit (50) holds everything, no cursor.
    let page = api.get_ok("/v1/rounds").await;
    assert_eq!(page["items"].as_array().unwrap().len(), ROUNDS as usize);
    assert!(page["next_before_id"].is_null());
    // Paging composes with a filter.
    let alpha: Vec<i64> = newest_first
        .iter()
        .copied()
        .enumerate()
        .filter(|(k, _)| (ROUNDS as usize - 1 - k).is_multiple_of(2))
        .map(|(_, id)| id)
        .collect();
    assert_eq!(api.walk("service=alpha", 4).await, alpha);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_service_time_and_outcome() {
    let api = Api::start().await;
    let ids = api.fill().await;
    let listed = |page: &serde_json::Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let expect = |pred: &dyn Fn(u64) -> bool| -> Vec<i64> {
        (0..ROUNDS)
            .rev()
            .filter(|&i| pred(i))
            .map(|i| ids[i as usize])
            .collect()
    };

    let beta = api.get_ok("/v1/rounds?service=beta").await;
    assert_eq!(listed(&beta), expect(&|i| i % 2 == 1));
    assert!(
        beta["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["service"] == "beta")
    );
    assert!(listed(&api.get_ok("/v1/rounds?service=nobody").await).is_empty());

    // since is inclusive, until exclusive; milliseconds and RFC 3339 mean the same.
    let (since, until) = (api.base_ms + 5_000, api.base_ms + 10_000);
    let rfc3339 = |ms: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
    };
    let (since_text, until_text) = (rfc3339(since), rfc3339(until));
    assert!(since_text.ends_with('Z'), "{since_text}");
    let window = expect(&|i| (5..10).contains(&i));
    assert_eq!(
        listed(
            &api.get_ok(&format!("/v1/rounds?since={since}&until={until}"))
                .await
        ),
        window
    );
    assert_eq!(
        listed(
            &api.get_ok(&format!("/v1/rounds?since={since_text}&until={until_text}"))
                .await
        ),
        window
    );
    let offset_form = since_text.replace('Z', "%2B00:00");
    assert_eq!(
        listed(&api.get_ok(&format!("/v1/rounds?since={offset_form}")).await),
        expect(&|i| i >= 5)
    );
    assert_eq!(
        listed(&api.get_ok(&format!("/v1/rounds?until={until}")).await),
        expect(&|i| i < 10)
    );

    for (k, o) in OUTCOMES.iter().enumerate() {
        let page = api.get_ok(&format!("/v1/rounds?outcome={o}")).await;
        assert_eq!(listed(&page), expect(&|i| i % 4 == k as u64), "outcome {o}");
        assert!(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["outcome"] == *o)
        );
    }
    // All three at once.
    let page = api
        .get_ok(&format!(
            "/v1/rounds?service=alpha&outcome=failover&since={}",
            api.base_ms + 4_000
        ))
        .await;
    assert_eq!(
        listed(&page),
        expect(&|i| i.is_multiple_of(2) && i % 4 == 3 && i >= 4)
    );
    let page = api
        .get_ok(&format!(
            "/v1/rounds?service=beta&outcome=failover&since={}",
            api.base_ms + 4_000
        ))
        .await;
    assert_eq!(
        listed(&page),
        expect(&|i| i % 2 == 1 && i % 4 == 3 && i >= 4)
    );
    assert!(!listed(&page).is_empty());
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_400_with_a_reason_and_unknown_things_are_404() {
    let api = Api::start().await;
    api.fill().await;
    let cases = [
        ("/v1/rounds?limit=0", "limit"),
        ("/v1/rounds?limit=10000", "limit"),
        ("/v1/rounds?limit=ten", "limit"),
        ("/v1/rounds?outcome=exploded", "outcome"),
        ("/v1/rounds?since=yesterday", "since"),
        ("/v1/rounds?until=2023-13-45T99:00:00Z", "until"),
        ("/v1/rounds?colour=blue", "colour"),
        ("/v1/rounds?before_id=abc", "before_id"),
        ("/v1/events?limit=0", "limit"),
        ("/v1/events?outcome=failover", "outcome"),
        ("/v1/dns-changes?since=soon", "since"),
        ("/v1/dns-changes?bogus=1", "bogus"),
        ("/v1/rounds/abc", "round id"),
    ];
    for (uri, mentions) in cases {
        let (s, j) = api.get(uri).await;
        assert_bad(s, &j, uri, mentions);
    }

    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/json",
            r#"{"mode":"pin-sideways"}"#,
        )
        .await;
    assert_bad(s, &j, "bad override mode", "pin-sideways");
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/json",
            "pin-backup please",
        )
        .await;
    assert_bad(s, &j, "non-JSON override body", "mode");
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/json",
            r#"{"mode":"auto","force":true}"#,
        )
        .await;
    assert_bad(s, &j, "unknown override key", "force");
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "text/plain",
            r#"{"mode":"auto"}"#,
        )
        .await;
    assert_bad(s, &j, "override without a JSON content type", "mode");

    for (method, uri) in [
        ("GET", "/v1/services/nope"),
        ("POST", "/v1/services/nope/override"),
        ("POST", "/v1/services/nope/failback"),
    ] {
        let (s, j) = if method == "GET" {
            api.get(uri).await
        } else {
            api.post(uri, "application/json", r#"{"mode":"auto"}"#)
                .await
        };
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {uri}: {j}");
        assert_eq!(j["error"], "not_found");
        assert!(j["reason"].as_str().unwrap().contains("nope"), "{j}");
    }
    let (s, j) = api.get("/v1/rounds/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{j}");
    assert!(j["reason"].as_str().unwrap().contains("999999"));

    // The good request next to the bad ones: the override reaches the real service task.
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/json",
            r#"{"mode":"pin-primary"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["status"]["override"], "pin-primary");
    assert!(j["result"].as_str().unwrap().contains("pin-primary"), "{j}");
    let one = api.get_ok("/v1/services/web").await;
    assert_eq!(one["override"], "pin-primary");
    api.stop().await;
}

/// A stored round with a signed request and four votes: valid, tampered with after it was
/// stored, from a witness no longer configured, and missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_shows_its_votes_and_reverifies_them() {
    let api = Api::start().await;
    let round_no = api.base_ms + 100_000;
    let (request_json, hash) = api.signed_request(round_no);
    let vote = |key: &SigningKey| Vote {
        version: PROTOCOL_VERSION,
        witness: KeyId::of(&key.verifying_key()),
        service: "alpha".into(),
        round: round_no,
        request_hash: hash.hex(),
        verdict: Verdict::Down,
        evidence: Evidence {
            probe: "tcp".into(),
            latency_us: 1200,
            status: None,
            error: Some(ProbeError::Refused),
            detail: None,
        },
        probed_at_ms: round_no + 3,
    };
    let record = |name: &str, key: &SigningKey, envelope: Option<Vec<u8>>| VoteRecord {
        witness: name.into(),
        witness_key_id: KeyId::of(&key.verifying_key()).0,
        request_envelope: request_json.clone(),
        valid: envelope.is_some(),
        verdict: envelope.as_ref().map(|_| "down".into()),
        error: if envelope.is_some() {
            None
        } else {
            Some("no answer: cannot connect".into())
        },
        vote_envelope: envelope,
        latency_ms: Some(12.5),
    };
    let good = vote(&api.w1).sign(&api.w1).to_json();
    // w2's vote, edited in the database afterwards: verdict flipped, signature kept.
    let mut tampered = vote(&api.w2).sign(&api.w2);
    let mut payload: serde_json::Value =
        serde_json::from_slice(&B64.decode(&tampered.payload).unwrap()).unwrap();
    payload["verdict"] = "up".into();
    payload["evidence"].as_object_mut().unwrap().remove("error");
    tampered.payload = B64.encode(serde_json::to_vec(&payload).unwrap());
    let stranger = shared::keys::generate();
    let strangers_vote = vote(&stranger).sign(&stranger).to_json();
    let votes = vec![
        record("w1", &api.w1, Some(good.clone())),
        record("w2", &api.w2, Some(tampered.to_json())),
        record("w9", &stranger, Some(strangers_vote)),
        record("w2", &api.w2, None),
    ];
    let id = api
        .record(decision("alpha", round_no, "failover", votes))
        .await;

    let body = api.get_ok(&format!("/v1/rounds/{id}")).await;
    assert_eq!(body["round"]["id"], id);
    assert_eq!(body["round"]["service"], "alpha");
    assert_eq!(body["round"]["outcome"], "failover");
    assert_eq!(body["round"]["at_ms"], round_no);
    let v = body["votes"].as_array().unwrap();
    assert_eq!(v.len(), 4);
    // Stored exactly as received: the raw envelope text comes back byte for byte.
    assert_eq!(
        v[0]["vote_envelope"].as_str().unwrap().as_bytes(),
        good.as_slice()
    );
    assert_eq!(v[0]["request_envelope"], request_json.as_str());
    assert_eq!(v[0]["reverified"], "ok");
    let r1 = v[1]["reverified"].as_str().unwrap();
    assert_ne!(r1, "ok", "a tampered vote must not verify");
    assert!(r1.contains("signature"), "{r1}");
    assert!(
        v[2]["reverified"]
            .as_str()
            .unwrap()
            .starts_with("unknown-witness"),
        "{}",
        v[2]
    );
    assert_eq!(v[3]["reverified"], "no-answer");
    assert!(v[3]["vote_envelope"].is_null());

    // The offline check over the same file agrees: one problem, the tampered vote.
    let store = api.coord.as_ref().unwrap().store.clone();
    let cfg = api
        .lab
        .config(&std::fs::read_to_string(api.lab.path().join("coordinator.toml")).unwrap());
    let report = store
        .call(move |s| {
            coordinator::audit::audit_history(
                s,
                Some("alpha"),
                &coordinator::ledger::KeySet::from_config(&cfg),
            )
        })
        .await
        .unwrap();
    assert_eq!(report.valid_ok, 1);
    assert_eq!(report.no_answer, 1);
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        report.problems.iter().any(|p| p.contains("witness w2")),
        "{:?}",
        report.problems
    );
    api.stop().await;
}

/// Request bodies are JSON objects: an override sent as an array (which serde's derive alone
/// reads as `{"mode": "pin-primary"}`) or as any other non-object is a 400 and pins nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_bodies_that_are_not_objects_are_400_and_change_nothing() {
    let api = Api::start().await;
    for body in [
        r#"["pin-primary"]"#,
        r#"[{"mode":"pin-primary"}]"#,
        r#""pin-primary""#,
        "7",
        "null",
    ] {
        let (s, j) = api
            .post("/v1/services/web/override", "application/json", body)
            .await;
        assert_bad(s, &j, body, "mode");
    }
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/json",
            r#"["pin-primary"]"#,
        )
        .await;
    assert_bad(
        s,
        &j,
        "override as an array",
        "the message must be a JSON object, got an array",
    );
    assert_eq!(api.get_ok("/v1/services/web").await["override"], "auto");
    // `application/<x>+json` and parameters are JSON too; the object is taken.
    let (s, j) = api
        .post(
            "/v1/services/web/override",
            "application/merge-patch+json; charset=utf-8",
            r#"{"mode":"pin-backup"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(
        api.get_ok("/v1/services/web").await["override"],
        "pin-backup"
    );
    api.stop().await;
}

/// Votes stored by a build that took arrays (an envelope `[payload, signature]`, a payload or
/// its evidence as an array, all correctly signed) re-verify as `malformed` now, in the API's
/// `reverified` field and in the offline audit, which reports each as a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_votes_sent_as_arrays_reverify_as_malformed() {
    use ed25519_dalek::Signer as _;
    let api = Api::start().await;
    let round_no = api.base_ms + 200_000;
    let (request_json, hash) = api.signed_request(round_no);
    let vote = Vote {
        version: PROTOCOL_VERSION,
        witness: KeyId::of(&api.w1.verifying_key()),
        service: "alpha".into(),
        round: round_no,
        request_hash: hash.hex(),
        verdict: Verdict::Down,
        evidence: Evidence {
            probe: "tcp".into(),
            latency_us: 1200,
            status: None,
            error: Some(ProbeError::Refused),
            detail: Some("connection refused".into()),
        },
        probed_at_ms: round_no + 3,
    };
    let sealed = |payload: String| {
        let mut signed = shared::protocol::VOTE_DOMAIN.to_vec();
        signed.extend_from_slice(payload.as_bytes());
        serde_json::to_vec(&serde_json::json!({
            "payload": B64.encode(&payload),
            "signature": B64.encode(api.w1.sign(&signed).to_bytes()),
        }))
        .unwrap()
    };
    let good = vote.sign(&api.w1);
    let envelope_array = serde_json::to_vec(&(&good.payload, &good.signature)).unwrap();
    let e = &vote.evidence;
    let evidence_array = serde_json::json!([e.probe, e.latency_us, e.status, e.error, e.detail]);
    let payload_array = serde_json::json!([
        vote.version,
        vote.witness,
        vote.service,
        vote.round,
        vote.request_hash,
        vote.verdict,
        vote.evidence,
        vote.probed_at_ms
    ])
    .to_string();
    let mut with_evidence_array = serde_json::to_value(&vote).unwrap();
    with_evidence_array["evidence"] = evidence_array;
    let evidence_as_array = sealed(with_evidence_array.to_string());
    // serde's derive alone reads every one of them as the vote itself.
    for raw in [
        &envelope_array,
        &sealed(payload_array.clone()),
        &evidence_as_array,
    ] {
        let env: shared::protocol::Envelope = serde_json::from_slice(raw).unwrap();
        let payload: Vote = serde_json::from_slice(&B64.decode(env.payload).unwrap()).unwrap();
        assert_eq!(payload, vote);
    }
    let record = |envelope: Vec<u8>| VoteRecord {
        witness: "w1".into(),
        witness_key_id: KeyId::of(&api.w1.verifying_key()).0,
        request_envelope: request_json.clone(),
        // As a build that took arrays stored them.
        valid: true,
        verdict: Some("down".into()),
        error: None,
        vote_envelope: Some(envelope),
        latency_ms: Some(3.0),
    };
    let votes = vec![
        record(good.to_json()),
        record(envelope_array),
        record(sealed(payload_array)),
        record(evidence_as_array),
    ];
    let id = api
        .record(decision("alpha", round_no, "failover", votes))
        .await;

    let body = api.get_ok(&format!("/v1/rounds/{id}")).await;
    let v = body["votes"].as_array().unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(v[0]["reverified"], "ok");
    for (i, mentions) in [
        (
            1,
            "envelope: the message must be a JSON object, got an array",
        ),
        (2, "vote: the message must be a JSON object, got an array"),
        (3, "vote: `evidence` must be a JSON object, got an array"),
    ] {
        let r = v[i]["reverified"].as_str().unwrap();
        assert!(r.starts_with("malformed: "), "vote {i}: {r}");
        assert!(r.contains(mentions), "vote {i}: {r}");
    }

    let store = api.coord.as_ref().unwrap().store.clone();
    let cfg = api
        .lab
        .config(&std::fs::read_to_string(api.lab.path().join("coordinator.toml")).unwrap());
    let report = store
        .call(move |s| {
            coordinator::audit::audit_history(
                s,
                Some("alpha"),
                &coordinator::ledger::KeySet::from_config(&cfg),
            )
        })
        .await
        .unwrap();
    assert_eq!(report.valid_ok, 1, "{:?}", report.problems);
    assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.contains("stored as valid but now fails: malformed")),
        "{:?}",
        report.problems
    );
    api.stop().await;
}

/// Keeps the rule true for new endpoints: `api.rs` uses axum's `Json` only for answers
/// (`Json<serde_json::Value>`); a body is read by `JsonObject`, never by `Json<T>`.
#[test]
fn request_bodies_are_read_only_through_json_object() {
    let source = include_str!("../src/api.rs");
    for (i, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("Json<") {
            let after = &rest[at + "Json<".len()..];
            assert!(
                after.starts_with("serde_json::Value>"),
                "coordinator/src/api.rs:{}: a body read with axum's Json; use JsonObject: {line}",
                i + 1
            );
            rest = after;
        }
    }
    assert!(source.contains("Result<JsonObject<OverrideBody>, ApiError>"));
}

/// `GET /v1/history/checkpoint`: the coordinator signs the chain head at start and again on
/// every DNS change; the served checkpoint verifies with the coordinator's public key alone
/// and commits to the link the history's head has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_checkpoint_is_served_signed_and_follows_dns_changes() {
    let api = Api::start().await;
    let store = api.coord.as_ref().unwrap().store.clone();
    let mut d = decision("alpha", api.base_ms, "failover", Vec::new());
    d.dns_change = Some(coordinator::store::PendingChange {
        to_side: coordinator::failover::Side::Backup,
        backend: "dryrun".into(),
        change: coordinator::dns::Change {
            zone: "example.test.".into(),
            from: vec![],
            to: vec![],
        },
    });
    api.record(d).await;
    let head = store.call(|s| s.chain_head()).await.unwrap().unwrap();
    let body = common::eventually(
        &format!("a checkpoint of link {} after a DNS change", head.0),
        Duration::from_secs(20),
        || async {
            let (status, body) = api.get("/v1/history/checkpoint").await;
            (status == StatusCode::OK && body["checkpoint"]["seq"] == head.0).then_some(body)
        },
    )
    .await;
    assert_eq!(body["checkpoint"]["head"], head.1);
    let cfg = api
        .lab
        .config(&std::fs::read_to_string(api.lab.path().join("coordinator.toml")).unwrap());
    let keys = coordinator::ledger::KeySet::from_config(&cfg);
    let stored = coordinator::ledger::checkpoint::StoredCheckpoint {
        id: body["id"].as_i64().unwrap(),
        envelope: body["envelope"].to_string(),
    };
    let cp = stored.open(&keys).unwrap();
    assert_eq!(cp.seq, head.0);
    // Another key does not verify it.
    let mut other = keys.clone();
    other.coordinators[0].key = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert!(stored.open(&other).is_err());
    api.stop().await;
}

/// Scheduled maintenance through the API: the admin token announces, lists and removes; the
/// read-only token lists and is refused the rest; every bad input is a 400 naming the field;
/// each add and remove is a `maintenance` event in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_is_announced_listed_and_removed_with_bad_input_refused() {
    let api = Api::start().await;
    let now = shared::unix_ms(std::time::SystemTime::now());
    let at = |ms: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
    };
    const H: u64 = 3_600_000;
    let body = |service: &str, start: &str, end: &str, title: &str| {
        serde_json::json!({"service": service, "start": start, "end": end, "title": title})
            .to_string()
    };
    let (start, end) = (at(now + 2 * H), at(now + 3 * H));

    // Bad input: each a 400 naming what was wrong; nothing stored.
    let cases = [
        (body("mail", &start, &end, "x"), "no service is named \"mail\""),
        (body("web", "tomorrow", &end, "x"), "start: expected Unix milliseconds or an RFC 3339 time"),
        (body("web", "2026-12-05T10:00:00+02:00", &end, "x"), "start: give the time in UTC"),
        (body("web", &end, &start, "x"), "end: expected a time after start"),
        (body("web", &start, &at(now + 2 * H + 31 * 24 * H), "x"), "end: expected at most 30 days after start"),
        (body("web", &at(now - 2 * H), &end, "x"), "start: expected at most 1 hour ago"),
        (body("web", &start, &end, ""), "title: expected 1 to 120 characters"),
        (body("web", &start, &end, &"t".repeat(121)), "title: expected 1 to 120 characters, got 121"),
        (
            serde_json::json!({"service": "web", "start": start, "end": end, "title": "x", "details": "d".repeat(2001)}).to_string(),
            "details: expected at most 2000 characters",
        ),
        (
            serde_json::json!({"service": "web", "start": start, "end": end, "title": "x", "colour": "red"}).to_string(),
            "unknown field `colour`",
        ),
        (r#"["web"]"#.to_string(), "expected {\"service\""),
    ];
    for (b, mentions) in &cases {
        let (s, j) = api.post("/v1/maintenance", "application/json", b).await;
        assert_bad(s, &j, b, mentions);
    }
    assert_eq!(
        api.get_ok("/v1/maintenance").await["maintenance"],
        serde_json::json!([])
    );

    // The read-only token may list, not announce or remove.
    let as_reader = |method: &str, uri: &str, body: String| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {READ_TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (s, j, _) = api
        .send(as_reader(
            "POST",
            "/v1/maintenance",
            body("web", &start, &end, "Upgrade"),
        ))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{j}");
    assert!(j["reason"].as_str().unwrap().contains("admin token"), "{j}");

    // Announced by the admin token.
    let b = serde_json::json!({"service": "web", "start": start, "end": end, "title": " Database upgrade ", "details": "About 20 minutes."}).to_string();
    let (s, j) = api.post("/v1/maintenance", "application/json", &b).await;
    assert_eq!(s, StatusCode::CREATED, "{j}");
    let m = &j["maintenance"];
    assert_eq!(m["title"], "Database upgrade");
    assert_eq!(m["details"], "About 20 minutes.");
    assert_eq!(m["created_by"], "admin");
    assert_eq!(m["start_ms"], (now + 2 * H) / 1000 * 1000);
    let id = m["id"].as_i64().unwrap();
    let (s, j, _) = api
        .send(as_reader(
            "GET",
            "/v1/maintenance?service=web",
            String::new(),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["maintenance"][0]["id"], id);
    assert_eq!(
        api.get_ok("/v1/maintenance?service=other").await["maintenance"],
        serde_json::json!([])
    );
    let (s, j) = api.get("/v1/maintenance?services=web").await;
    assert_bad(s, &j, "unknown filter", "services");

    let (s, j, _) = api
        .send(as_reader(
            "DELETE",
            &format!("/v1/maintenance/{id}"),
            String::new(),
        ))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{j}");
    let delete = |uri: String| {
        Request::delete(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", api.lab.token))
            .body(Body::empty())
            .unwrap()
    };
    let (s, j, _) = api.send(delete("/v1/maintenance/abc".into())).await;
    assert_bad(s, &j, "id", "maintenance id: expected a number");
    let (s, j, _) = api
        .send(delete(format!("/v1/maintenance/{}", id + 1)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{j}");
    let (s, j, _) = api.send(delete(format!("/v1/maintenance/{id}"))).await;
    assert_eq!(s, StatusCode::OK, "{j}");
    assert_eq!(j["removed"]["id"], id);
    assert_eq!(
        api.get_ok("/v1/maintenance").await["maintenance"],
        serde_json::json!([])
    );

    // Both actions are in the history, as events of the service.
    let events = api.get_ok("/v1/events?service=web").await;
    let texts: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "maintenance")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "{events}");
    assert!(
        texts[0].starts_with(&format!("maintenance #{id} removed by admin")),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with(&format!(
            "maintenance #{id} announced by admin: {start} to {end}"
        )),
        "{texts:?}"
    );
    api.stop().await;
}
