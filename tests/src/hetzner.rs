//! A stand-in for DNS in the Hetzner Cloud API, following
//! https://docs.hetzner.cloud/reference/cloud#zone-rrsets (Zone RRSets, Zone RRSet Actions,
//! Zone Actions):
//! - `GET /v1/zones/{id_or_name}` → `{"zone": {id, name, mode, ttl}}`;
//! - `GET /v1/zones/{zone}/rrsets/{name}/{type}` → `{"rrset": {id, name, type, ttl, records:
//!   [{value, comment}]}}`, 404 `not_found`;
//! - `POST /v1/zones/{zone}/rrsets` (`name`, `type`, `ttl`, `records`) → 201 `{rrset, action}`,
//!   409 `uniqueness_error` when it exists;
//! - `POST …/rrsets/{name}/{type}/actions/set_records` (`records`), `…/actions/change_ttl`
//!   (`ttl`), `DELETE …/rrsets/{name}/{type}` → 201 `{"action": …}`;
//! - `GET /v1/zones/actions/{id}` → the action: `running` for `polls_to_finish` polls, then
//!   `success` (or `error` when the test asked for it). The change takes effect when the
//!   action succeeds, as an asynchronous action does: reading before that shows the old RRset.
//! - errors `{"error": {"code", "message"}}`: 401 `unauthorized`, 404 `not_found`, 422
//!   `invalid_input` (TTL under 60 s, a value that is not an address of the type), 429
//!   `rate_limit_exceeded` with `RateLimit-Limit`/`-Remaining`/`-Reset` (no `Retry-After`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::standin::{GateSpec, Shared, StandIn, json, lock};
use crate::zone_dns::{owner, record_sets};

/// The smallest TTL the API accepts.
pub const MIN_TTL: u32 = 60;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rrset {
    /// `None`: the zone's default.
    pub ttl: Option<u32>,
    pub records: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Zone {
    pub id: u64,
    /// `primary` or `secondary`.
    pub mode: String,
    pub ttl: u32,
    /// By (relative name, type); `@` is the apex.
    pub rrsets: BTreeMap<(String, String), Rrset>,
}

/// What an action does when it succeeds.
#[derive(Clone, Debug)]
enum Effect {
    Put(String, (String, String), Rrset),
    Ttl(String, (String, String), u32),
    Delete(String, (String, String)),
}

#[derive(Clone, Debug)]
struct Action {
    command: String,
    polls_left: u32,
    fail: bool,
    effect: Option<Effect>,
}

#[derive(Debug, Default)]
pub struct HetznerState {
    /// By name (no trailing dot).
    pub zones: BTreeMap<String, Zone>,
    actions: BTreeMap<u64, Action>,
    next_action: u64,
    /// Polls an action answers `running` before it finishes (default 2).
    pub polls_to_finish: u32,
    /// The next action finishes in `error` (and changes nothing).
    pub fail_next_action: bool,
}

impl HetznerState {
    /// The records of `name`/`type` in `zone`, as the API would show them.
    pub fn rrset(&self, zone: &str, name: &str, rtype: &str) -> Option<Rrset> {
        self.zones.get(zone).and_then(|z| {
            z.rrsets
                .get(&(name.to_string(), rtype.to_string()))
                .cloned()
        })
    }

    /// Actions still running.
    pub fn running_actions(&self) -> usize {
        self.actions.values().filter(|a| a.polls_left > 0).count()
    }
}

pub type HetznerStandIn = StandIn<HetznerState>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        json!({ "error": { "code": code, "message": message, "details": {} } }),
    )
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "unable to authenticate",
    )
}

fn throttled(secs: u32) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        "limit of 3600 requests per hour reached",
    );
    let h = r.headers_mut();
    h.insert("ratelimit-limit", 3600.into());
    h.insert("ratelimit-remaining", 0.into());
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + u64::from(secs);
    h.insert("ratelimit-reset", reset.into());
    r
}

/// Starts the stand-in with one primary zone `zone` (no trailing dot, default TTL 3600) holding
/// `rrsets` (`(name, type, ttl, values)`, names relative).
pub async fn start(
    token: &str,
    zone: &str,
    rrsets: &[(&str, &str, Option<u32>, &[&str])],
) -> HetznerStandIn {
    let mut state = HetznerState {
        polls_to_finish: 2,
        next_action: 1,
        ..HetznerState::default()
    };
    state.zones.insert(
        zone.to_string(),
        Zone {
            id: 4711,
            mode: "primary".into(),
            ttl: 3600,
            rrsets: rrsets
                .iter()
                .map(|(n, t, ttl, v)| {
                    (
                        (n.to_string(), t.to_string()),
                        Rrset {
                            ttl: *ttl,
                            records: v.iter().map(|s| s.to_string()).collect(),
                        },
                    )
                })
                .collect(),
        },
    );
    let routes = axum::Router::new()
        .route("/v1/zones/{zone}", get(get_zone))
        .route("/v1/zones/{zone}/rrsets", post(create_rrset))
        .route(
            "/v1/zones/{zone}/rrsets/{name}/{rtype}",
            get(get_rrset).delete(delete_rrset),
        )
        .route(
            "/v1/zones/{zone}/rrsets/{name}/{rtype}/actions/{action}",
            post(rrset_action),
        )
        .route("/v1/zones/actions/{id}", get(get_action));
    StandIn::start(
        GateSpec {
            scheme: "Bearer",
            unauthorized,
            throttled,
        },
        token,
        "/v1",
        state,
        routes,
        zone,
        served,
    )
    .await
}

/// What the zones' name servers serve: every A and AAAA RRset, a set without its own TTL at
/// the zone's default.
fn served(st: &HetznerState) -> Vec<coordinator::dns::RecordSet> {
    record_sets(st.zones.iter().flat_map(|(zone, z)| {
        z.rrsets.iter().flat_map(move |((name, rtype), r)| {
            r.records.iter().map(move |v| {
                (
                    owner(name, zone),
                    rtype.as_str(),
                    r.ttl.unwrap_or(z.ttl),
                    v.as_str(),
                )
            })
        })
    }))
}

fn zone_json(name: &str, z: &Zone) -> Value {
    json!({
        "id": z.id, "name": name, "mode": z.mode, "ttl": z.ttl, "status": "ok",
        "record_count": z.rrsets.len(), "protection": { "delete": false }, "labels": {},
    })
}

fn rrset_json(z: &Zone, name: &str, rtype: &str, r: &Rrset) -> Value {
    let records: Vec<Value> = r
        .records
        .iter()
        .map(|v| json!({ "value": v, "comment": null }))
        .collect();
    json!({
        "id": format!("{name}/{rtype}"), "name": name, "type": rtype, "ttl": r.ttl,
        "records": records, "zone": z.id, "labels": {}, "protection": { "change": false },
    })
}

fn action_json(id: u64, a: &Action) -> Value {
    let status = if a.polls_left > 0 {
        "running"
    } else if a.fail {
        "error"
    } else {
        "success"
    };
    let error = if status == "error" {
        json!({ "code": "action_failed", "message": "Action failed" })
    } else {
        Value::Null
    };
    json!({
        "id": id, "command": a.command, "status": status,
        "progress": if status == "running" { 0 } else { 100 },
        "started": "2026-12-02T17:00:00+00:00",
        "finished": if status == "running" { Value::Null } else { json!("2026-12-02T17:00:01+00:00") },
        "resources": [], "error": error,
    })
}

fn apply(s: &mut HetznerState, effect: Effect) {
    match effect {
        Effect::Put(zone, key, rrset) => {
            if let Some(z) = s.zones.get_mut(&zone) {
                z.rrsets.insert(key, rrset);
            }
        }
        Effect::Ttl(zone, key, ttl) => {
            if let Some(r) = s.zones.get_mut(&zone).and_then(|z| z.rrsets.get_mut(&key)) {
                r.ttl = Some(ttl);
            }
        }
        Effect::Delete(zone, key) => {
            if let Some(z) = s.zones.get_mut(&zone) {
                z.rrsets.remove(&key);
            }
        }
    }
}

/// Starts an action that will do `effect` when it succeeds.
fn start_action(s: &mut HetznerState, command: &str, effect: Effect) -> (u64, Value) {
    let id = s.next_action;
    s.next_action += 1;
    let fail = std::mem::take(&mut s.fail_next_action);
    let mut a = Action {
        command: command.into(),
        polls_left: s.polls_to_finish,
        fail,
        effect: Some(effect),
    };
    if a.polls_left == 0
        && !a.fail
        && let Some(e) = a.effect.take()
    {
        apply(s, e);
    }
    let j = action_json(id, &a);
    s.actions.insert(id, a);
    (id, j)
}

fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("{what} not found"),
    )
}

fn zone_key(s: &HetznerState, zone: &str) -> Option<String> {
    if s.zones.contains_key(zone) {
        return Some(zone.to_string());
    }
    s.zones
        .iter()
        .find(|(_, z)| z.id.to_string() == zone)
        .map(|(n, _)| n.clone())
}

/// Checks values against the type and the TTL against the minimum: 422 `invalid_input`.
fn invalid(rtype: &str, records: &[String], ttl: Option<u32>) -> Option<Response> {
    if let Some(t) = ttl
        && t < MIN_TTL
    {
        return Some(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            &format!("invalid input in field 'ttl': must be at least {MIN_TTL}"),
        ));
    }
    let ok = |v: &String| match rtype {
        "A" => v.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => v.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    };
    if let Some(bad) = records.iter().find(|v| !ok(v)) {
        return Some(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            &format!("invalid input in field 'records': {bad:?} is not a valid {rtype} value"),
        ));
    }
    None
}

fn values(body: &Value) -> Vec<String> {
    body.get("records")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("value").and_then(|v| v.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn get_zone(State(st): State<Shared<HetznerState>>, Path(zone): Path<String>) -> Response {
    let s = lock(&st);
    match zone_key(&s, &zone).and_then(|k| s.zones.get(&k).map(|z| (k.clone(), z))) {
        Some((name, z)) => json(StatusCode::OK, json!({ "zone": zone_json(&name, z) })),
        None => not_found("zone"),
    }
}

async fn get_rrset(
    State(st): State<Shared<HetznerState>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> Response {
    let s = lock(&st);
    let Some(z) = zone_key(&s, &zone).and_then(|k| s.zones.get(&k)) else {
        return not_found("zone");
    };
    match z.rrsets.get(&(name.clone(), rtype.clone())) {
        Some(r) => json(
            StatusCode::OK,
            json!({ "rrset": rrset_json(z, &name, &rtype, r) }),
        ),
        None => not_found("rrset"),
    }
}

async fn create_rrset(
    State(st): State<Shared<HetznerState>>,
    Path(zone): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = lock(&st);
    let Some(zname) = zone_key(&s, &zone) else {
        return not_found("zone");
    };
    let name = body["name"].as_str().unwrap_or_default().to_string();
    let rtype = body["type"].as_str().unwrap_or_default().to_string();
    let ttl = body["ttl"].as_u64().map(|t| t as u32);
    let records = values(&body);
    if name.is_empty() || rtype.is_empty() || records.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            "name, type and records are required",
        );
    }
    if let Some(r) = invalid(&rtype, &records, ttl) {
        return r;
    }
    let key = (name.clone(), rtype.clone());
    if s.zones[&zname].rrsets.contains_key(&key) {
        return error(
            StatusCode::CONFLICT,
            "uniqueness_error",
            "rrset already exists",
        );
    }
    let rrset = Rrset { ttl, records };
    let (_, action) = start_action(
        &mut s,
        "create_rrset",
        Effect::Put(zname.clone(), key, rrset.clone()),
    );
    let z = &s.zones[&zname];
    json(
        StatusCode::CREATED,
        json!({ "rrset": rrset_json(z, &name, &rtype, &rrset), "action": action }),
    )
}

async fn delete_rrset(
    State(st): State<Shared<HetznerState>>,
    Path((zone, name, rtype)): Path<(String, String, String)>,
) -> Response {
    let mut s = lock(&st);
    let Some(zname) = zone_key(&s, &zone) else {
        return not_found("zone");
    };
    let key = (name, rtype);
    if !s.zones[&zname].rrsets.contains_key(&key) {
        return not_found("rrset");
    }
    let (_, action) = start_action(&mut s, "delete_rrset", Effect::Delete(zname, key));
    json(StatusCode::CREATED, json!({ "action": action }))
}

async fn rrset_action(
    State(st): State<Shared<HetznerState>>,
    Path((zone, name, rtype, action)): Path<(String, String, String, String)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = lock(&st);
    let Some(zname) = zone_key(&s, &zone) else {
        return not_found("zone");
    };
    let key = (name, rtype.clone());
    let Some(current) = s.zones[&zname].rrsets.get(&key).cloned() else {
        return not_found("rrset");
    };
    let (command, effect) = match action.as_str() {
        "set_records" => {
            let records = values(&body);
            if records.is_empty() {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_input",
                    "records must not be empty",
                );
            }
            if let Some(r) = invalid(&rtype, &records, None) {
                return r;
            }
            (
                "set_rrset_records",
                Effect::Put(
                    zname,
                    key,
                    Rrset {
                        ttl: current.ttl,
                        records,
                    },
                ),
            )
        }
        "change_ttl" => {
            let ttl = body["ttl"].as_u64().map(|t| t as u32);
            if let Some(r) = invalid(&rtype, &[], ttl) {
                return r;
            }
            match ttl {
                Some(t) => ("change_rrset_ttl", Effect::Ttl(zname, key, t)),
                None => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_input",
                        "ttl is required",
                    );
                }
            }
        }
        _ => return not_found("action"),
    };
    let (_, action) = start_action(&mut s, command, effect);
    json(StatusCode::CREATED, json!({ "action": action }))
}

async fn get_action(State(st): State<Shared<HetznerState>>, Path(id): Path<u64>) -> Response {
    let mut s = lock(&st);
    let Some(mut a) = s.actions.get(&id).cloned() else {
        return not_found("action");
    };
    if a.polls_left > 0 {
        a.polls_left -= 1;
        if a.polls_left == 0
            && !a.fail
            && let Some(e) = a.effect.take()
        {
            apply(&mut s, e);
        }
    }
    let j = action_json(id, &a);
    s.actions.insert(id, a);
    (StatusCode::OK, axum::Json(json!({ "action": j }))).into_response()
}
