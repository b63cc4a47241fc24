//! A stand-in for DigitalOcean's Domains API, following
//! https://docs.digitalocean.com/reference/api/digitalocean/#tag/Domain-Records (and
//! `#tag/Domains`):
//! - `GET /v2/domains/{domain}` → `{"domain": {name, ttl, zone_file}}`, 404 `not_found`;
//! - `GET /v2/domains/{domain}/records` with `type`, `name` (the full name, e.g.
//!   `www.example.com`), `page`, `per_page` → `{"domain_records": [{id, type, name, data,
//!   ttl, …}], "links": {}, "meta": {"total"}}`, `name` relative (`@` for the apex);
//! - `POST /v2/domains/{domain}/records` → 201 `{"domain_record": …}`;
//!   `PUT /v2/domains/{domain}/records/{id}` → 200; `DELETE …/{id}` → 204; an unknown id → 404;
//! - errors `{"id", "message"}`: 401 `unauthorized`, 404 `not_found`, 422
//!   `unprocessable_entity` (TTL under 30 s, data that is not an address of the type), 429
//!   `too_many_requests` with `ratelimit-limit`/`-remaining`/`-reset` (no `Retry-After`).
//!
//! Records are one by one: nothing groups them into RRsets and nothing makes two requests one.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, put};
use serde_json::{Value, json};

use crate::standin::{GateSpec, Shared, StandIn, json, lock};
use crate::zone_dns::{owner, record_sets};

/// The smallest TTL the API accepts.
pub const MIN_TTL: u32 = 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub rtype: String,
    /// Relative, `@` for the apex.
    pub name: String,
    pub data: String,
    pub ttl: u32,
}

#[derive(Clone, Debug)]
pub struct Domain {
    pub ttl: u32,
    pub records: Vec<Record>,
}

#[derive(Debug, Default)]
pub struct DoState {
    /// By name (no trailing dot).
    pub domains: BTreeMap<String, Domain>,
    pub next_id: u64,
    /// Someone deletes the record the next `PUT`/`DELETE` by id is about, just before it
    /// arrives (a race with a hand edit): that request then finds no record (404).
    pub vanish_before_next_write: bool,
}

impl DoState {
    /// The records of `name` and `type` in `domain`.
    pub fn records(&self, domain: &str, name: &str, rtype: &str) -> Vec<Record> {
        self.domains
            .get(domain)
            .map(|d| {
                d.records
                    .iter()
                    .filter(|r| r.name == name && r.rtype == rtype)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub type DigitalOceanStandIn = StandIn<DoState>;

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    json(
        status,
        json!({ "id": id, "message": message, "request_id": "standin" }),
    )
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unable to authenticate you.",
    )
}

fn throttled(secs: u32) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "API Rate limit exceeded.",
    );
    let h = r.headers_mut();
    h.insert("ratelimit-limit", 5000.into());
    h.insert("ratelimit-remaining", 0.into());
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        + u64::from(secs);
    h.insert("ratelimit-reset", reset.into());
    r
}

/// Starts the stand-in with `domain` (no trailing dot) holding `records` (`(name, type, ttl,
/// data)`, names relative).
pub async fn start(
    token: &str,
    domain: &str,
    records: &[(&str, &str, u32, &str)],
) -> DigitalOceanStandIn {
    let mut state = DoState {
        next_id: 1000,
        ..DoState::default()
    };
    let mut d = Domain {
        ttl: 1800,
        records: Vec::new(),
    };
    for (n, t, ttl, data) in records {
        state.next_id += 1;
        d.records.push(Record {
            id: state.next_id,
            rtype: t.to_string(),
            name: n.to_string(),
            data: data.to_string(),
            ttl: *ttl,
        });
    }
    state.domains.insert(domain.to_string(), d);
    let routes = axum::Router::new()
        .route("/v2/domains/{domain}", get(get_domain))
        .route(
            "/v2/domains/{domain}/records",
            get(list_records).post(create_record),
        )
        .route(
            "/v2/domains/{domain}/records/{id}",
            put(update_record).delete(delete_record),
        );
    StandIn::start(
        GateSpec {
            scheme: "Bearer",
            unauthorized,
            throttled,
        },
        token,
        "/v2",
        state,
        routes,
        domain,
        served,
    )
    .await
}

/// What the domains' name servers serve: every A and AAAA record, one RRset per name and type.
fn served(st: &DoState) -> Vec<coordinator::dns::RecordSet> {
    record_sets(st.domains.iter().flat_map(|(domain, d)| {
        d.records.iter().map(move |r| {
            (
                owner(&r.name, domain),
                r.rtype.as_str(),
                r.ttl,
                r.data.as_str(),
            )
        })
    }))
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you were accessing could not be found.",
    )
}

fn record_json(r: &Record) -> Value {
    json!({
        "id": r.id, "type": r.rtype, "name": r.name, "data": r.data, "priority": null,
        "port": null, "ttl": r.ttl, "weight": null, "flags": null, "tag": null,
    })
}

async fn get_domain(State(st): State<Shared<DoState>>, Path(domain): Path<String>) -> Response {
    let s = lock(&st);
    match s.domains.get(&domain) {
        Some(d) => json(
            StatusCode::OK,
            json!({ "domain": { "name": domain, "ttl": d.ttl, "zone_file": "" } }),
        ),
        None => not_found(),
    }
}

async fn list_records(
    State(st): State<Shared<DoState>>,
    Path(domain): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let s = lock(&st);
    let Some(d) = s.domains.get(&domain) else {
        return not_found();
    };
    let per_page: usize = q
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(20)
        .min(200);
    // `name` is the full name; records hold it relative.
    let want_name = q.get("name").map(|n| {
        let n = n.trim_end_matches('.');
        if n == domain {
            "@".to_string()
        } else {
            n.strip_suffix(&format!(".{domain}"))
                .unwrap_or(n)
                .to_string()
        }
    });
    let all: Vec<&Record> = d
        .records
        .iter()
        .filter(|r| q.get("type").is_none_or(|t| &r.rtype == t))
        .filter(|r| want_name.as_ref().is_none_or(|n| &r.name == n))
        .collect();
    let page: Vec<Value> = all.iter().take(per_page).map(|r| record_json(r)).collect();
    json(
        StatusCode::OK,
        json!({ "domain_records": page, "links": {}, "meta": { "total": all.len() } }),
    )
}

/// The record a POST or PUT body describes, checked: `(type, name, data, ttl)`.
fn parse(body: &Value, default_ttl: u32) -> Result<(String, String, String, u32), Box<Response>> {
    let field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(rtype), Some(name), Some(data)) = (field("type"), field("name"), field("data"))
    else {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            "type, name and data are required",
        )));
    };
    let ttl = body
        .get("ttl")
        .and_then(|t| t.as_u64())
        .map_or(default_ttl, |t| t as u32);
    if ttl < MIN_TTL {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            &format!("TTL must be at least {MIN_TTL}."),
        )));
    }
    let ok = match rtype.as_str() {
        "A" => data.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => data.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    };
    if !ok {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            &format!("Data needs to be a valid {rtype} address."),
        )));
    }
    Ok((rtype, name, data, ttl))
}

async fn create_record(
    State(st): State<Shared<DoState>>,
    Path(domain): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = lock(&st);
    let Some(default_ttl) = s.domains.get(&domain).map(|d| d.ttl) else {
        return not_found();
    };
    let (rtype, name, data, ttl) = match parse(&body, default_ttl) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    s.next_id += 1;
    let r = Record {
        id: s.next_id,
        rtype,
        name,
        data,
        ttl,
    };
    let j = record_json(&r);
    if let Some(d) = s.domains.get_mut(&domain) {
        d.records.push(r);
    }
    json(StatusCode::CREATED, json!({ "domain_record": j }))
}

async fn update_record(
    State(st): State<Shared<DoState>>,
    Path((domain, id)): Path<(String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = lock(&st);
    let vanish = std::mem::take(&mut s.vanish_before_next_write);
    let Some(d) = s.domains.get_mut(&domain) else {
        return not_found();
    };
    if vanish {
        d.records.retain(|r| r.id != id);
    }
    let Some(r) = d.records.iter_mut().find(|r| r.id == id) else {
        return not_found();
    };
    let (rtype, name, data, ttl) = match parse(&body, r.ttl) {
        Ok(x) => x,
        Err(e) => return *e,
    };
    *r = Record {
        id,
        rtype,
        name,
        data,
        ttl,
    };
    json(StatusCode::OK, json!({ "domain_record": record_json(r) }))
}

async fn delete_record(
    State(st): State<Shared<DoState>>,
    Path((domain, id)): Path<(String, u64)>,
) -> Response {
    let mut s = lock(&st);
    let vanish = std::mem::take(&mut s.vanish_before_next_write);
    let Some(d) = s.domains.get_mut(&domain) else {
        return not_found();
    };
    if vanish {
        d.records.retain(|r| r.id != id);
    }
    let before = d.records.len();
    d.records.retain(|r| r.id != id);
    if d.records.len() == before {
        return not_found();
    }
    axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT)
}
