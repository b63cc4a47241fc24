//! A stand-in for the deSEC API, following https://desec.readthedocs.io/en/latest/dns/rrsets.html
//! (RRsets, bulk operations) and `…/dns/domains.html`, `…/auth/tokens.html`,
//! `…/rate-limits.html`:
//! - `Authorization: Token <token>`; 401 `{"detail": "Invalid token."}`;
//! - `GET /api/v1/domains/{name}/` → `{name, minimum_ttl, published, …}`, 404
//!   `{"detail": "Not found."}`;
//! - `GET /api/v1/domains/{name}/rrsets/` with optional `subname` and `type` filters → a
//!   list of `{domain, subname, name, type, records, ttl, touched}` (`subname` empty at the
//!   apex);
//! - bulk `PUT /api/v1/domains/{name}/rrsets/` with a list of `{subname, type, ttl, records}`
//!   (every field required): all RRsets replaced in one transaction, `records: []` deletes one;
//!   any invalid item → 400 with a list of per-item errors (`{}` for the good ones) and nothing
//!   changed. A TTL under the domain's `minimum_ttl` (3600 s by default) is invalid:
//!   `{"ttl": ["Ensure this value is greater than or equal to 3600."]}`;
//! - throttling → 429 `{"detail": "Request was throttled. Expected available in N seconds."}`
//!   with `Retry-After: N`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::standin::{GateSpec, Shared, StandIn, json, lock};
use crate::zone_dns::{owner, record_sets};

/// deSEC's default minimum TTL.
pub const DEFAULT_MINIMUM_TTL: u32 = 3600;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rrset {
    pub ttl: u32,
    pub records: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Domain {
    pub minimum_ttl: u32,
    /// By (subname, type); the apex's subname is empty.
    pub rrsets: BTreeMap<(String, String), Rrset>,
    /// Bulk writes applied (one per accepted PUT).
    pub transactions: u32,
}

#[derive(Debug, Default)]
pub struct DesecState {
    pub domains: BTreeMap<String, Domain>,
}

impl DesecState {
    pub fn rrset(&self, domain: &str, subname: &str, rtype: &str) -> Option<Rrset> {
        self.domains.get(domain).and_then(|d| {
            d.rrsets
                .get(&(subname.to_string(), rtype.to_string()))
                .cloned()
        })
    }
}

pub type DesecStandIn = StandIn<DesecState>;

fn detail(status: StatusCode, text: &str) -> Response {
    json(status, json!({ "detail": text }))
}

fn unauthorized() -> Response {
    detail(StatusCode::UNAUTHORIZED, "Invalid token.")
}

fn throttled(secs: u32) -> Response {
    let mut r = detail(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("Request was throttled. Expected available in {secs} second."),
    );
    r.headers_mut().insert("retry-after", secs.into());
    r
}

/// Starts the stand-in with `domain` (no trailing dot, `minimum_ttl`) holding `rrsets`
/// (`(subname, type, ttl, records)`).
pub async fn start(
    token: &str,
    domain: &str,
    minimum_ttl: u32,
    rrsets: &[(&str, &str, u32, &[&str])],
) -> DesecStandIn {
    let mut state = DesecState::default();
    state.domains.insert(
        domain.to_string(),
        Domain {
            minimum_ttl,
            transactions: 0,
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
        .route("/api/v1/domains/{name}/", get(get_domain))
        .route(
            "/api/v1/domains/{name}/rrsets/",
            get(list_rrsets).put(bulk_put),
        );
    StandIn::start(
        GateSpec {
            scheme: "Token",
            unauthorized,
            throttled,
        },
        token,
        "/api/v1",
        state,
        routes,
        domain,
        served,
    )
    .await
}

/// What the domains' name servers serve: every A and AAAA RRset.
fn served(st: &DesecState) -> Vec<coordinator::dns::RecordSet> {
    record_sets(st.domains.iter().flat_map(|(domain, d)| {
        d.rrsets.iter().flat_map(move |((subname, rtype), r)| {
            r.records
                .iter()
                .map(move |v| (owner(subname, domain), rtype.as_str(), r.ttl, v.as_str()))
        })
    }))
}

fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

async fn get_domain(State(st): State<Shared<DesecState>>, Path(name): Path<String>) -> Response {
    let s = lock(&st);
    match s.domains.get(&name) {
        Some(d) => json(
            StatusCode::OK,
            json!({
                "name": name, "minimum_ttl": d.minimum_ttl, "published": "2026-12-02T17:00:00Z",
                "created": "2026-01-01T00:00:00Z", "touched": "2026-12-02T17:00:00Z",
            }),
        ),
        None => not_found(),
    }
}

fn rrset_json(domain: &str, subname: &str, rtype: &str, r: &Rrset) -> Value {
    let name = if subname.is_empty() {
        format!("{domain}.")
    } else {
        format!("{subname}.{domain}.")
    };
    json!({
        "domain": domain, "subname": subname, "name": name, "type": rtype,
        "records": r.records, "ttl": r.ttl, "touched": "2026-12-02T17:00:00Z",
    })
}

async fn list_rrsets(
    State(st): State<Shared<DesecState>>,
    Path(name): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let s = lock(&st);
    let Some(d) = s.domains.get(&name) else {
        return not_found();
    };
    let list: Vec<Value> = d
        .rrsets
        .iter()
        .filter(|((sub, _), _)| q.get("subname").is_none_or(|w| w == sub))
        .filter(|((_, t), _)| q.get("type").is_none_or(|w| w == t))
        .map(|((sub, t), r)| rrset_json(&name, sub, t, r))
        .collect();
    json(StatusCode::OK, Value::Array(list))
}

/// An RRset with its key (subname, type).
type Keyed = ((String, String), Rrset);

/// One bulk item checked: `Ok((key, rrset))` or the item's error object.
fn item(v: &Value, minimum_ttl: u32) -> Result<Keyed, Value> {
    let mut err = serde_json::Map::new();
    let subname = v.get("subname").and_then(|s| s.as_str());
    let rtype = v.get("type").and_then(|s| s.as_str());
    let ttl = v.get("ttl").and_then(|s| s.as_u64());
    let records: Option<Vec<String>> = v.get("records").and_then(|r| r.as_array()).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    });
    for (k, present) in [
        ("subname", subname.is_some()),
        ("type", rtype.is_some()),
        ("ttl", ttl.is_some()),
        ("records", records.is_some()),
    ] {
        if !present {
            err.insert(k.into(), json!(["This field is required."]));
        }
    }
    if let Some(t) = ttl
        && t < u64::from(minimum_ttl)
    {
        err.insert(
            "ttl".into(),
            json!([format!(
                "Ensure this value is greater than or equal to {minimum_ttl}."
            )]),
        );
    }
    if let (Some(t), Some(recs)) = (rtype, &records) {
        let ok = |r: &String| match t {
            "A" => r.parse::<std::net::Ipv4Addr>().is_ok(),
            "AAAA" => r.parse::<std::net::Ipv6Addr>().is_ok(),
            _ => true,
        };
        if let Some(bad) = recs.iter().find(|r| !ok(r)) {
            err.insert(
                "records".into(),
                json!([format!("Record content for type {t} malformed: {bad}")]),
            );
        }
    }
    if !err.is_empty() {
        return Err(Value::Object(err));
    }
    Ok((
        (
            subname.unwrap_or_default().to_string(),
            rtype.unwrap_or_default().to_string(),
        ),
        Rrset {
            ttl: ttl.unwrap_or_default() as u32,
            records: records.unwrap_or_default(),
        },
    ))
}

async fn bulk_put(
    State(st): State<Shared<DesecState>>,
    Path(name): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = lock(&st);
    let Some(d) = s.domains.get_mut(&name) else {
        return not_found();
    };
    let Some(items) = body.as_array() else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({ "non_field_errors": ["Expected a list of items."] }),
        );
    };
    let checked: Vec<Result<Keyed, Value>> = items.iter().map(|v| item(v, d.minimum_ttl)).collect();
    if checked.iter().any(|c| c.is_err()) {
        let errors: Vec<Value> = checked
            .iter()
            .map(|c| c.as_ref().err().cloned().unwrap_or_else(|| json!({})))
            .collect();
        return json(StatusCode::BAD_REQUEST, Value::Array(errors));
    }
    let mut out = Vec::new();
    for (key, rrset) in checked.into_iter().flatten() {
        if rrset.records.is_empty() {
            d.rrsets.remove(&key);
        } else {
            out.push(rrset_json(&name, &key.0, &key.1, &rrset));
            d.rrsets.insert(key, rrset);
        }
    }
    d.transactions += 1;
    json(StatusCode::OK, Value::Array(out))
}
