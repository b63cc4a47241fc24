//! The HTTP API (axum): service status, rounds and votes (filtered, paged), events, DNS
//! changes, overrides and manual failback. JSON; bearer-token auth on everything under
//! `/v1`, with two roles: the admin token (`[api] token_file`) may do everything, the read-only
//! token (`[api] read_token_file`) every `GET` and no action (403); `/healthz` is open, and so is `/metrics` unless `[api] metrics_token_file` is set,
//! in which case it needs that token (or the API's). Documented in `docs/api.md`.
//!
//! Every request body is read by [`JsonObject`]: `application/json`, within the body limit, and
//! a JSON object wherever the body type is one (`["pin-primary"]` is a 400, not an override).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use crate::config::WitnessConfig;
use crate::failover::Override;
use crate::metrics::Metrics;
use crate::service::{Command, ServiceHandle};
use crate::store::{ListFilter, RoundFilter, Store, VoteRecord};

/// Largest page a client may ask for.
pub const MAX_LIMIT: u32 = 500;
const DEFAULT_LIMIT: u32 = 50;

/// What a reload changes under the API: the running services and the configured witnesses.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub services: HashMap<String, ServiceHandle>,
    pub witnesses: Vec<WitnessConfig>,
    /// The public keys of the running config, retired ones included: what an incident
    /// bundle carries (`GET /v1/rounds/{id}/incident`).
    pub keys: crate::ledger::KeySet,
    /// Each witness's answers over a sliding window (`GET /v1/witnesses`).
    pub reliability: crate::witnesses::reliability::Registry,
}

/// The current [`Live`], swapped whole by a reload: a request reads one consistent set (one
/// lock and an `Arc` clone), never half of the old and half of the new.
#[derive(Clone, Debug, Default)]
pub struct LiveCell(Arc<RwLock<Arc<Live>>>);

impl LiveCell {
    pub fn new(live: Live) -> LiveCell {
        LiveCell(Arc::new(RwLock::new(Arc::new(live))))
    }

    /// What is current now.
    pub fn get(&self) -> Arc<Live> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces it.
    pub fn set(&self, live: Live) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(live);
    }
}

/// What the handlers share.
pub struct ApiState {
    pub store: Store,
    /// The services and witnesses, swappable by a reload.
    pub live: LiveCell,
    pub metrics: Arc<Metrics>,
    /// The admin token.
    pub token: String,
    /// The read-only token, if one is configured.
    pub read_token: Option<String>,
    /// The token `/metrics` asks for (the API token is accepted too); `None`: `/metrics` is
    /// open.
    pub metrics_token: Option<String>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// An API error: a status and a JSON body `{"error": code, "reason": text}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    reason: String,
}

impl ApiError {
    fn bad(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            reason: reason.into(),
        }
    }
    fn not_found(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            reason: reason.into(),
        }
    }
    fn internal(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            reason: reason.into(),
        }
    }
}

impl ApiError {
    /// The same error, its reason prefixed with what the endpoint expects.
    fn expected(mut self, what: &str) -> ApiError {
        self.reason = format!("expected {what}: {}", self.reason);
        self
    }
}

/// A JSON request body: `Content-Type: application/json` (or `application/*+json`), at most
/// the router's body limit, read by `shared::protocol::from_json_object` so that wherever `T`
/// is an object the body must be one, at every level. Every handler that reads a body takes
/// it through this extractor; a refusal is `400 bad_request` naming what was wrong.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<S, T> FromRequest<S> for JsonObject<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Serialize,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::bad(
                "the body must be sent with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad(e.body_text()))?;
        shared::protocol::from_json_object(&bytes)
            .map(JsonObject)
            .map_err(|e| ApiError::bad(format!("body: {e}")))
    }
}

/// `application/json` or `application/<anything>+json`, parameters (`; charset=utf-8`) allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.code, "reason": self.reason})),
        )
            .into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(e.to_string())
    }
}

/// What a bearer token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every `GET`, no action.
    Read,
    /// Everything: overrides and manual failback too.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    // Actions: the admin token only (checked after `auth`, which knows the role).
    let actions = Router::new()
        .route("/services/{name}/override", post(set_override))
        .route("/services/{name}/failback", post(manual_failback))
        .route_layer(middleware::from_fn(admin_only));
    let v1 = Router::new()
        .route("/services", get(list_services))
        .route("/services/{name}", get(one_service))
        .merge(actions)
        .route("/witnesses", get(list_witnesses))
        .route("/rounds", get(list_rounds))
        .route("/rounds/{id}", get(one_round))
        .route("/rounds/{id}/incident", get(round_incident))
        .route("/events", get(list_events))
        .route("/dns-changes", get(list_dns_changes))
        .route("/history/checkpoint", get(latest_checkpoint))
        .route("/maintenance", get(list_maintenance).post(add_maintenance))
        .route(
            "/maintenance/{id}",
            axum::routing::delete(remove_maintenance),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(4096))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Constant-time comparison of two secrets (an API token, a CSRF token), so a secret cannot
/// be guessed byte by byte from timings. Only the length leaks.
pub fn token_matches(given: &[u8], want: &[u8]) -> bool {
    if given.len() != want.len() {
        return false;
    }
    given
        .iter()
        .zip(want)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The role a token grants: the admin token → [`Role::Admin`], the read-only token →
/// [`Role::Read`], anything else → `None`. The one decision both the API's bearer auth and the
/// dashboard's login make; both tokens are always compared (no early exit that would tell
/// which one a guess came close to).
pub fn role_of(given: &str, admin: &str, read: Option<&str>) -> Option<Role> {
    let is_admin = token_matches(given.as_bytes(), admin.as_bytes());
    let is_read = read.is_some_and(|r| token_matches(given.as_bytes(), r.as_bytes()));
    if is_admin {
        Some(Role::Admin)
    } else if is_read {
        Some(Role::Read)
    } else {
        None
    }
}

impl ApiState {
    /// [`role_of`] with this API's tokens.
    pub fn role_of(&self, given: &str) -> Option<Role> {
        role_of(given, &self.token, self.read_token.as_deref())
    }
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 7235).
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        })
}

async fn auth(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let mut req = req;
    let role = match bearer(&headers) {
        Some(t) => match st.role_of(t) {
            Some(role) => role,
            None => return unauthorized("the bearer token is wrong"),
        },
        None => return unauthorized("missing \"Authorization: Bearer <token>\" header"),
    };
    req.extensions_mut().insert(role);
    next.run(req).await
}

/// Lets only the admin token through (the role `auth` found).
async fn admin_only(req: Request, next: Next) -> Response {
    match req.extensions().get::<Role>() {
        Some(Role::Admin) => next.run(req).await,
        _ => (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "forbidden",
                "reason": "this token is read-only; overrides and failback take the admin token ([api] token_file)",
            })),
        )
            .into_response(),
    }
}

fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"error": "unauthorized", "reason": reason})),
    )
        .into_response()
}

async fn metrics(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Some(want) = &st.metrics_token {
        match bearer(&headers) {
            // `|`, not `||`: every comparison is made, whichever token it is.
            Some(t) if token_matches(t.as_bytes(), want.as_bytes()) | st.role_of(t).is_some() => {}
            Some(_) => {
                return unauthorized(
                    "the bearer token is wrong; /metrics takes the token of [api] metrics_token_file",
                );
            }
            None => {
                return unauthorized(
                    "missing \"Authorization: Bearer <token>\" header; /metrics takes the token of [api] metrics_token_file",
                );
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

async fn list_services(State(st): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let mut list: Vec<_> = st
        .live
        .get()
        .services
        .values()
        .map(|h| h.current())
        .collect();
    list.sort_by(|a, b| a.service.cmp(&b.service));
    Json(json!({ "services": list }))
}

/// `GET /v1/witnesses`: every configured witness and its reliability over the sliding window
/// (answer rate, latency p50/p99, disagreement with the majority).
async fn list_witnesses(State(st): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let live = st.live.get();
    let now = std::time::Instant::now();
    let list: Vec<serde_json::Value> = live
        .witnesses
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "url": w.url,
                "key_id": w.key_id.to_string(),
                "cert_pinned": w.cert_sha256.is_some(),
                "reliability": live.reliability.summary(&w.name, now),
            })
        })
        .collect();
    Json(json!({ "witnesses": list }))
}

fn service(st: &ApiState, name: &str) -> Result<ServiceHandle, ApiError> {
    st.live
        .get()
        .services
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no service named {name:?}")))
}

async fn one_service(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!(service(&st, &name)?.current())))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    /// `auto`, `pin-primary` or `pin-backup`.
    mode: String,
}

async fn set_override(
    State(st): State<Arc<ApiState>>,
    axum::Extension(role): axum::Extension<Role>,
    Path(name): Path<String>,
    body: Result<JsonObject<OverrideBody>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let JsonObject(body) =
        body.map_err(|e| e.expected(r#"{"mode": "auto" | "pin-primary" | "pin-backup"}"#))?;
    let mode = match body.mode.as_str() {
        "auto" => Override::Auto,
        "pin-primary" => Override::PinPrimary,
        "pin-backup" => Override::PinBackup,
        o => {
            return Err(ApiError::bad(format!(
                "mode: expected \"auto\", \"pin-primary\" or \"pin-backup\", got {o:?}"
            )));
        }
    };
    let h = service(&st, &name)?;
    let (tx, rx) = oneshot::channel();
    send(&h, Command::SetOverride(mode, role.as_str(), tx)).await?;
    let msg = rx
        .await
        .map_err(|_| ApiError::internal("service task stopped"))?
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"service": name, "result": msg, "status": h.current()}),
    ))
}

async fn manual_failback(
    State(st): State<Arc<ApiState>>,
    axum::Extension(role): axum::Extension<Role>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let h = service(&st, &name)?;
    let (tx, rx) = oneshot::channel();
    send(&h, Command::ManualFailback(role.as_str(), tx)).await?;
    let msg = rx
        .await
        .map_err(|_| ApiError::internal("service task stopped"))?
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"service": name, "result": msg, "status": h.current()}),
    ))
}

async fn send(h: &ServiceHandle, c: Command) -> Result<(), ApiError> {
    h.commands
        .send_timeout(c, Duration::from_secs(5))
        .await
        .map_err(|_| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "busy",
            reason: "the service did not take the command within 5 s".into(),
        })
}

/// Query parameters shared by the list endpoints. Times are Unix milliseconds or RFC 3339.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    service: Option<String>,
    since: Option<String>,
    until: Option<String>,
    outcome: Option<String>,
    before_id: Option<i64>,
    limit: Option<u32>,
}

fn parse_time(key: &str, v: &Option<String>) -> Result<Option<u64>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Some(ms));
    }
    // humantime reads UTC only and would silently ignore some offsets: accept `Z`,
    // `+00:00` or no offset (UTC), refuse any other.
    let tail = v.get(10..).unwrap_or("");
    let utc =
        v.ends_with('Z') || v.ends_with("+00:00") || !(tail.contains('+') || tail.contains('-'));
    if !utc {
        return Err(ApiError::bad(format!(
            "{key}: give the time in UTC (ending in Z) or as Unix milliseconds, got {v:?}"
        )));
    }
    humantime::parse_rfc3339_weak(v.trim_end_matches("+00:00"))
        .map(|t| Some(shared::unix_ms(t)))
        .map_err(|_| ApiError::bad(format!("{key}: expected Unix milliseconds or an RFC 3339 time like 2026-11-24T10:00:00Z, got {v:?}")))
}

fn limit(q: &ListQuery) -> Result<u32, ApiError> {
    match q.limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::bad(format!(
            "limit: expected 1..={MAX_LIMIT}, got {l}"
        ))),
    }
}

type Q = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

fn query(q: Q) -> Result<ListQuery, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::bad(e.body_text()))
}

fn list_filter(q: &ListQuery) -> Result<ListFilter, ApiError> {
    Ok(ListFilter {
        service: q.service.clone(),
        since_ms: parse_time("since", &q.since)?,
        until_ms: parse_time("until", &q.until)?,
        before_id: q.before_id,
        limit: limit(q)?,
    })
}

/// A page and the cursor for the next one.
#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    /// Pass as `before_id` for the next (older) page; absent on the last page.
    next_before_id: Option<i64>,
}

fn page<T>(items: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> Page<T> {
    let next = if items.len() as u32 == limit {
        items.last().map(&id)
    } else {
        None
    };
    Page {
        items,
        next_before_id: next,
    }
}

async fn list_rounds(
    State(st): State<Arc<ApiState>>,
    q: Q,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query(q)?;
    let lf = list_filter(&q)?;
    let outcome = match &q.outcome {
        None => None,
        Some(o) => Some(
            crate::failover::Outcome::parse(o)
                .ok_or_else(|| ApiError::bad(format!("outcome: unknown outcome {o:?}")))?,
        ),
    };
    let f = RoundFilter {
        service: lf.service,
        since_ms: lf.since_ms,
        until_ms: lf.until_ms,
        outcome,
        before_id: lf.before_id,
        limit: lf.limit,
    };
    let l = f.limit;
    let rows = st.store.call(move |s| s.list_rounds(&f)).await?;
    Ok(Json(json!(page(rows, l, |r| r.id))))
}

/// A stored vote with the result of verifying it again now.
#[derive(Serialize)]
struct VoteView {
    #[serde(flatten)]
    vote: VoteRecord,
    /// Re-verified against the configured witness key just now: `ok`, the reason it fails,
    /// or `unknown-witness` when the witness is no longer configured.
    reverified: String,
}

/// A numeric id from the path (`/v1/rounds/{id}`), or a 400 naming what it is the id of.
fn path_id(of: &str, text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad(format!("{of} id: expected a number, got {text:?}")))
}

async fn one_round(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = path_id("round", &id)?;
    let Some((round, votes)) = st.store.call(move |s| s.round(id)).await? else {
        return Err(ApiError::not_found(format!("no round {id}")));
    };
    let witnesses = st.live.get().witnesses.clone();
    let votes: Vec<VoteView> = votes
        .into_iter()
        .map(|v| VoteView {
            reverified: crate::audit::reverify_vote(&v, &round.round.service, &witnesses),
            vote: v,
        })
        .collect();
    Ok(Json(json!({"round": round, "votes": votes})))
}

/// The incident bundle of one round (`ledger::incident`), carrying the running config's
/// public keys: the same file as `export-incident`, for `verify-history --incident`.
async fn round_incident(
    State(st): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::ledger::incident::{ExportError, export};
    let id = path_id("round", &id)?;
    let keys = st.live.get().keys.clone();
    let inc = st
        .store
        .call(move |s| {
            Ok(export(s, id, &keys.to_toml(), &keys).map_err(|e| match e {
                ExportError::NoRound(_) => ApiError::not_found(e.to_string()),
                ExportError::Unprovable(m) => ApiError {
                    status: StatusCode::CONFLICT,
                    code: "not_provable",
                    reason: m,
                },
                ExportError::Store(e) => ApiError::internal(e.to_string()),
            }))
        })
        .await??;
    serde_json::to_value(inc)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Lists events or DNS changes (newest first, paged): the same filters, another table.
async fn list_plain<T: Serialize + Send + 'static>(
    st: &ApiState,
    q: Q,
    id: fn(&T) -> i64,
    read: fn(&Store, &ListFilter) -> Result<Vec<T>, crate::store::StoreError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = query(q)?;
    if q.outcome.is_some() {
        return Err(ApiError::bad("outcome: only /v1/rounds filters by outcome"));
    }
    let f = list_filter(&q)?;
    let l = f.limit;
    let rows = st.store.call(move |s| read(s, &f)).await?;
    Ok(Json(json!(page(rows, l, id))))
}

/// The newest signed checkpoint of the history's hash chain (docs/history.md): what an
/// auditor keeps to prove later that the history up to it was not rewritten or truncated.
async fn latest_checkpoint(
    State(st): State<Arc<ApiState>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(c) = st.store.call(|s| s.latest_checkpoint()).await? else {
        return Err(ApiError::not_found(
            "no checkpoint yet: the first is signed within [history] checkpoint_every",
        ));
    };
    let envelope: serde_json::Value = serde_json::from_str(&c.envelope).unwrap_or_default();
    let payload = envelope
        .get("payload")
        .and_then(|p| p.as_str())
        .and_then(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(p).ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .unwrap_or_default();
    Ok(Json(
        json!({"id": c.id, "checkpoint": payload, "envelope": envelope}),
    ))
}

async fn list_events(
    State(st): State<Arc<ApiState>>,
    q: Q,
) -> Result<Json<serde_json::Value>, ApiError> {
    list_plain(&st, q, |e: &crate::store::Event| e.id, Store::list_events).await
}

async fn list_dns_changes(
    State(st): State<Arc<ApiState>>,
    q: Q,
) -> Result<Json<serde_json::Value>, ApiError> {
    list_plain(
        &st,
        q,
        |c: &crate::store::DnsChangeRow| c.id,
        Store::list_dns_changes,
    )
    .await
}

/// Scheduled maintenance announcements (`crate::maintenance`): the admin token adds and
/// removes (the role is checked here, the routes share their path with a `GET`).
fn admin_required(role: Role) -> Result<(), ApiError> {
    match role {
        Role::Admin => Ok(()),
        Role::Read => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            reason: "this token is read-only; announcing or removing maintenance takes the admin token ([api] token_file)".into(),
        }),
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    service: String,
    /// RFC 3339 in UTC or Unix milliseconds.
    start: String,
    end: String,
    title: String,
    #[serde(default)]
    details: Option<String>,
}

/// `POST /v1/maintenance`: announces a window (201 with the stored row).
async fn add_maintenance(
    State(st): State<Arc<ApiState>>,
    axum::Extension(role): axum::Extension<Role>,
    body: Result<JsonObject<MaintenanceBody>, ApiError>,
) -> Result<Response, ApiError> {
    admin_required(role)?;
    let JsonObject(b) = body.map_err(|e| {
        e.expected(r#"{"service": "...", "start": "2026-12-05T10:00:00Z", "end": "...", "title": "...", "details": "..."}"#)
    })?;
    let start_ms = parse_time("start", &Some(b.start.clone()))?.unwrap_or_default();
    let end_ms = parse_time("end", &Some(b.end.clone()))?.unwrap_or_default();
    let now = shared::unix_ms(std::time::SystemTime::now());
    let live = st.live.get();
    let checked = crate::maintenance::check(
        &crate::maintenance::Asked {
            service: &b.service,
            start_ms,
            end_ms,
            title: &b.title,
            details: b.details.as_deref(),
        },
        now,
        |s| live.services.contains_key(s),
    )
    .map_err(ApiError::bad)?;
    let new = crate::store::NewMaintenance {
        service: checked.service,
        start_ms: checked.start_ms,
        end_ms: checked.end_ms,
        title: checked.title,
        details: checked.details,
        created_ms: now,
        created_by: role.as_str().to_string(),
    };
    let id = match st
        .store
        .add_maintenance(new, crate::maintenance::MAX_OPEN)
        .await?
    {
        Ok(id) => id,
        Err(crate::store::AddRefused::TooMany(n)) => {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                code: "conflict",
                reason: format!(
                    "service {:?} already has {n} announcements that have not ended; remove one first",
                    b.service
                ),
            });
        }
    };
    let row = st.store.call(move |s| s.maintenance(id)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "maintenance": row }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceQuery {
    service: Option<String>,
}

/// `GET /v1/maintenance[?service=S]`: announcements not yet ended, soonest first.
async fn list_maintenance(
    State(st): State<Arc<ApiState>>,
    q: Result<Query<MaintenanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(e.body_text()))?;
    let now = shared::unix_ms(std::time::SystemTime::now());
    let rows = st
        .store
        .call(move |s| s.list_maintenance(q.service.as_deref(), now, MAX_LIMIT))
        .await?;
    Ok(Json(json!({ "maintenance": rows })))
}

/// `DELETE /v1/maintenance/{id}`: removes an announcement (the history keeps the event).
async fn remove_maintenance(
    State(st): State<Arc<ApiState>>,
    axum::Extension(role): axum::Extension<Role>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    admin_required(role)?;
    let id = path_id("maintenance", &id)?;
    let now = shared::unix_ms(std::time::SystemTime::now());
    match st
        .store
        .remove_maintenance(id, now, role.as_str().to_string())
        .await?
    {
        Some(row) => Ok(Json(json!({ "removed": row }))),
        None => Err(ApiError::not_found(format!(
            "no maintenance announcement {id}"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    const API_TOKEN: &str = "api-token-0123456789";
    const METRICS_TOKEN: &str = "metrics-token-0123456789";

    fn app(dir: &tempfile::TempDir, metrics_token: Option<&str>) -> Router {
        router(Arc::new(ApiState {
            store: Store::open(&dir.path().join("h.db")).unwrap(),
            live: LiveCell::default(),
            metrics: Arc::new(Metrics::new()),
            token: API_TOKEN.into(),
            read_token: None,
            metrics_token: metrics_token.map(String::from),
        }))
    }

    /// The status of `GET /metrics` with `token` as bearer token, if any.
    async fn get_metrics(app: &Router, token: Option<&str>) -> StatusCode {
        let mut req = Request::builder().uri("/metrics");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        res.status()
    }

    #[test]
    fn secrets_are_compared_whole() {
        // Moved from dashboard::session (its `same_secret` is this function now).
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abc", b"abd"));
        assert!(!token_matches(b"abc", b"abcd"));
        assert!(!token_matches(b"", b"abc"));
    }

    #[test]
    fn a_token_grants_one_role_or_none() {
        const ADMIN: &str = "admin-token-0123456789";
        const READ: &str = "read-token-0123456789";
        // (given, read-only token configured?, role)
        let table: &[(&str, bool, Option<Role>)] = &[
            (ADMIN, true, Some(Role::Admin)),
            (ADMIN, false, Some(Role::Admin)),
            (READ, true, Some(Role::Read)),
            (READ, false, None),
            ("admin-token-012345678", true, None),
            ("admin-token-01234567890", true, None),
            ("Admin-token-0123456789", true, None),
            ("", true, None),
            ("", false, None),
        ];
        for (given, with_read, want) in table {
            let read = with_read.then_some(READ);
            assert_eq!(
                role_of(given, ADMIN, read),
                *want,
                "{given:?} with read token {with_read}"
            );
        }
        // Were both tokens the same (the config refuses that), the admin role would win.
        assert_eq!(role_of("x", "x", Some("x")), Some(Role::Admin));
    }

    #[tokio::test]
    async fn metrics_are_open_when_no_metrics_token_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&dir, None);
        assert_eq!(get_metrics(&app, None).await, StatusCode::OK);
        assert_eq!(get_metrics(&app, Some("anything")).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_need_the_metrics_token_or_the_api_token_when_one_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(&dir, Some(METRICS_TOKEN));
        assert_eq!(get_metrics(&app, None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            get_metrics(&app, Some("wrong-token-0123456789")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get_metrics(&app, Some(METRICS_TOKEN)).await, StatusCode::OK);
        assert_eq!(get_metrics(&app, Some(API_TOKEN)).await, StatusCode::OK);
        // The metrics token grants /metrics only, never the API.
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/v1/services")
                    .header(header::AUTHORIZATION, format!("Bearer {METRICS_TOKEN}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        // /healthz stays open.
        let res = app
            .oneshot(
                Request::builder()
                    .uri("/healthz")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
