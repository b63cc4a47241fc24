//! What the hosted DNS providers' stand-ins (`hetzner`, `digitalocean`, `gandi`, `desec`)
//! share: a plain-HTTP axum server on a free loopback port, stopped on drop; the token check
//! (`Authorization: <scheme> <token>`, refused with the provider's own 401 body); the 429
//! switch (the next N requests are throttled with the provider's own body and headers); a
//! log of every request that passed the gate, so a test can say "nothing was written"; and
//! the zone's name servers ([`ZoneDns`]), serving over DNS the A and AAAA records the state
//! holds at each query, so the coordinator's verification runs against them for real.
//!
//! The Cloudflare and Route 53 stand-ins (`cloudflare`, `route53`) are built alone but serve
//! their zone the same way. For Route 53 there are two stand-ins on purpose: moto's server
//! (`tests::moto`, PyPI `moto[server]`) is a third party's model of the whole API and checks
//! SigV4 signatures against IAM users, but it does not enforce the change-batch rules (a stale
//! DELETE and a CREATE over an existing set both succeed there); `route53` enforces them
//! (DELETE must match, all or nothing, PENDING→INSYNC) and verifies signatures itself, so the
//! conditional write is tested against this one and the signing and the wire format against
//! moto's too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use coordinator::dns::RecordSet;

use crate::zone_dns::ZoneDns;

/// The provider-specific answers of the gate.
pub struct GateSpec {
    /// `Bearer` or `Token`.
    pub scheme: &'static str,
    /// The 401 answer for a missing or wrong token.
    pub unauthorized: fn() -> Response,
    /// The 429 answer; gets the number of seconds to wait.
    pub throttled: fn(u32) -> Response,
}

/// The token check, the throttle switch and the request log.
pub struct Gate {
    spec: GateSpec,
    token: String,
    /// Requests still to be answered 429.
    throttle: AtomicU32,
    /// `METHOD /path?query` of every request that passed the gate, in order.
    log: Mutex<Vec<String>>,
}

/// A JSON answer.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A stand-in: its state (behind a mutex, shared with the handlers) and its server.
pub struct StandIn<S> {
    addr: SocketAddr,
    prefix: &'static str,
    gate: Arc<Gate>,
    state: Arc<Mutex<S>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dns: ZoneDns,
}

/// The state as the handlers see it.
pub type Shared<S> = Arc<Mutex<S>>;

/// Locks the state (a panicked handler does not poison the stand-in).
pub fn lock<S>(state: &Shared<S>) -> std::sync::MutexGuard<'_, S> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: Send + 'static> StandIn<S> {
    /// Serves `routes` (paths starting with `prefix`, e.g. `/v1`) with `state` for `token`,
    /// and `zone` over DNS: `served` says which A and AAAA record sets the state holds.
    pub async fn start(
        spec: GateSpec,
        token: &str,
        prefix: &'static str,
        state: S,
        routes: axum::Router<Shared<S>>,
        zone: &str,
        served: fn(&S) -> Vec<RecordSet>,
    ) -> StandIn<S> {
        let gate = Arc::new(Gate {
            spec,
            token: token.to_string(),
            throttle: AtomicU32::new(0),
            log: Mutex::new(Vec::new()),
        });
        let state = Arc::new(Mutex::new(state));
        let app = routes
            .with_state(state.clone())
            .layer(middleware::from_fn_with_state(gate.clone(), check));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let view = state.clone();
        let dns = ZoneDns::start(zone, Box::new(move || served(&lock(&view)))).await;
        StandIn {
            addr,
            prefix,
            gate,
            state,
            stop: Some(stop),
            dns,
        }
    }

    /// The zone's name servers.
    pub fn dns(&self) -> &ZoneDns {
        &self.dns
    }

    /// The base URL a backend's `base_url` takes: `http://127.0.0.1:<port><prefix>`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.prefix)
    }

    /// Looks at or changes the state (e.g. a change by hand in the provider's web UI).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// The next `n` requests are answered 429 (the provider's throttling answer).
    pub fn throttle_next(&self, n: u32) {
        self.gate.throttle.store(n, Ordering::SeqCst);
    }

    /// `METHOD /path?query` of every request that passed the token check and the throttle.
    pub fn requests(&self) -> Vec<String> {
        self.gate
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The requests that could change something (not GET).
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| !r.starts_with("GET "))
            .collect()
    }
}

impl<S> Drop for StandIn<S> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn token_ok(gate: &Gate, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(gate.spec.scheme))
        .and_then(|v| v.strip_prefix(' '))
        .is_some_and(|t| t == gate.token)
}

/// Throttle first (providers count requests before they look at them), then the token.
async fn check(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let throttled = gate
        .throttle
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if throttled {
        return (gate.spec.throttled)(1);
    }
    if !token_ok(&gate, req.headers()) {
        return (gate.spec.unauthorized)();
    }
    let what = format!(
        "{} {}",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_default()
    );
    gate.log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(what);
    next.run(req).await
}
