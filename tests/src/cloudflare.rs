//! A stateful stand-in for the parts of Cloudflare's v4 API that Quorate calls (no official
//! emulator exists), on plain HTTP on loopback. It follows:
//! - <https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/batch/>:
//!   `POST /zones/{zone_id}/dns_records/batch` with `deletes` (by id), `patches`, `puts` and
//!   `posts`, run in that order in ONE transaction: any failure (an unknown id, a bad record)
//!   fails the whole batch and changes nothing; the answer lists what each part did;
//! - `.../dns/subresources/records/methods/list/`: `GET /zones/{zone_id}/dns_records` with
//!   `name` (exact), `type`, `per_page`, and `result_info`;
//! - `.../zones/methods/list/`: `GET /zones?name=`;
//! - every answer is the `{"success", "errors", "messages", "result"}` envelope; a token that is
//!   not the configured one gets 403 with code 10000 ("Authentication error");
//! - TTL: 1 (automatic) or 60 to 86400 s (error 9021); an identical record (same name, type,
//!   content) cannot be posted twice (81058); an unknown record id is 81044, HTTP 404;
//! - rate limit: HTTP 429 with `Retry-After`, switched on by a test ([`CloudflareStandIn::throttle`]).
//!
//! The zone's A and AAAA records are served over DNS by two name servers ([`ZoneDns`]) as the
//! state holds them at each query, a TTL of 1 ("automatic") as 300 s, Cloudflare's automatic
//! TTL. A proxied record is served with its own address (the stand-in has no proxy to put in
//! front of it; the backend keeps `proxied` as it was and the tests switch unproxied records).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::zone_dns::{ZoneDns, record_sets};

/// One DNS record as Cloudflare lists it (names without the trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CfRecord {
    pub id: String,
    pub name: String,
    pub rtype: String,
    pub content: String,
    pub ttl: u32,
    pub proxied: bool,
}

/// A hook run inside the next batch request, before it is applied (a change "by hand" that
/// races Quorate's write).
pub type BatchHook = Box<dyn FnOnce(&mut CfState) + Send>;

#[derive(Default)]
pub struct CfState {
    /// `(zone id, zone name)`.
    pub zones: Vec<(String, String)>,
    /// Every zone's records, by zone id.
    pub records: Vec<(String, CfRecord)>,
    next_id: u64,
    /// How many of the next requests get HTTP 429, and the `Retry-After` they carry.
    pub throttle: u32,
    pub retry_after: u64,
    /// Batches applied (committed).
    pub batches_applied: u32,
    /// Every request: `METHOD path?query`.
    pub requests: Vec<String>,
    pub before_next_batch: Option<BatchHook>,
}

impl CfState {
    /// Adds a record to the zone named `zone` (a change in the dashboard); returns its id.
    pub fn add(&mut self, zone: &str, name: &str, rtype: &str, content: &str, ttl: u32) -> String {
        self.next_id += 1;
        let id = format!("rec{:06}", self.next_id);
        let zone_id = self
            .zones
            .iter()
            .find(|(_, n)| n == zone)
            .map(|(i, _)| i.clone())
            .unwrap_or_default();
        self.records.push((
            zone_id,
            CfRecord {
                id: id.clone(),
                name: name.trim_end_matches('.').to_string(),
                rtype: rtype.into(),
                content: content.into(),
                ttl,
                proxied: false,
            },
        ));
        id
    }

    /// The records of `name` (no trailing dot) and `rtype`, contents sorted.
    pub fn contents(&self, name: &str, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .records
            .iter()
            .filter(|(_, r)| r.name == name && r.rtype == rtype)
            .map(|(_, r)| r.content.clone())
            .collect();
        v.sort();
        v
    }
}

struct Shared {
    token: String,
    state: Mutex<CfState>,
}

pub struct CloudflareStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    dns: ZoneDns,
}

/// Cloudflare's "automatic" TTL (`ttl: 1`), as served.
pub const AUTOMATIC_TTL: u32 = 300;

/// What the zones' name servers serve: every A and AAAA record, one RRset per name and type.
fn served(shared: &Shared) -> Vec<coordinator::dns::RecordSet> {
    let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    record_sets(s.records.iter().map(|(_, r)| {
        let ttl = if r.ttl == 1 { AUTOMATIC_TTL } else { r.ttl };
        (r.name.clone(), r.rtype.as_str(), ttl, r.content.as_str())
    }))
}

impl CloudflareStandIn {
    /// Serves the zone `zone` (e.g. `"example.test"`) for the API token `token`.
    pub async fn start(token: &str, zone: &str) -> CloudflareStandIn {
        let mut state = CfState::default();
        state
            .zones
            .push(("023e105f4ecef8ad9ca31a8372d0c353".into(), zone.into()));
        let shared = Arc::new(Shared {
            token: token.into(),
            state: Mutex::new(state),
        });
        let app = axum::Router::new()
            .route("/client/v4/zones", get(list_zones))
            .route("/client/v4/zones/{zone_id}/dns_records", get(list_records))
            .route("/client/v4/zones/{zone_id}/dns_records/batch", post(batch))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        let view = shared.clone();
        let dns = ZoneDns::start(zone, Box::new(move || served(&view))).await;
        CloudflareStandIn {
            addr,
            shared,
            shutdown: Some(tx),
            dns,
        }
    }

    /// The zone's name servers.
    pub fn dns(&self) -> &ZoneDns {
        &self.dns
    }

    /// `http://127.0.0.1:<port>/client/v4`, for `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&mut CfState) -> T) -> T {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// The next `n` requests are answered 429 with `Retry-After: <retry_after>`.
    pub fn throttle(&self, n: u32, retry_after: u64) {
        self.with_state(|s| {
            s.throttle = n;
            s.retry_after = retry_after;
        });
    }
}

impl Drop for CloudflareStandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn envelope(status: StatusCode, result: Value) -> Response {
    (
        status,
        axum::Json(json!({"success": true, "errors": [], "messages": [], "result": result})),
    )
        .into_response()
}

fn failure(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})),
    )
        .into_response()
}

/// Authentication and the rate limit, in that order (the refusal, if any); records the request.
fn gate(shared: &Shared, headers: &HeaderMap, line: String) -> Option<Response> {
    let mut s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    s.requests.push(line);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(shared.token.as_str()) {
        return Some(failure(
            StatusCode::FORBIDDEN,
            10000,
            "Authentication error",
        ));
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut r = failure(
            StatusCode::TOO_MANY_REQUESTS,
            971,
            "Please wait and consider throttling your request speed",
        );
        if let Ok(v) = s.retry_after.to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Some(r);
    }
    None
}

fn record_json(r: &CfRecord, zone_id: &str) -> Value {
    json!({
        "id": r.id, "zone_id": zone_id, "name": r.name, "type": r.rtype, "content": r.content,
        "ttl": r.ttl, "proxied": r.proxied, "proxiable": true,
    })
}

async fn list_zones(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = gate(&shared, &headers, format!("GET /zones {q:?}")) {
        return r;
    }
    let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    let name = q.iter().find(|(k, _)| k == "name").map(|(_, v)| v.as_str());
    let zones: Vec<Value> = s
        .zones
        .iter()
        .filter(|(_, n)| name.is_none_or(|want| want == n))
        .map(|(id, n)| json!({"id": id, "name": n, "status": "active"}))
        .collect();
    envelope(StatusCode::OK, Value::Array(zones))
}

async fn list_records(
    State(shared): State<Arc<Shared>>,
    Path(zone_id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = gate(&shared, &headers, format!("GET /dns_records {q:?}")) {
        return r;
    }
    let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    if !s.zones.iter().any(|(id, _)| *id == zone_id) {
        return failure(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to /zones/..., perhaps your object identifier is invalid?",
        );
    }
    let param = |k: &str| q.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
    let (name, rtype) = (param("name"), param("type"));
    let per_page: usize = param("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100);
    let all: Vec<&CfRecord> = s
        .records
        .iter()
        .filter(|(z, r)| {
            *z == zone_id
                && name
                    .as_ref()
                    .is_none_or(|n| n.eq_ignore_ascii_case(&r.name))
                && rtype.as_ref().is_none_or(|t| *t == r.rtype)
        })
        .map(|(_, r)| r)
        .collect();
    let page: Vec<Value> = all
        .iter()
        .take(per_page)
        .map(|r| record_json(r, &zone_id))
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({
            "success": true, "errors": [], "messages": [], "result": page,
            "result_info": {"page": 1, "per_page": per_page, "count": page.len(), "total_count": all.len()},
        })),
    )
        .into_response()
}

/// One failed batch part: status, code, message.
type Failed = (StatusCode, u32, String);

fn check_record(zone: &str, r: &CfRecord) -> Result<(), Failed> {
    let bad = |code, m: String| Err((StatusCode::BAD_REQUEST, code, m));
    if !(r.name == zone || r.name.ends_with(&format!(".{zone}"))) {
        return bad(9005, format!("Record {} is not in zone {zone}", r.name));
    }
    let ok = match r.rtype.as_str() {
        "A" => r.content.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => r.content.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    };
    if !ok {
        return bad(9005, format!("Content for {} record is invalid.", r.rtype));
    }
    if r.ttl != 1 && !(60..=86400).contains(&r.ttl) {
        return bad(
            9021,
            "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.".into(),
        );
    }
    Ok(())
}

fn record_from(v: &Value, id: String, base: Option<&CfRecord>) -> CfRecord {
    let s = |k: &str, d: Option<&str>| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(d.map(str::to_string))
            .unwrap_or_default()
    };
    CfRecord {
        id,
        name: s("name", base.map(|b| b.name.as_str()))
            .trim_end_matches('.')
            .to_string(),
        rtype: s("type", base.map(|b| b.rtype.as_str())),
        content: s("content", base.map(|b| b.content.as_str())),
        ttl: v
            .get("ttl")
            .and_then(Value::as_u64)
            .map(|t| t as u32)
            .or(base.map(|b| b.ttl))
            .unwrap_or(1),
        proxied: v
            .get("proxied")
            .and_then(Value::as_bool)
            .or(base.map(|b| b.proxied))
            .unwrap_or(false),
    }
}

async fn batch(
    State(shared): State<Arc<Shared>>,
    Path(zone_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = gate(&shared, &headers, "POST /dns_records/batch".into()) {
        return r;
    }
    let mut guard = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hook) = guard.before_next_batch.take() {
        hook(&mut guard);
    }
    let Some(zone) = guard
        .zones
        .iter()
        .find(|(id, _)| *id == zone_id)
        .map(|(_, n)| n.clone())
    else {
        return failure(
            StatusCode::NOT_FOUND,
            7003,
            "Could not route to /zones/..., perhaps your object identifier is invalid?",
        );
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return failure(StatusCode::BAD_REQUEST, 9207, "Request body is invalid.");
    };
    let list = |k: &str| {
        req.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // The transaction: work on a copy, commit only when every part succeeded.
    let mut next_id = guard.next_id;
    let mut records: Vec<CfRecord> = guard
        .records
        .iter()
        .filter(|(z, _)| *z == zone_id)
        .map(|(_, r)| r.clone())
        .collect();
    let outcome = (|| -> Result<Value, Failed> {
        let missing = || {
            (
                StatusCode::NOT_FOUND,
                81044,
                "Record does not exist.".to_string(),
            )
        };
        let id_of = |v: &Value| {
            v.get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut deleted = Vec::new();
        for d in list("deletes") {
            let id = id_of(&d);
            let pos = records
                .iter()
                .position(|r| r.id == id)
                .ok_or_else(missing)?;
            deleted.push(record_json(&records.remove(pos), &zone_id));
        }
        let mut patched = Vec::new();
        for p in list("patches") {
            let id = id_of(&p);
            let pos = records
                .iter()
                .position(|r| r.id == id)
                .ok_or_else(missing)?;
            let new = record_from(&p, id, records.get(pos));
            check_record(&zone, &new)?;
            patched.push(record_json(&new, &zone_id));
            records[pos] = new;
        }
        let mut put = Vec::new();
        for p in list("puts") {
            let id = id_of(&p);
            let pos = records
                .iter()
                .position(|r| r.id == id)
                .ok_or_else(missing)?;
            let new = record_from(&p, id, None);
            check_record(&zone, &new)?;
            put.push(record_json(&new, &zone_id));
            records[pos] = new;
        }
        let mut posted = Vec::new();
        for p in list("posts") {
            next_id += 1;
            let new = record_from(&p, format!("rec{next_id:06}"), None);
            check_record(&zone, &new)?;
            if records.iter().any(|r| {
                r.name.eq_ignore_ascii_case(&new.name)
                    && r.rtype == new.rtype
                    && r.content == new.content
            }) {
                return Err((
                    StatusCode::BAD_REQUEST,
                    81058,
                    "An identical record already exists.".into(),
                ));
            }
            posted.push(record_json(&new, &zone_id));
            records.push(new);
        }
        Ok(json!({"deletes": deleted, "patches": patched, "puts": put, "posts": posted}))
    })();
    match outcome {
        Ok(result) => {
            guard.records.retain(|(z, _)| *z != zone_id);
            guard
                .records
                .extend(records.into_iter().map(|r| (zone_id.clone(), r)));
            guard.next_id = next_id;
            guard.batches_applied += 1;
            envelope(StatusCode::OK, result)
        }
        Err((status, code, message)) => failure(status, code, &message),
    }
}
