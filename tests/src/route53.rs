//! A stateful stand-in for the parts of Amazon Route 53's REST API (2013-04-01) that Quorate
//! calls, on plain HTTP on loopback. moto's server checks SigV4 but not the change-batch rules
//! (a stale DELETE and a CREATE over an existing set both pass there), so conditional writes
//! need this one. It follows:
//! - <https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html>:
//!   `POST /2013-04-01/hostedzone/{Id}/rrset` with a `ChangeBatch` of `CREATE` / `DELETE` /
//!   `UPSERT`, applied all or nothing; a DELETE must match the set exactly (values and TTL)
//!   ("Tried to delete resource record set [...] but the values provided do not match the
//!   current values" / "but it was not found"), a CREATE must not find the set ("but it
//!   already exists"); every failure is listed in one `InvalidChangeBatch` (HTTP 400); the
//!   answer is a `ChangeInfo` with `Status` `PENDING`;
//! - <https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html>:
//!   `GET /2013-04-01/change/{Id}` answers `PENDING` for a few calls, then `INSYNC`;
//! - `API_ListResourceRecordSets.html` (`name`, `type`, `maxitems`; sets ordered by name with
//!   labels reversed, then type; `IsTruncated`) and `API_GetHostedZone.html`;
//! - the common errors: a request without a SigV4 `Authorization` header gets 403
//!   `MissingAuthenticationToken`, an unknown key id 403 `InvalidClientTokenId`, a wrong
//!   signature 403 `SignatureDoesNotMatch` (the stand-in VERIFIES the signature: it signs the
//!   same request again with `aws-sigv4` and the known secret, at the request's `X-Amz-Date`);
//!   throttling is 400 `Throttling` ("Rate exceeded"), here with `Retry-After`, switched on by a
//!   test ([`Route53StandIn::throttle`]).
//! - TTL: Route 53 takes 0 to 2147483647 s (no minimum to enforce).
//!
//! The hosted zones' A and AAAA record sets are served over DNS by two name servers
//! ([`ZoneDns`]) as the state holds them at each query (a committed batch is served at once;
//! real Route 53 reaches its servers by `INSYNC`, which the backend waits for anyway).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use quick_xml::escape::escape;
use serde::Deserialize;

use crate::zone_dns::{ZoneDns, record_sets};

const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// One record set (simple routing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct R53Set {
    /// Lower case, with the trailing dot.
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub values: Vec<String>,
}

impl R53Set {
    pub fn new(name: &str, rtype: &str, ttl: u32, values: &[&str]) -> R53Set {
        R53Set {
            name: norm(name),
            rtype: rtype.into(),
            ttl,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }
}

pub type ChangeHook = Box<dyn FnOnce(&mut R53State) + Send>;

#[derive(Default)]
pub struct R53State {
    /// Hosted zone id → (name, record sets).
    pub zones: BTreeMap<String, (String, Vec<R53Set>)>,
    /// Change id → GetChange calls still answered PENDING.
    pub changes: BTreeMap<String, u32>,
    /// How many GetChange calls a new change stays PENDING for.
    pub insync_after: u32,
    /// Change batches applied (committed).
    pub batches_applied: u32,
    pub get_change_calls: u32,
    /// How many of the next requests are throttled, and the `Retry-After` they carry.
    pub throttle: u32,
    pub retry_after: u64,
    /// Every request: `METHOD path?query`.
    pub requests: Vec<String>,
    /// Run inside the next change request, before it is applied.
    pub before_next_change: Option<ChangeHook>,
}

impl R53State {
    pub fn set_mut(&mut self, zone_id: &str, name: &str, rtype: &str) -> Option<&mut R53Set> {
        let name = norm(name);
        self.zones
            .get_mut(zone_id)?
            .1
            .iter_mut()
            .find(|s| s.name == name && s.rtype == rtype)
    }

    pub fn set(&self, zone_id: &str, name: &str, rtype: &str) -> Option<R53Set> {
        let name = norm(name);
        self.zones
            .get(zone_id)?
            .1
            .iter()
            .find(|s| s.name == name && s.rtype == rtype)
            .cloned()
    }
}

struct Shared {
    access_key_id: String,
    secret_access_key: String,
    state: Mutex<R53State>,
}

pub struct Route53StandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    dns: ZoneDns,
}

/// What the hosted zones' name servers serve: every A and AAAA record set.
fn served(shared: &Shared) -> Vec<coordinator::dns::RecordSet> {
    let s = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    record_sets(s.zones.values().flat_map(|(_, sets)| {
        sets.iter().flat_map(|set| {
            set.values
                .iter()
                .map(move |v| (set.name.clone(), set.rtype.as_str(), set.ttl, v.as_str()))
        })
    }))
}

fn norm(name: &str) -> String {
    let mut n = name.trim_end_matches('.').to_ascii_lowercase();
    n.push('.');
    n
}

impl Route53StandIn {
    /// Serves hosted zone `zone_id` named `zone` holding `sets`, for one access key.
    pub async fn start(
        access_key_id: &str,
        secret_access_key: &str,
        zone_id: &str,
        zone: &str,
        sets: Vec<R53Set>,
    ) -> Route53StandIn {
        let mut state = R53State {
            insync_after: 2,
            ..R53State::default()
        };
        state.zones.insert(zone_id.into(), (norm(zone), sets));
        let shared = Arc::new(Shared {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            state: Mutex::new(state),
        });
        let app = axum::Router::new()
            .fallback(handle)
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
        Route53StandIn {
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

    /// `http://127.0.0.1:<port>`, for `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with_state<T>(&self, f: impl FnOnce(&mut R53State) -> T) -> T {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// The next `n` requests are answered 400 `Throttling` with `Retry-After: <retry_after>`.
    pub fn throttle(&self, n: u32, retry_after: u64) {
        self.with_state(|s| {
            s.throttle = n;
            s.retry_after = retry_after;
        });
    }
}

impl Drop for Route53StandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml")],
        format!("<?xml version=\"1.0\"?>\n{body}"),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
            escape(message)
        ),
    )
}

/// `20261202T172000Z` → the time it names.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if s.len() != 16 || s.get(8..9) != Some("T") || !s.ends_with('Z') {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Checks the SigV4 `Authorization` header by signing the same request again with the known
/// secret; otherwise the error code and message of Route 53's 403.
fn verify_signature(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (&'static str, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let forbidden = |code: &'static str, msg: &str| Err((code, msg.to_string()));
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return forbidden("MissingAuthenticationToken", "Missing Authentication Token");
    };
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return forbidden(
            "IncompleteSignature",
            "Authorization header requires the AWS4-HMAC-SHA256 algorithm",
        );
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in fields.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed_headers = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return forbidden(
            "IncompleteSignature",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters",
        );
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[3] != "route53" || scope[4] != "aws4_request" {
        return forbidden(
            "IncompleteSignature",
            "Credential should be scoped to a valid region and to the route53 service",
        );
    }
    if scope[0] != shared.access_key_id {
        return forbidden(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    }
    let Some(time) = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_amz_date)
    else {
        return forbidden(
            "IncompleteSignature",
            "X-Amz-Date is missing or not like 20261202T172000Z",
        );
    };
    // The headers the client signed, less those the signer adds itself.
    let mut signable: Vec<(&str, &str)> = Vec::new();
    for name in signed_headers.split(';') {
        if matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        match headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(v) => signable.push((name, v)),
            None => {
                return forbidden(
                    "SignatureDoesNotMatch",
                    &format!("signed header {name} is missing"),
                );
            }
        }
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let identity = aws_credential_types::Credentials::new(
        &shared.access_key_id,
        &shared.secret_access_key,
        token,
        None,
        "stand-in",
    )
    .into();
    let Ok(params) = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(scope[2])
        .name("route53")
        .time(time)
        .settings(SigningSettings::default())
        .build()
    else {
        return forbidden(
            "IncompleteSignature",
            "cannot rebuild the signing parameters",
        );
    };
    let params = params.into();
    let url = format!("http://{host}{path}");
    let expected = SignableRequest::new(
        method.as_str(),
        url.as_str(),
        signable.into_iter(),
        SignableBody::Bytes(body),
    )
    .ok()
    .and_then(|r| sign(r, &params).ok())
    .map(|out| out.signature().to_string());
    if expected.as_deref() != Some(signature) {
        return forbidden(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        );
    }
    Ok(())
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = verify_signature(&shared, &method, &uri, &headers, &body);
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    state.requests.push(format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    ));
    if let Err((code, message)) = verified {
        return error(StatusCode::FORBIDDEN, code, &message);
    }
    if state.throttle > 0 {
        state.throttle -= 1;
        let mut r = error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded");
        if let Ok(v) = state.retry_after.to_string().parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), percent_decode(v)))
                .collect()
        })
        .unwrap_or_default();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["2013-04-01", "hostedzone", id]) => get_hosted_zone(&state, id),
        ("GET", ["2013-04-01", "hostedzone", id, "rrset"]) => list_sets(&state, id, &query),
        ("POST", ["2013-04-01", "hostedzone", id, "rrset"]) => {
            let id = id.to_string();
            if let Some(hook) = state.before_next_change.take() {
                hook(&mut state);
            }
            change_sets(&mut state, &id, &body)
        }
        ("GET", ["2013-04-01", "change", id]) => get_change(&mut state, id),
        _ => error(StatusCode::NOT_FOUND, "NotFound", "no such API"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn no_zone(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchHostedZone",
        &format!("No hosted zone found with ID: {id}"),
    )
}

fn get_hosted_zone(state: &R53State, id: &str) -> Response {
    let Some((name, sets)) = state.zones.get(id) else {
        return no_zone(id);
    };
    xml(
        StatusCode::OK,
        format!(
            "<GetHostedZoneResponse xmlns=\"{XMLNS}\"><HostedZone><Id>/hostedzone/{id}</Id><Name>{name}</Name><CallerReference>stand-in</CallerReference><Config><PrivateZone>false</PrivateZone></Config><ResourceRecordSetCount>{}</ResourceRecordSetCount></HostedZone><DelegationSet><NameServers><NameServer>ns-1.awsdns-00.com</NameServer></NameServers></DelegationSet></GetHostedZoneResponse>",
            sets.len()
        ),
    )
}

/// Route 53's listing order: name with labels reversed, then type.
fn order_key(name: &str, rtype: &str) -> (Vec<String>, String) {
    let mut labels: Vec<String> = name
        .trim_end_matches('.')
        .split('.')
        .map(str::to_string)
        .collect();
    labels.reverse();
    (labels, rtype.to_string())
}

fn set_xml(s: &R53Set) -> String {
    let records: String = s
        .values
        .iter()
        .map(|v| {
            format!(
                "<ResourceRecord><Value>{}</Value></ResourceRecord>",
                escape(v)
            )
        })
        .collect();
    format!(
        "<ResourceRecordSet><Name>{}</Name><Type>{}</Type><TTL>{}</TTL><ResourceRecords>{records}</ResourceRecords></ResourceRecordSet>",
        escape(&s.name),
        s.rtype,
        s.ttl
    )
}

fn list_sets(state: &R53State, id: &str, query: &[(String, String)]) -> Response {
    let Some((_, sets)) = state.zones.get(id) else {
        return no_zone(id);
    };
    let param = |k: &str| query.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone());
    let max: usize = param("maxitems")
        .and_then(|m| m.parse().ok())
        .unwrap_or(300);
    let start = param("name").map(|n| order_key(&norm(&n), &param("type").unwrap_or_default()));
    let mut sorted: Vec<&R53Set> = sets
        .iter()
        .filter(|s| {
            start
                .as_ref()
                .is_none_or(|st| order_key(&s.name, &s.rtype) >= *st)
        })
        .collect();
    sorted.sort_by_key(|s| order_key(&s.name, &s.rtype));
    let truncated = sorted.len() > max;
    let page: String = sorted.iter().take(max).map(|s| set_xml(s)).collect();
    let next = sorted
        .get(max)
        .map(|s| {
            format!(
                "<NextRecordName>{}</NextRecordName><NextRecordType>{}</NextRecordType>",
                s.name, s.rtype
            )
        })
        .unwrap_or_default();
    xml(
        StatusCode::OK,
        format!(
            "<ListResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ResourceRecordSets>{page}</ResourceRecordSets><IsTruncated>{truncated}</IsTruncated>{next}<MaxItems>{max}</MaxItems></ListResourceRecordSetsResponse>"
        ),
    )
}

#[derive(Deserialize)]
struct ReqXml {
    #[serde(rename = "ChangeBatch")]
    batch: BatchXml,
}

#[derive(Deserialize)]
struct BatchXml {
    #[serde(rename = "Changes")]
    changes: ChangesXml,
}

#[derive(Deserialize)]
struct ChangesXml {
    #[serde(rename = "Change", default)]
    change: Vec<ChangeXml>,
}

#[derive(Deserialize)]
struct ChangeXml {
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "ResourceRecordSet")]
    set: SetXml,
}

#[derive(Deserialize)]
struct SetXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "TTL", default)]
    ttl: Option<u32>,
    #[serde(rename = "ResourceRecords", default)]
    records: Option<RecordsXml>,
}

#[derive(Deserialize)]
struct RecordsXml {
    #[serde(rename = "ResourceRecord", default)]
    record: Vec<RecordXml>,
}

#[derive(Deserialize)]
struct RecordXml {
    #[serde(rename = "Value")]
    value: String,
}

fn same_values(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

fn change_sets(state: &mut R53State, id: &str, body: &[u8]) -> Response {
    let Some((zone, sets)) = state.zones.get(id).cloned() else {
        return no_zone(id);
    };
    let Ok(req) = quick_xml::de::from_str::<ReqXml>(&String::from_utf8_lossy(body)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "Could not parse the ChangeResourceRecordSetsRequest",
        );
    };
    if req.batch.changes.change.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidInput",
            "1 validation error detected: Value null at 'changeBatch.changes' failed to satisfy constraint: Member must not be null",
        );
    }
    // All or nothing: work on a copy; every problem is listed.
    let mut next = sets;
    let mut problems: Vec<String> = Vec::new();
    for c in &req.batch.changes.change {
        let name = norm(&c.set.name);
        let rtype = c.set.rtype.clone();
        let values: Vec<String> = c
            .set
            .records
            .as_ref()
            .map(|r| {
                r.record
                    .iter()
                    .map(|v| v.value.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let what = format!("[name='{name}', type='{rtype}']");
        if !(name == zone || name.ends_with(&format!(".{zone}"))) {
            problems.push(format!(
                "RRSet with DNS name {name} is not permitted in zone {zone}"
            ));
            continue;
        }
        let Some(ttl) = c.set.ttl else {
            problems.push(format!("Invalid request: Missing field 'TTL' in {what}"));
            continue;
        };
        if values.is_empty() {
            problems.push(format!(
                "Invalid request: Missing field 'ResourceRecords' in {what}"
            ));
            continue;
        }
        let bad_value = values.iter().find(|v| match rtype.as_str() {
            "A" => v.parse::<std::net::Ipv4Addr>().is_err(),
            "AAAA" => v.parse::<std::net::Ipv6Addr>().is_err(),
            _ => false,
        });
        if let Some(v) = bad_value {
            problems.push(format!(
                "{}RRDATAIllegalIP{}Address: Value is not a valid IP{} address encountered with '{v}'",
                rtype,
                if rtype == "A" { "v4" } else { "v6" },
                if rtype == "A" { "v4" } else { "v6" }
            ));
            continue;
        }
        let pos = next.iter().position(|s| s.name == name && s.rtype == rtype);
        let new = R53Set {
            name: name.clone(),
            rtype: rtype.clone(),
            ttl,
            values: values.clone(),
        };
        match (c.action.as_str(), pos) {
            ("CREATE", Some(_)) => problems.push(format!(
                "Tried to create resource record set {what} but it already exists"
            )),
            ("CREATE", None) | ("UPSERT", None) => next.push(new),
            ("UPSERT", Some(p)) => next[p] = new,
            ("DELETE", None) => problems.push(format!(
                "Tried to delete resource record set {what} but it was not found"
            )),
            ("DELETE", Some(p)) => {
                if next[p].ttl == ttl && same_values(&next[p].values, &values) {
                    next.remove(p);
                } else {
                    problems.push(format!(
                        "Tried to delete resource record set {what} but the values provided do not match the current values"
                    ));
                }
            }
            (other, _) => problems.push(format!("Invalid action {other}")),
        }
    }
    if !problems.is_empty() {
        let msgs: String = problems
            .iter()
            .map(|m| format!("<Message>{}</Message>", escape(m)))
            .collect();
        return xml(
            StatusCode::BAD_REQUEST,
            format!(
                "<InvalidChangeBatch xmlns=\"{XMLNS}\"><Messages>{msgs}</Messages><RequestId>00000000-0000-0000-0000-000000000000</RequestId></InvalidChangeBatch>"
            ),
        );
    }
    if let Some(z) = state.zones.get_mut(id) {
        z.1 = next;
    }
    state.batches_applied += 1;
    let change_id = format!("C{:012}", state.batches_applied);
    state.changes.insert(change_id.clone(), state.insync_after);
    let status = if state.insync_after == 0 {
        "INSYNC"
    } else {
        "PENDING"
    };
    xml(
        StatusCode::OK,
        format!(
            "<ChangeResourceRecordSetsResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/{change_id}</Id><Status>{status}</Status><SubmittedAt>2026-12-02T17:00:00.000Z</SubmittedAt></ChangeInfo></ChangeResourceRecordSetsResponse>"
        ),
    )
}

fn get_change(state: &mut R53State, id: &str) -> Response {
    state.get_change_calls += 1;
    let Some(left) = state.changes.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchChange",
            &format!("A change with the specified change ID does not exist: {id}"),
        );
    };
    *left = left.saturating_sub(1);
    let status = if *left == 0 { "INSYNC" } else { "PENDING" };
    xml(
        StatusCode::OK,
        format!(
            "<GetChangeResponse xmlns=\"{XMLNS}\"><ChangeInfo><Id>/change/{id}</Id><Status>{status}</Status><SubmittedAt>2026-12-02T17:00:00.000Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn amz_dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_amz_date("20261202T172000Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_796_232_000))
        );
        assert_eq!(parse_amz_date("2026-12-02"), None);
    }
}
