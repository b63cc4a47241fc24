//! A stand-in for Gandi's LiveDNS API, following https://api.gandi.net/docs/livedns/
//! (domains, "records" by name and type) and https://api.gandi.net/docs/authentication/
//! (personal access tokens as `Authorization: Bearer`):
//! - `GET /v5/livedns/domains/{fqdn}` → `{fqdn, automatic_snapshots, domain_href, …}`, 404;
//! - `GET /v5/livedns/domains/{fqdn}/records/{name}/{type}` → `{rrset_name, rrset_type,
//!   rrset_ttl, rrset_values, rrset_href}`, 404 when there is no such RRset (`@` = apex);
//! - `PUT` on that URL (`rrset_values`, `rrset_ttl`) replaces the RRset → 201 `{"message":
//!   "DNS Record Created"}`; `DELETE` → 204;
//! - errors `{code, message, object, cause}`: 401 `HTTPUnauthorized`, 404 `HTTPNotFound`, 400
//!   with `errors: [{location, name, description}]` (TTL under 300 s or over 2592000 s, a value
//!   that is not an address of the type), 429 with `Retry-After`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::standin::{GateSpec, Shared, StandIn, json, lock};
use crate::zone_dns::{owner, record_sets};

/// The smallest TTL LiveDNS accepts.
pub const MIN_TTL: u32 = 300;
/// The largest (30 days).
pub const MAX_TTL: u32 = 2_592_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rrset {
    pub ttl: u32,
    pub values: Vec<String>,
}

#[derive(Debug, Default)]
pub struct GandiState {
    /// By fqdn (no trailing dot), then by (relative name, type).
    pub domains: BTreeMap<String, BTreeMap<(String, String), Rrset>>,
}

impl GandiState {
    pub fn rrset(&self, domain: &str, name: &str, rtype: &str) -> Option<Rrset> {
        self.domains
            .get(domain)
            .and_then(|d| d.get(&(name.to_string(), rtype.to_string())).cloned())
    }
}

pub type GandiStandIn = StandIn<GandiState>;

fn error(status: StatusCode, object: &str, message: &str) -> Response {
    json(
        status,
        json!({
            "code": status.as_u16(), "message": message, "object": object,
            "cause": status.canonical_reason().unwrap_or_default(),
        }),
    )
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "HTTPUnauthorized",
        "The server could not verify that you authenticated successfully",
    )
}

fn throttled(secs: u32) -> Response {
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "HTTPTooManyRequests",
        "Too many requests",
    );
    r.headers_mut().insert("retry-after", secs.into());
    r
}

/// Starts the stand-in with `domain` (no trailing dot) holding `rrsets` (`(name, type, ttl,
/// values)`, names relative).
pub async fn start(
    token: &str,
    domain: &str,
    rrsets: &[(&str, &str, u32, &[&str])],
) -> GandiStandIn {
    let mut state = GandiState::default();
    state.domains.insert(
        domain.to_string(),
        rrsets
            .iter()
            .map(|(n, t, ttl, v)| {
                (
                    (n.to_string(), t.to_string()),
                    Rrset {
                        ttl: *ttl,
                        values: v.iter().map(|s| s.to_string()).collect(),
                    },
                )
            })
            .collect(),
    );
    let routes = axum::Router::new()
        .route("/v5/livedns/domains/{fqdn}", get(get_domain))
        .route(
            "/v5/livedns/domains/{fqdn}/records/{name}/{rtype}",
            get(get_rrset).put(put_rrset).delete(delete_rrset),
        );
    StandIn::start(
        GateSpec {
            scheme: "Bearer",
            unauthorized,
            throttled,
        },
        token,
        "/v5",
        state,
        routes,
        domain,
        served,
    )
    .await
}

/// What the domains' name servers serve: every A and AAAA RRset.
fn served(st: &GandiState) -> Vec<coordinator::dns::RecordSet> {
    record_sets(st.domains.iter().flat_map(|(domain, rrsets)| {
        rrsets.iter().flat_map(move |((name, rtype), r)| {
            r.values
                .iter()
                .map(move |v| (owner(name, domain), rtype.as_str(), r.ttl, v.as_str()))
        })
    }))
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "HTTPNotFound",
        "The resource could not be found.",
    )
}

async fn get_domain(State(st): State<Shared<GandiState>>, Path(fqdn): Path<String>) -> Response {
    if !lock(&st).domains.contains_key(&fqdn) {
        return not_found();
    }
    json(
        StatusCode::OK,
        json!({
            "fqdn": fqdn, "automatic_snapshots": true,
            "domain_href": format!("https://api.gandi.net/v5/livedns/domains/{fqdn}"),
            "domain_records_href": format!("https://api.gandi.net/v5/livedns/domains/{fqdn}/records"),
        }),
    )
}

async fn get_rrset(
    State(st): State<Shared<GandiState>>,
    Path((fqdn, name, rtype)): Path<(String, String, String)>,
) -> Response {
    let s = lock(&st);
    let Some(d) = s.domains.get(&fqdn) else {
        return not_found();
    };
    match d.get(&(name.clone(), rtype.clone())) {
        Some(r) => json(
            StatusCode::OK,
            json!({
                "rrset_name": name, "rrset_type": rtype, "rrset_ttl": r.ttl,
                "rrset_values": r.values,
                "rrset_href": format!("https://api.gandi.net/v5/livedns/domains/{fqdn}/records/{name}/{rtype}"),
            }),
        ),
        None => not_found(),
    }
}

fn bad_request(name: &str, description: &str) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        json!({
            "code": 400, "message": "Validation error", "object": "HTTPBadRequest",
            "cause": "Bad Request",
            "errors": [{ "location": "body", "name": name, "description": description }],
        }),
    )
}

async fn put_rrset(
    State(st): State<Shared<GandiState>>,
    Path((fqdn, name, rtype)): Path<(String, String, String)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut s = lock(&st);
    let Some(d) = s.domains.get_mut(&fqdn) else {
        return not_found();
    };
    let ttl = body
        .get("rrset_ttl")
        .and_then(|t| t.as_u64())
        .unwrap_or(10_800) as u32;
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return bad_request(
            "rrset_ttl",
            &format!("{ttl} is not in the range {MIN_TTL}-{MAX_TTL}"),
        );
    }
    let values: Vec<String> = body
        .get("rrset_values")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if values.is_empty() {
        return bad_request("rrset_values", "Shorter than minimum length 1");
    }
    let ok = |v: &String| match rtype.as_str() {
        "A" => v.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => v.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    };
    if let Some(bad) = values.iter().find(|v| !ok(v)) {
        return bad_request(
            "rrset_values",
            &format!("{bad} is not a valid {rtype} value"),
        );
    }
    d.insert((name, rtype), Rrset { ttl, values });
    json(
        StatusCode::CREATED,
        json!({ "message": "DNS Record Created" }),
    )
}

async fn delete_rrset(
    State(st): State<Shared<GandiState>>,
    Path((fqdn, name, rtype)): Path<(String, String, String)>,
) -> Response {
    let mut s = lock(&st);
    let Some(d) = s.domains.get_mut(&fqdn) else {
        return not_found();
    };
    match d.remove(&(name, rtype)) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(),
    }
}
