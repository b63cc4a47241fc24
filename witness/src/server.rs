//! The witness's HTTPS API: `POST /v1/vote`, `GET /v1/identity`, `GET /healthz`,
//! `GET /metrics`, and the server loop with graceful shutdown.
//!
//! Connections are served by `shared::listener`: global and per-address caps, a reserve for
//! addresses whose vote requests verified, and timeouts on every request (see
//! `[limits]` in `deploy/examples/witness.toml`). A refused connection costs no TLS.
//!
//! A vote request passes, in order: the concurrency limit (503), the body size limit (413),
//! envelope parsing, protocol version, trusted coordinator, signature and freshness (400,
//! 403, 401), replay (409), the per-coordinator rate limit (429), and the allowlist (403).
//! Only then is the target probed. No probe is ever made for a refused request.
//!
//! Refusals are JSON `{"error": "<code>", "reason": "<text>"}`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `malformed` | not JSON, not an envelope, an array (or any non-object) where the protocol says object, bad base64, bad fields, target out of bounds |
//! | 400 | `unsupported_version` | payload `version` is not 1 |
//! | 400 | `stale` | `issued_at_ms` further than `max_skew` from the witness's clock (a clock problem, not a conflict) |
//! | 401 | `bad_signature` | the signature does not verify with the named coordinator's key (authentication failed) |
//! | 403 | `unknown_coordinator` | the named coordinator key is not trusted here |
//! | 403 | `target_not_allowed` | the target is outside this witness's allowlist (nothing probed) |
//! | 408 | `read_timeout` | the body did not arrive within `read_timeout` |
//! | 409 | `replayed` | the nonce was already used within the replay window |
//! | 413 | `body_too_large` | the body exceeds `max_body_bytes` |
//! | 429 | `rate_limited` | the coordinator exceeds its rate (counted after the signature verifies) |
//! | 429 | `overloaded` | the replay cache for that coordinator is full |
//! | 503 | `busy` | all `max_concurrent` slots are in use (no queue) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::json;
use shared::probe::Prober;
use shared::protocol::{
    Envelope, KeyId, PROTOCOL_VERSION, ProtocolError, ReplayGuard, Verdict, Vote,
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Allowlist, Config, Limits};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// How long in-flight requests may run after shutdown is asked for: the grace period both
/// daemons share, defined in `shared::shutdown` (kept here under its old name).
pub use shared::shutdown::GRACE as SHUTDOWN_GRACE;
/// The most nonces remembered per coordinator (a bound on memory, far above honest use).
const MAX_REPLAY_CAPACITY: usize = 200_000;

/// Everything the handlers share. Built once from a [`Config`].
pub struct AppState {
    signing_key: SigningKey,
    witness_id: KeyId,
    public_key: String,
    cert_sha256: String,
    trusted: HashMap<KeyId, (String, VerifyingKey)>,
    allow: Allowlist,
    limits: Limits,
    max_skew_ms: u64,
    replay: Mutex<ReplayGuard>,
    rate: RateLimiter,
    slots: Semaphore,
    prober: Prober,
    metrics: Metrics,
}

impl AppState {
    pub fn new(config: &Config) -> Arc<AppState> {
        let max_skew_ms = u64::try_from(config.max_skew.as_millis()).unwrap_or(u64::MAX);
        let window_ms = max_skew_ms.saturating_mul(2);
        // Enough for a coordinator sending at its full rate for the whole window, plus a burst.
        let capacity = (u64::from(config.limits.rate_per_coordinator) * (window_ms / 1000 + 1)
            + u64::from(config.limits.burst))
        .min(MAX_REPLAY_CAPACITY as u64) as usize;
        let verifying = config.signing_key.verifying_key();
        Arc::new(AppState {
            signing_key: config.signing_key.clone(),
            witness_id: KeyId::of(&verifying),
            public_key: shared::keys::format_public_key(&verifying),
            cert_sha256: config.tls.cert_sha256.clone(),
            trusted: config
                .coordinators
                .iter()
                .map(|c| (c.id.clone(), (c.name.clone(), c.key)))
                .collect(),
            allow: config.allow.clone(),
            limits: config.limits.clone(),
            max_skew_ms,
            replay: Mutex::new(ReplayGuard::new(window_ms, capacity)),
            rate: RateLimiter::new(config.limits.rate_per_coordinator, config.limits.burst),
            slots: Semaphore::new(config.limits.max_concurrent),
            prober: Prober::new(config.extra_roots.clone()),
            metrics: Metrics::new(),
        })
    }

    /// This witness's key id.
    pub fn witness_id(&self) -> &KeyId {
        &self.witness_id
    }
}

/// The vote endpoint's path.
const VOTE_PATH: &str = "/v1/vote";

/// The witness's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(VOTE_PATH, post(vote))
        .route("/v1/identity", get(identity))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves the witness over HTTPS on `listener` until `shutdown` is cancelled, then drains
/// in-flight requests for at most [`SHUTDOWN_GRACE`].
pub async fn run(
    config: Config,
    listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let state = AppState::new(&config);
    let tls = server_tls_config(&config)?;
    listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;
    let local = listener.local_addr().context("listener has no address")?;
    let listener =
        tokio::net::TcpListener::from_std(listener).context("cannot use the listener")?;
    let limits = config.limits.listener();
    tracing::info!(
        listen = %local,
        witness = %state.witness_id,
        coordinators = state.trusted.len(),
        allow_rules = state.allow.0.len(),
        max_connections = limits.max_connections,
        max_connections_per_address = limits.max_connections_per_address,
        "witness serving"
    );
    let mut server = shared::listener::Server::new(listener, Some(tls), limits, SHUTDOWN_GRACE);
    // A vote answered 200 means the peer sent a valid signed request: its address may then
    // use the connections reserved for trusted coordinators.
    server.vouch_path = Some(VOTE_PATH);
    let serve = server.serve(
        shared::listener::TowerToHyperService::new(router(state)),
        shutdown.clone(),
    );
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => r.context("witness server failed")?,
        () = shutdown.cancelled() => {
            tracing::info!(grace = ?SHUTDOWN_GRACE, "shutting down");
            serve.await.context("witness server failed while draining")?;
        }
    }
    tracing::info!("witness stopped");
    Ok(())
}

/// The rustls server config for the witness's certificate (ring provider, h2 + http/1.1).
pub fn server_tls_config(config: &Config) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&config.tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("tls certificate is not valid PEM")?;
    let key = PrivateKeyDer::from_pem_slice(&config.tls.key_pem)
        .context("tls private key is not valid PEM")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(shared::tls::ring_provider())
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls certificate and key do not match")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// A refused request: HTTP status, stable code and a reason, sent as
/// `{"error": code, "reason": text}`, plus `"skew_ms"` (the request's `issued_at_ms` minus
/// this witness's clock) on a `stale` refusal, so the coordinator can say whose clock is off.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub reason: String,
    pub skew_ms: Option<i64>,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code,
            reason: reason.into(),
            skew_ms: None,
        }
    }
}

impl From<ProtocolError> for Rejection {
    fn from(e: ProtocolError) -> Rejection {
        let status = match &e {
            ProtocolError::Malformed(_) | ProtocolError::UnsupportedVersion { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProtocolError::UnknownCoordinator(_) => StatusCode::FORBIDDEN,
            ProtocolError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ProtocolError::Stale { .. } => StatusCode::BAD_REQUEST,
            ProtocolError::Replayed(_) => StatusCode::CONFLICT,
            ProtocolError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        };
        let skew_ms = match &e {
            ProtocolError::Stale { skew_ms, .. } => Some(*skew_ms),
            _ => None,
        };
        Rejection {
            skew_ms,
            ..Rejection::new(status, e.code(), e.to_string())
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "reason": self.reason });
        if let Some(skew) = self.skew_ms {
            body["skew_ms"] = json!(skew);
        }
        (self.status, Json(body)).into_response()
    }
}

/// Decrements the in-flight gauge when a request ends, however it ends.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

async fn vote(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(&state.metrics);
    match handle_vote(&state, &headers, body).await {
        Ok((envelope, verdict)) => {
            state.metrics.outcome(match verdict {
                Verdict::Up => "up",
                Verdict::Down => "down",
            });
            (StatusCode::OK, Json(envelope)).into_response()
        }
        Err(r) => {
            state.metrics.outcome(r.code);
            if r.status == StatusCode::TOO_MANY_REQUESTS
                || r.status == StatusCode::SERVICE_UNAVAILABLE
            {
                // Load shedding: counted in metrics, not worth a log line each.
                tracing::debug!(code = r.code, reason = %r.reason, "vote request shed");
            } else {
                tracing::warn!(status = r.status.as_u16(), code = r.code, reason = %r.reason, "vote request refused");
            }
            r.into_response()
        }
    }
}

async fn handle_vote(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Envelope, Verdict), Rejection> {
    // Bounded work first: a slot, then a bounded body read under a deadline.
    let _slot = state.slots.try_acquire().map_err(|_| {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "all {} request slots are in use; retry later",
                state.limits.max_concurrent
            ),
        )
    })?;
    let limit = state.limits.max_body_bytes;
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len = len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "malformed",
                    "content-length is not a number",
                )
            })?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    let bytes =
        match tokio::time::timeout(state.limits.read_timeout, axum::body::to_bytes(body, limit))
            .await
        {
            Err(_) => {
                return Err(Rejection::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "read_timeout",
                    format!(
                        "request body not received within {}",
                        humantime::format_duration(state.limits.read_timeout)
                    ),
                ));
            }
            Ok(Err(e)) => {
                let is_limit = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.to_string().contains("length limit");
                return Err(if is_limit {
                    too_large()
                } else {
                    Rejection::new(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        format!("cannot read request body: {e}"),
                    )
                });
            }
            Ok(Ok(b)) => b,
        };

    let envelope = Envelope::from_json(&bytes)?;
    let now_ms = shared::unix_ms(SystemTime::now());
    let opened = shared::protocol::open_request(
        &envelope,
        |id| state.trusted.get(id).map(|(_, k)| *k),
        now_ms,
        state.max_skew_ms,
    )?;
    let request = &opened.request;
    let coordinator = request.coordinator.clone();

    // Replay before rate: a replayed copy of a genuine request is refused without using
    // up that coordinator's tokens, so whoever can read requests cannot starve its votes.
    state
        .replay
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .check_and_insert(&coordinator, &request.nonce, now_ms)?;

    if !state
        .rate
        .try_take(&coordinator, tokio::time::Instant::now())
    {
        return Err(Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "coordinator {coordinator} exceeds {} requests per second (burst {})",
                state.limits.rate_per_coordinator, state.limits.burst
            ),
        ));
    }
    let target = request.target.address();
    if !state.allow.permits(target) {
        return Err(Rejection::new(
            StatusCode::FORBIDDEN,
            "target_not_allowed",
            format!("target {target} is not in this witness's allowlist"),
        ));
    }

    let coordinator_name = state
        .trusted
        .get(&coordinator)
        .map(|(n, _)| n.as_str())
        .unwrap_or("?");
    let evidence = state.prober.run(&request.target).await;
    state.metrics.probe(&evidence.probe, evidence.latency_us);
    let verdict = if evidence.is_up() {
        Verdict::Up
    } else {
        Verdict::Down
    };
    tracing::info!(
        coordinator = coordinator_name,
        service = %request.service,
        round = request.round,
        %target,
        %verdict,
        latency_us = evidence.latency_us,
        "vote"
    );
    let vote = Vote {
        version: PROTOCOL_VERSION,
        witness: state.witness_id.clone(),
        service: request.service.clone(),
        round: request.round,
        request_hash: opened.hash.hex(),
        verdict,
        evidence,
        probed_at_ms: shared::unix_ms(SystemTime::now()),
    };
    Ok((vote.sign(&state.signing_key), verdict))
}

async fn identity(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({
        "protocol_version": PROTOCOL_VERSION,
        "key_id": state.witness_id,
        "public_key": state.public_key,
        "cert_sha256": state.cert_sha256,
        // The witness's clock, so a coordinator's `check --online` can measure the skew.
        "time_ms": shared::unix_ms(SystemTime::now()),
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
