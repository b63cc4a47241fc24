//! A stand-in for Virtualmin's remote API (Virtualmin itself cannot run in a test): HTTPS with
//! a self-signed certificate, HTTP basic auth, `GET /virtual-server/remote.cgi`, zones kept in
//! memory. It follows the sources of `remote.cgi`, `modify-dns.pl` and `get-dns.pl` in
//! github.com/virtualmin/virtualmin-gpl:
//! - remote.cgi turns each CGI parameter into `--name value` (`--name` alone when the value is
//!   empty; a repeated parameter gives one pair per value) and answers `text/plain`: the
//!   program's output, a blank line and `Exit status: N`; `ERROR: ...` when the program is
//!   unknown;
//! - modify-dns: `--domain`, `--add-record "name type values"`, `--add-record-with-ttl "name
//!   type ttl values"`, `--remove-record "name type [values]"`, `--update-record "old-name
//!   old-type" "name type values"` (two values after one flag), `--ttl` (the domain's default
//!   TTL). All removes, then all adds, then all updates, then one zone write. Usage errors
//!   print the reason and exit 1. An add that clashes with an identical record or falls
//!   outside the domain is reported and skipped, with exit status 0;
//! - get-dns: `--domain`, `--multiline`, `--name`, `--type`.
//!
//! Only GET is served (Virtualmin also takes POST).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use sha2::Digest as _;

/// One record line of a zone as Virtualmin lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Fully qualified, with the trailing dot.
    pub name: String,
    pub rtype: String,
    /// The record's own TTL; `None` means the zone's default.
    pub ttl: Option<u32>,
    pub values: Vec<String>,
}

impl Rec {
    pub fn new(name: &str, rtype: &str, ttl: Option<u32>, value: &str) -> Rec {
        Rec {
            name: name.into(),
            rtype: rtype.into(),
            ttl,
            values: vec![value.into()],
        }
    }
}

#[derive(Clone, Debug)]
pub struct Domain {
    pub default_ttl: u32,
    pub records: Vec<Rec>,
    /// How many times the zone file was written (one per modify-dns run that changed it).
    pub zone_writes: u32,
}

#[derive(Debug, Default)]
pub struct StandInState {
    pub domains: BTreeMap<String, Domain>,
    /// Every accepted request's parameters, in order.
    pub requests: Vec<Vec<(String, String)>>,
}

struct Shared {
    user: String,
    password: String,
    state: Mutex<StandInState>,
}

pub struct VirtualminStandIn {
    addr: SocketAddr,
    cert_pem: String,
    cert_sha256: String,
    shared: Arc<Shared>,
    handle: axum_server::Handle<SocketAddr>,
}

impl VirtualminStandIn {
    /// Serves `domain` (no trailing dot) with `records` and default TTL 3600 for `user` /
    /// `password` on a free loopback port.
    pub async fn start(
        user: &str,
        password: &str,
        domain: &str,
        records: Vec<Rec>,
    ) -> VirtualminStandIn {
        shared::install_crypto_provider();
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .expect("self-signed certificate");
        let cert_pem = ck.cert.pem();
        let key_pem = ck.signing_key.serialize_pem();
        let cert_sha256 = hex::encode(sha2::Sha256::digest(ck.cert.der().as_ref()));
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert_pem.clone().into_bytes(),
            key_pem.into_bytes(),
        )
        .await
        .expect("rustls config");
        let mut state = StandInState::default();
        state.domains.insert(
            domain.to_string(),
            Domain {
                default_ttl: 3600,
                records,
                zone_writes: 0,
            },
        );
        let shared = Arc::new(Shared {
            user: user.into(),
            password: password.into(),
            state: Mutex::new(state),
        });
        let app = axum::Router::new()
            .route("/virtual-server/remote.cgi", get(remote_cgi))
            .with_state(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, tls)
            .expect("server from listener")
            .handle(handle.clone());
        tokio::spawn(async move {
            let _ = server.serve(app.into_make_service()).await;
        });
        VirtualminStandIn {
            addr,
            cert_pem,
            cert_sha256,
            shared,
            handle,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Hex SHA-256 of the server certificate (DER).
    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }

    /// Looks at or changes the state (e.g. a change "by hand" in the Virtualmin UI).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut StandInState) -> T) -> T {
        let mut s = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    pub fn domain(&self, name: &str) -> Option<Domain> {
        self.with_state(|s| s.domains.get(name).cloned())
    }
}

impl Drop for VirtualminStandIn {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = v.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{}:{}", shared.user, shared.password).into_bytes()
}

async fn remote_cgi(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if !authorized(&shared, &headers) {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n".into());
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Webmin Server\""),
        );
        return r;
    }
    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
    state.requests.push(params.clone());
    let Some(program) = params
        .iter()
        .find(|(k, _)| k == "program")
        .map(|(_, v)| v.clone())
    else {
        return text(
            StatusCode::OK,
            "This CGI is designed to be invoked by other programs wanting\nto perform some Virtualmin action programatically\n".into(),
        );
    };
    // remote.cgi: every parameter but `program` becomes `--name value` (values of a repeated
    // parameter stay together, in order).
    let mut keys: Vec<&str> = Vec::new();
    for (k, _) in &params {
        if k != "program" && !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    let mut args: Vec<String> = Vec::new();
    for k in keys {
        for (_, v) in params.iter().filter(|(pk, _)| pk == k) {
            args.push(format!("--{k}"));
            if !v.is_empty() {
                args.push(v.clone());
            }
        }
    }
    let (out, code) = match program.as_str() {
        "modify-dns" => modify_dns(&mut state, &args),
        "get-dns" => get_dns(&state, &args),
        other => {
            return text(
                StatusCode::OK,
                format!("ERROR: Program {other} does not exist\n"),
            );
        }
    };
    text(StatusCode::OK, format!("{out}\nExit status: {code}\n"))
}

fn expand(name: &str, domain: &str) -> String {
    if name == "@" {
        format!("{domain}.")
    } else if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.{domain}.")
    }
}

fn usage(msg: &str) -> (String, i32) {
    (
        format!("{msg}\n\nChanges DNS settings for one or more domains.\n"),
        1,
    )
}

fn valid_value(rtype: &str, v: &str) -> bool {
    match rtype {
        "A" => v.parse::<std::net::Ipv4Addr>().is_ok(),
        "AAAA" => v.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

struct Add {
    name: String,
    rtype: String,
    ttl: Option<u32>,
    values: Vec<String>,
}

fn modify_dns(state: &mut StandInState, args: &[String]) -> (String, i32) {
    let mut domains: Vec<String> = Vec::new();
    let mut adds: Vec<Add> = Vec::new();
    let mut removes: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut updates: Vec<(String, String, Add)> = Vec::new();
    let mut ttl: Option<u32> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--domain" => match it.next() {
                Some(d) => domains.push(d.clone()),
                None => return usage("--domain must be followed by a domain name"),
            },
            "--add-record" | "--add-record-with-ttl" => {
                let with_ttl = a == "--add-record-with-ttl";
                let words: Vec<String> = it
                    .next()
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                let need = if with_ttl { 4 } else { 3 };
                if words.len() < need {
                    return usage(&format!(
                        "{a} must be followed by the record name, type{} and values, all in one parameter",
                        if with_ttl { ", TTL" } else { "" }
                    ));
                }
                let (rttl, values) = if with_ttl {
                    match words[2].parse::<u32>() {
                        Ok(t) => (Some(t), words[3..].to_vec()),
                        Err(_) => return usage(&format!("{a}: invalid TTL {}", words[2])),
                    }
                } else {
                    (None, words[2..].to_vec())
                };
                adds.push(Add {
                    name: words[0].clone(),
                    rtype: words[1].to_ascii_uppercase(),
                    ttl: rttl,
                    values,
                });
            }
            "--remove-record" => {
                let words: Vec<String> = it
                    .next()
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                if words.len() < 2 {
                    return usage(
                        "--remove-record must be followed by the record name and type, all in one parameter",
                    );
                }
                removes.push((words[0].clone(), words[1].clone(), words[2..].to_vec()));
            }
            "--update-record" => {
                let old: Vec<String> = it
                    .next()
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                let new: Vec<String> = it
                    .next()
                    .map(|v| v.split_whitespace().map(str::to_string).collect())
                    .unwrap_or_default();
                if old.len() < 2 {
                    return usage(
                        "--update-record must be followed by the original record name and type, all in one parameter",
                    );
                }
                if new.len() < 3 || new[1].starts_with("--") || new[0].starts_with("--") {
                    return usage(
                        "--update-record must be followed by the new record name, type and values, all in one parameter",
                    );
                }
                updates.push((
                    old[0].clone(),
                    old[1].clone(),
                    Add {
                        name: new[0].clone(),
                        rtype: new[1].clone(),
                        ttl: None,
                        values: new[2..].to_vec(),
                    },
                ));
            }
            "--ttl" => match it.next().and_then(|v| v.parse::<u32>().ok()) {
                Some(t) => ttl = Some(t),
                None => return usage("--ttl must be followed by a number with a valid suffix"),
            },
            other => return usage(&format!("Unknown parameter {other}")),
        }
    }
    if domains.is_empty() {
        return usage("No domains specified");
    }
    if adds.is_empty() && removes.is_empty() && updates.is_empty() && ttl.is_none() {
        return usage("Nothing to do");
    }
    for d in &domains {
        if !state.domains.contains_key(d) {
            return usage(&format!("Domain {d} does not exist"));
        }
    }
    for add in &adds {
        if let Some(bad) = add.values.iter().find(|v| !valid_value(&add.rtype, v)) {
            return usage(&format!("Invalid address {bad} in --add-record"));
        }
    }
    let mut out = String::new();
    for dname in &domains {
        let Some(d) = state.domains.get_mut(dname) else {
            continue;
        };
        let mut changed = false;
        out.push_str(&format!("Updating server {dname} ..\n"));
        if !removes.is_empty() {
            out.push_str(&format!("    Removing {} records ..\n", removes.len()));
            let before = d.records.len();
            for (name, rtype, values) in &removes {
                let name = expand(name, dname);
                d.records.retain(|r| {
                    !(r.name == name
                        && r.rtype.eq_ignore_ascii_case(rtype)
                        && (values.is_empty() || r.values == *values))
                });
            }
            if d.records.len() != before {
                changed = true;
                out.push_str("    .. done\n");
            } else {
                out.push_str("    .. no matching records found\n");
            }
        }
        if !adds.is_empty() {
            out.push_str(&format!("    Adding {} records ..\n", adds.len()));
            for add in &adds {
                let name = expand(&add.name, dname);
                if d.records
                    .iter()
                    .any(|r| r.name == name && r.values == add.values)
                {
                    out.push_str(&format!(
                        "    .. a record named {name} with the same value already exists\n"
                    ));
                } else if !(name == format!("{dname}.") || name.ends_with(&format!(".{dname}."))) {
                    out.push_str(&format!("    .. record {name} is not in this domain\n"));
                } else {
                    d.records.push(Rec {
                        name,
                        rtype: add.rtype.clone(),
                        ttl: add.ttl,
                        values: add.values.clone(),
                    });
                    changed = true;
                }
            }
            out.push_str("    .. done\n");
        }
        for (oldname, oldtype, new) in &updates {
            let oldname = expand(oldname, dname);
            if let Some(r) = d
                .records
                .iter_mut()
                .find(|r| r.name == oldname && r.rtype == *oldtype)
            {
                r.name = expand(&new.name, dname);
                r.rtype = new.rtype.clone();
                r.values = new.values.clone();
                changed = true;
            } else {
                out.push_str(&format!("    .. no record named {oldname} found\n"));
            }
        }
        if let Some(t) = ttl {
            d.default_ttl = t;
            changed = true;
        }
        if changed {
            d.zone_writes += 1;
        }
        out.push_str(".. done\n");
    }
    (out, 0)
}

fn get_dns(state: &StandInState, args: &[String]) -> (String, i32) {
    let mut domain = None;
    let mut name = None;
    let mut rtype = None;
    let mut multiline = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--domain" => domain = it.next().cloned(),
            "--name" => name = it.next().cloned(),
            "--type" => rtype = it.next().cloned(),
            "--multiline" => multiline = true,
            other => return usage(&format!("Unknown parameter {other}")),
        }
    }
    let Some(dname) = domain else {
        return usage("Missing --domain parameter");
    };
    let Some(d) = state.domains.get(&dname) else {
        return usage(&format!("Virtual server {dname} does not exist"));
    };
    let want_name = name.map(|mut n| {
        if !n
            .to_ascii_lowercase()
            .ends_with(&dname.to_ascii_lowercase())
        {
            n = format!("{n}.{dname}");
        }
        if !n.ends_with('.') {
            n.push('.');
        }
        n.to_ascii_lowercase()
    });
    let mut out = String::new();
    for r in &d.records {
        if want_name
            .as_ref()
            .is_some_and(|n| r.name.to_ascii_lowercase() != *n)
            || rtype
                .as_ref()
                .is_some_and(|t| !r.rtype.eq_ignore_ascii_case(t))
        {
            continue;
        }
        if multiline {
            out.push_str(&format!(
                "{}\n    Type: {}\n    Class: IN\n",
                r.name, r.rtype
            ));
            if let Some(t) = r.ttl {
                out.push_str(&format!("    TTL: {t}\n"));
            }
            for v in &r.values {
                out.push_str(&format!("    Value: {v}\n"));
            }
        } else {
            out.push_str(&format!(
                "{:<30} {:<5} {}\n",
                r.name,
                r.rtype,
                r.values.join(" ")
            ));
        }
    }
    (out, 0)
}
