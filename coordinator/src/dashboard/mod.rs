//! The dashboard: server-rendered pages under `/ui/` on the API listener (`docs/dashboard.md`).
//! askama templates (`coordinator/templates/`), htmx with its SSE extension for live updates,
//! every asset compiled into the binary (`coordinator/assets/`, no CDN).
//!
//! | page | who |
//! |---|---|
//! | `GET /ui/login`, `POST /ui/login` (token → session cookie) | anyone |
//! | `GET /ui/` overview, `GET /ui/events` (SSE: the services table again on every change) | a session |
//! | `GET /ui/services/{name}` timeline, `GET /ui/rounds/{id}` votes re-verified | a session |
//! | `GET /ui/services/{name}/confirm?action=…`, `POST /ui/services/{name}/action` | an admin session + its CSRF token |
//! | `POST /ui/logout` | a session + its CSRF token |
//!
//! Invariants: a token is only ever read from the login form and turned into a role by
//! `api::role_of` (the API's own decision, constant-time); failed logins are counted per client
//! address ([`login_limit`]: 5 a minute, then 429 with `Retry-After`, bounded) and logged
//! without the token; the browser holds a random session id (HttpOnly, SameSite=Strict,
//! `Path=/ui`, `Secure` when the request came over TLS), the server
//! holds the role, the CSRF token and the expiry ([`session::Sessions`], bounded); every POST
//! that changes something carries the session's CSRF token or is refused (403); an expired or
//! unknown session is sent to the login form; bodies and query strings are bounded.

pub mod login_limit;
pub mod maintenance_page;
pub mod session;
pub mod status;
pub mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use crate::api::token_matches;
use crate::api::{ApiState, Role};
use crate::config::DashboardConfig;
use crate::failover::{Outcome, Override};
use crate::service::{Command, ServiceStatus};
use crate::store::RoundFilter;
use login_limit::LoginLimit;
use session::{COOKIE, Session, Sessions, cookie};
use views::{ChangeRow, EventRow, RoundRow, ServiceRow, ServicesFragment, VoteRow};

/// Largest form body (a token or an action and its CSRF token fit many times over).
const MAX_BODY: usize = 4096;
/// Longest request target: the timeline's filters fit in a fraction of it.
const MAX_URI: usize = 2048;
/// Rounds per timeline page, and events and DNS changes shown with them.
const PAGE: u32 = 25;
/// Server-sent events: at most one services table per this long, however often statuses
/// change (a 100-service coordinator ticks many times a second).
const SSE_MIN_GAP: Duration = Duration::from_millis(300);
/// …and one at least this often, so a reload's new services and the witnesses' numbers show.
const SSE_REFRESH: Duration = Duration::from_secs(15);
/// How long an action waits for the service to take the command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

const HTMX: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");
const HTMX_SSE: &[u8] = include_bytes!("../../assets/htmx-ext-sse-2.2.4.min.js");
const CSS: &[u8] = include_bytes!("../../assets/dashboard.css");

/// What the pages share.
pub struct Dash {
    api: Arc<ApiState>,
    sessions: Sessions,
    /// Failed logins per client address (5 a minute, then 429).
    logins: LoginLimit,
}

impl std::fmt::Debug for Dash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dash").finish_non_exhaustive()
    }
}

/// The dashboard's routes, to merge into the API's router; empty when it is turned off.
pub fn router(api: Arc<ApiState>, config: &DashboardConfig) -> Router {
    if !config.enabled {
        return Router::new();
    }
    let dash = Arc::new(Dash {
        api,
        sessions: Sessions::new(config.session_ttl),
        logins: LoginLimit::default(),
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/events", get(events))
        .route("/ui/services/{name}", get(service_page))
        .route("/ui/services/{name}/confirm", get(confirm))
        .route("/ui/services/{name}/action", post(action))
        .route("/ui/rounds/{id}", get(round_page))
        .route("/ui/assets/{file}", get(asset))
        .layer(middleware::from_fn(guard))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(dash)
}

/// Bounds every request target and adds the headers every page carries.
async fn guard(req: Request, next: Next) -> Response {
    if req.uri().to_string().len() > MAX_URI {
        return (
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI} bytes"),
        )
            .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

fn page(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

fn message(status: StatusCode, title: &str, text: impl Into<String>) -> Response {
    let mut r = page(&views::Message {
        title: title.into(),
        message: text.into(),
    });
    *r.status_mut() = status;
    r
}

fn to_login() -> Response {
    Redirect::to("/ui/login").into_response()
}

impl Dash {
    /// The session the request's cookie names, if it is live.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| cookie(h, COOKIE))?;
        let s = self.sessions.get(id, Instant::now())?;
        Some((id.to_string(), s))
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "htmx-2.0.11.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        "htmx-ext-sse-2.2.4.min.js" => (HTMX_SSE, "text/javascript; charset=utf-8"),
        "dashboard.css" => (CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            // The htmx files are named by version; the stylesheet changes only with the binary.
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn login_form() -> Response {
    page(&views::Login { error: None })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginForm {
    token: String,
}

async fn login(
    State(d): State<Arc<Dash>>,
    peer: Option<axum::Extension<shared::listener::Peer>>,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // Behind the shared listener every request knows its peer; without one (an in-process
    // router in a test) all logins share one count.
    let (ip, tls) = match peer {
        Some(axum::Extension(p)) => (p.addr.ip(), p.tls),
        None => (std::net::IpAddr::from([0u8; 4]), false),
    };
    let now = Instant::now();
    if let Err(wait) = d.logins.check(ip, now) {
        // Whole seconds, rounded up: a client that waits that long is let through.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        // Debug only: the failures that led here were each logged at warn; a client that
        // keeps trying past the limit must not flood the log.
        tracing::debug!(client = %ip, retry_after = secs, "dashboard login refused: too many failed logins");
        let mut r = message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed logins",
            format!("Too many failed logins from this address: try again in {secs} s."),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let f = match form {
        Ok(Form(f)) => f,
        Err(e) => {
            return message(
                e.status(),
                "Bad request",
                format!("expected a form with one field, token: {}", e.body_text()),
            );
        }
    };
    let Some(role) = d.api.role_of(f.token.trim()) else {
        d.logins.failed(ip, now);
        // Never the token, not even its length.
        tracing::warn!(client = %ip, "dashboard login failed: the token is neither the admin nor the read-only token");
        let mut r = page(&views::Login {
            error: Some("That token is neither the admin nor the read-only token.".into()),
        });
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    d.logins.succeeded(ip);
    let (id, _) = match d.sessions.create(role, now) {
        Ok(s) => s,
        Err(e) => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Login failed",
                e.to_string(),
            );
        }
    };
    tracing::info!(role = role.as_str(), client = %ip, "dashboard login");
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                session_cookie(&id, d.sessions.ttl().as_secs(), tls),
            ),
            (header::LOCATION, "/ui/".into()),
        ],
    )
        .into_response()
}

/// The session cookie's `Set-Cookie` value: `Secure` when the login came over TLS (the
/// browser then never sends it over plain HTTP); `Max-Age=0` with an empty id logs out.
fn session_cookie(id: &str, max_age: u64, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(d): State<Arc<Dash>>,
    peer: Option<axum::Extension<shared::listener::Peer>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some((id, s)) = d.session(&headers) else {
        return to_login();
    };
    match form {
        Ok(Form(f)) if token_matches(f.csrf.as_bytes(), s.csrf.as_bytes()) => {}
        _ => return csrf_refused(),
    }
    d.sessions.remove(&id);
    (
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                session_cookie("", 0, peer.is_some_and(|axum::Extension(p)| p.tls)),
            ),
            (header::LOCATION, "/ui/login".into()),
        ],
    )
        .into_response()
}

fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Refused",
        "The form came without this session's CSRF token: nothing was done. Open the page again and resend it from there.",
    )
}

/// The services table and the witnesses, now.
async fn fragment(api: &ApiState, admin: bool) -> ServicesFragment {
    let live = api.live.get();
    let mut statuses: Vec<ServiceStatus> = live.services.values().map(|h| h.current()).collect();
    statuses.sort_by(|a, b| a.service.cmp(&b.service));
    let latest = match api.store.call(|s| s.latest_rounds()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard: reading the newest rounds failed");
            Vec::new()
        }
    };
    let services = statuses
        .iter()
        .map(|s| {
            let last = latest.iter().find(|(r, _)| r.round.service == s.service);
            ServiceRow::new(s, last)
        })
        .collect();
    ServicesFragment {
        services,
        witnesses: views::witness_rows(&live, Instant::now()),
        admin,
    }
}

async fn overview(State(d): State<Arc<Dash>>, headers: HeaderMap) -> Response {
    let Some((_, s)) = d.session(&headers) else {
        return to_login();
    };
    page(&views::Overview {
        fragment: fragment(&d.api, s.role == Role::Admin).await,
        csrf: s.csrf,
        role: s.role.as_str(),
    })
}

/// What the event stream carries between two events.
struct Stream {
    dash: Arc<Dash>,
    session: String,
    watching: Vec<watch::Receiver<ServiceStatus>>,
    last: Option<Instant>,
    /// The session is over and the page was told so: the stream ends.
    ended: bool,
}

impl Stream {
    /// Watches the services running now, every status as seen.
    fn rewatch(&mut self) {
        self.watching = self
            .dash
            .api
            .live
            .get()
            .services
            .values()
            .map(|h| {
                let mut rx = h.status.clone();
                rx.borrow_and_update();
                rx
            })
            .collect();
    }

    /// Waits for a service's status to change (or [`SSE_REFRESH`]).
    async fn changed(&mut self) {
        let any = async {
            if self.watching.is_empty() {
                return std::future::pending::<()>().await;
            }
            let _ = futures::future::select_all(
                self.watching.iter_mut().map(|rx| Box::pin(rx.changed())),
            )
            .await;
        };
        let _ = tokio::time::timeout(SSE_REFRESH, any).await;
    }

    /// The next event: the services table once something changed; `None` once the session
    /// is over.
    async fn next(mut self) -> Option<(Result<Event, std::convert::Infallible>, Stream)> {
        if self.last.is_some() {
            self.changed().await;
        }
        if let Some(last) = self.last {
            tokio::time::sleep_until((last + SSE_MIN_GAP).into()).await;
        }
        if self.ended {
            return None;
        }
        let Some(s) = self.dash.sessions.get(&self.session, Instant::now()) else {
            // The last event replaces the table with a way back in.
            self.ended = true;
            let html = "<p class=\"bad\" id=\"expired\">The session is over: <a href=\"/ui/login\">log in again</a>.</p>";
            return Some((Ok(Event::default().event("services").data(html)), self));
        };
        // Marked seen before the table is read: a change during the render is the next event.
        self.rewatch();
        self.last = Some(Instant::now());
        let html = match fragment(&self.dash.api, s.role == Role::Admin)
            .await
            .render()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "dashboard: the services table failed to render");
                return None;
            }
        };
        Some((Ok(Event::default().event("services").data(html)), self))
    }
}

/// `GET /ui/events`: the services table again whenever a status changes.
async fn events(State(d): State<Arc<Dash>>, headers: HeaderMap) -> Response {
    let Some((id, _)) = d.session(&headers) else {
        return (StatusCode::UNAUTHORIZED, "log in first").into_response();
    };
    let first = Stream {
        dash: d,
        session: id,
        watching: Vec::new(),
        last: None,
        ended: false,
    };
    let stream = futures::stream::unfold(first, Stream::next);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The timeline's filters. Times are RFC 3339 in UTC or Unix milliseconds (as in the API).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimelineQuery {
    outcome: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before_id: Option<i64>,
}

fn parse_time(key: &str, v: &Option<String>) -> Result<Option<u64>, String> {
    let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<u64>() {
        return Ok(Some(ms));
    }
    // The form's `datetime-local` sends `2026-12-03T10:00` (taken as UTC).
    humantime::parse_rfc3339_weak(v.trim_end_matches('Z'))
        .map(|t| Some(shared::unix_ms(t)))
        .map_err(|_| {
            format!("{key}: expected a UTC time like 2026-12-03T10:00:00Z or Unix milliseconds, got {v:?}")
        })
}

async fn service_page(
    State(d): State<Arc<Dash>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some((_, s)) = d.session(&headers) else {
        return to_login();
    };
    let Ok(Query(q)) = q else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "the filters are outcome, since, until and before_id",
        );
    };
    let Some(handle) = d.api.live.get().services.get(&name).cloned() else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no service named {name:?}"),
        );
    };
    let outcome = match q.outcome.as_deref().filter(|o| !o.is_empty()) {
        None => None,
        Some(o) => match Outcome::parse(o) {
            Some(o) => Some(o),
            None => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    format!("outcome: unknown outcome {o:?}"),
                );
            }
        },
    };
    let (since, until) = match (parse_time("since", &q.since), parse_time("until", &q.until)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return message(StatusCode::BAD_REQUEST, "Bad request", e),
    };
    let f = RoundFilter {
        service: Some(name.clone()),
        since_ms: since,
        until_ms: until,
        outcome,
        before_id: q.before_id,
        limit: PAGE,
    };
    let lf = crate::store::ListFilter {
        service: Some(name.clone()),
        since_ms: None,
        until_ms: None,
        before_id: None,
        limit: PAGE,
    };
    let now = shared::unix_ms(std::time::SystemTime::now());
    let service = name.clone();
    let read = d
        .api
        .store
        .call(move |st| {
            Ok((
                st.list_rounds(&f)?,
                st.list_events(&lf)?,
                st.list_dns_changes(&lf)?,
                st.list_maintenance(Some(&service), now, crate::maintenance::MAX_OPEN)?,
            ))
        })
        .await;
    let (rounds, evs, changes, maintenance) = match read {
        Ok(x) => x,
        Err(e) => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "History unreadable",
                e.to_string(),
            );
        }
    };
    let next = (rounds.len() as u32 == PAGE)
        .then(|| rounds.last().map(|r| r.id))
        .flatten()
        .map(|id| {
            let mut parts = vec![format!("before_id={id}")];
            for (k, v) in [
                ("outcome", &q.outcome),
                ("since", &q.since),
                ("until", &q.until),
            ] {
                if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                    parts.push(format!("{k}={}", urlencode(v)));
                }
            }
            parts.join("&")
        });
    let status = handle.current();
    page(&views::ServicePage {
        row: ServiceRow::new(&status, None),
        name,
        rounds: rounds.iter().map(RoundRow::new).collect(),
        next,
        outcome: q.outcome.unwrap_or_default(),
        since: q.since.unwrap_or_default(),
        until: q.until.unwrap_or_default(),
        outcomes: Outcome::ALL.iter().map(|o| o.as_str()).collect(),
        events: evs.iter().map(EventRow::new).collect(),
        changes: changes.iter().map(ChangeRow::new).collect(),
        maintenance: maintenance
            .iter()
            .map(|m| status::MaintenanceRow::new(m, now))
            .collect(),
        admin: s.role == Role::Admin,
        csrf: s.csrf,
    })
}

/// Percent-encodes a query value (unreserved characters pass).
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn round_page(
    State(d): State<Arc<Dash>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((_, s)) = d.session(&headers) else {
        return to_login();
    };
    let Ok(id) = id.parse::<i64>() else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            format!("round id: expected a number, got {id:?}"),
        );
    };
    let (round, votes) = match d.api.store.call(move |st| st.round(id)).await {
        Ok(Some(x)) => x,
        Ok(None) => return message(StatusCode::NOT_FOUND, "Not found", format!("no round {id}")),
        Err(e) => {
            return message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "History unreadable",
                e.to_string(),
            );
        }
    };
    let witnesses = d.api.live.get().witnesses.clone();
    let votes = votes
        .iter()
        .map(|v| {
            let reverified = crate::audit::reverify_vote(v, &round.round.service, &witnesses);
            VoteRow {
                witness: v.witness.clone(),
                verdict: views::vote_word(v),
                latency: v
                    .latency_ms
                    .map(|l| format!("{l:.0} ms"))
                    .unwrap_or_else(|| "-".into()),
                error: v.error.clone().unwrap_or_default(),
                verified: reverified == "ok",
                reverified,
                evidence: evidence(v),
            }
        })
        .collect();
    page(&views::RoundPage {
        service: round.round.service.clone(),
        round: RoundRow::new(&round),
        votes,
        csrf: s.csrf,
    })
}

/// The evidence a vote's payload carries, as the witness wrote it (JSON), or `-`.
fn evidence(v: &crate::store::VoteRecord) -> String {
    use base64::Engine as _;
    let Some(raw) = &v.vote_envelope else {
        return "-".into();
    };
    let payload = serde_json::from_slice::<serde_json::Value>(raw)
        .ok()
        .and_then(|e| e.get("payload").and_then(|p| p.as_str()).map(String::from))
        .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    match payload.as_ref().and_then(|p| p.get("evidence")) {
        Some(e) => e.to_string(),
        None => "-".into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmQuery {
    action: String,
}

/// Why a page that takes an admin refused.
enum NotAdmin {
    /// No live session: to the login form.
    Login,
    /// A read-only session.
    ReadOnly,
}

impl IntoResponse for NotAdmin {
    fn into_response(self) -> Response {
        match self {
            NotAdmin::Login => to_login(),
            NotAdmin::ReadOnly => message(
                StatusCode::FORBIDDEN,
                "Read-only",
                "This login is read-only: overrides and failback take the admin token.",
            ),
        }
    }
}

/// The session, if it is an admin's.
fn admin(d: &Dash, headers: &HeaderMap) -> Result<Session, NotAdmin> {
    let Some((_, s)) = d.session(headers) else {
        return Err(NotAdmin::Login);
    };
    if s.role != Role::Admin {
        return Err(NotAdmin::ReadOnly);
    }
    Ok(s)
}

async fn confirm(
    State(d): State<Arc<Dash>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    q: Result<Query<ConfirmQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let s = match admin(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(handle) = d.api.live.get().services.get(&name).cloned() else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no service named {name:?}"),
        );
    };
    let action = q.map(|Query(q)| q.action).unwrap_or_default();
    let Some(action) = views::ACTIONS.into_iter().find(|a| *a == action) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "action: expected pin-primary, pin-backup, auto or failback",
        );
    };
    let Some((title, dns)) = views::dns_effect(action, &handle.current()) else {
        return message(StatusCode::BAD_REQUEST, "Bad request", "unknown action");
    };
    page(&views::Confirm {
        service: name,
        action,
        title,
        dns,
        csrf: s.csrf,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionForm {
    action: String,
    #[serde(default)]
    csrf: Option<String>,
}

async fn action(
    State(d): State<Arc<Dash>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    form: Result<Form<ActionForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let s = match admin(&d, &headers) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let f = match form {
        Ok(Form(f)) => f,
        Err(_) => return csrf_refused(),
    };
    if !f
        .csrf
        .as_deref()
        .is_some_and(|c| token_matches(c.as_bytes(), s.csrf.as_bytes()))
    {
        tracing::warn!(service = %name, "dashboard: an action without this session's CSRF token was refused");
        return csrf_refused();
    }
    let Some(handle) = d.api.live.get().services.get(&name).cloned() else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no service named {name:?}"),
        );
    };
    let (tx, rx) = oneshot::channel();
    // Recorded in the history as done by the admin role, from the dashboard.
    let by = "admin (dashboard)";
    let command = match f.action.as_str() {
        "pin-primary" => Command::SetOverride(Override::PinPrimary, by, tx),
        "pin-backup" => Command::SetOverride(Override::PinBackup, by, tx),
        "auto" => Command::SetOverride(Override::Auto, by, tx),
        "failback" => Command::ManualFailback(by, tx),
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "Bad request",
                "action: expected pin-primary, pin-backup, auto or failback",
            );
        }
    };
    if handle
        .commands
        .send_timeout(command, COMMAND_TIMEOUT)
        .await
        .is_err()
    {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "the service did not take the command within 5 s; nothing was done",
        );
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
        Ok(Ok(Ok(msg))) => {
            tracing::info!(service = %name, action = %f.action, "dashboard action");
            message(StatusCode::OK, "Done", format!("{name}: {msg}"))
        }
        Ok(Ok(Err(why))) => message(StatusCode::CONFLICT, "Refused by the service", why),
        _ => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "No answer",
            "the service did not answer within 5 s; see the timeline for what it did",
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
