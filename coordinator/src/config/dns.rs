//! The `[dns]` table: one backend (`[dns] type = "…"`, named `default`) or several named ones
//! (`[dns.<name>] type = "…"`), each with its own keys (checked by the backend's `Config`,
//! `deny_unknown_fields`) and its own `verify` table. Validation resolves each backend's file
//! paths against the config's folder, reads its secret once and builds it. A service names
//! its backend (`dns = "<name>"`, optional when there is one); a service whose zone is not
//! its backend's, and two services that would switch the same name, are refused here rather
//! than at the first failover.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;

use super::service::{ServiceConfig, service_key};
use crate::dns::{BackendConfig, BuiltBackend, LoadedBackend, SettingError};

/// The name of the one backend of the single-table form (`[dns] type = "…"`).
pub const DEFAULT_BACKEND: &str = "default";

const KINDS: &str = "\"builtin\", \"rfc2136\", \"powerdns\", \"virtualmin\", \"cloudflare\", \"route53\", \"hetzner\", \"digitalocean\", \"gandi\", \"desec\", \"exec\", \"dryrun\"";

/// The raw `[dns]` table: its backends, in the order written.
#[derive(Debug)]
pub struct RawDns {
    pub backends: Vec<RawBackend>,
    /// `[dns.<name>]` tables rather than one `[dns]` table.
    pub named: bool,
}

/// One backend's table, split by hand: `type` picks the backend, `verify` is common, and
/// every other key belongs to the backend.
#[derive(Debug, Clone)]
pub struct RawBackend {
    pub name: String,
    pub kind: String,
    pub verify: Option<RawVerify>,
    pub rest: toml::Table,
}

impl RawBackend {
    /// The key its settings are reported under: `dns` or `dns.<name>`.
    fn key(&self, named: bool) -> String {
        if named {
            format!("dns.{}", self.name)
        } else {
            "dns".to_string()
        }
    }

    fn parse<E: serde::de::Error>(name: String, key: &str, mut t: toml::Table) -> Result<Self, E> {
        let kind = match t.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(E::custom(format!("{key}.type: expected a string"))),
            None => {
                return Err(E::custom(format!(
                    "{key}.type: missing; expected one of {KINDS}"
                )));
            }
        };
        let verify = match t.remove("verify") {
            Some(v) => Some(
                RawVerify::deserialize(v).map_err(|e| E::custom(format!("{key}.verify: {e}")))?,
            ),
            None => None,
        };
        Ok(RawBackend {
            name,
            kind,
            verify,
            rest: t,
        })
    }

    /// The backend's own keys with `type`, without `verify`: what a reload compares.
    pub fn table(&self) -> toml::Table {
        let mut t = self.rest.clone();
        t.insert("type".into(), toml::Value::String(self.kind.clone()));
        t
    }
}

impl<'de> Deserialize<'de> for RawDns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let t = toml::Table::deserialize(d)?;
        if t.contains_key("type") {
            let backend = RawBackend::parse(DEFAULT_BACKEND.to_string(), "dns", t)?;
            return Ok(RawDns {
                backends: vec![backend],
                named: false,
            });
        }
        if t.is_empty() {
            return Err(D::Error::custom(format!(
                "dns: no backend; expected `type = …` (one of {KINDS}) in [dns], or one [dns.<name>] table per backend"
            )));
        }
        let mut backends = Vec::new();
        for (name, value) in t {
            let key = format!("dns.{name}");
            let toml::Value::Table(table) = value else {
                return Err(D::Error::custom(format!(
                    "{key}: expected a table [dns.{name}] with a `type`, or `type = …` directly in [dns] for a single backend"
                )));
            };
            if name == "verify" && !table.contains_key("type") {
                return Err(D::Error::custom(
                    "dns.verify: [dns] has no `type`, so its tables are named backends; put `verify` inside a backend: [dns.<name>.verify]",
                ));
            }
            if !valid_name(&name) {
                return Err(D::Error::custom(format!(
                    "{key}: expected a backend name of 1 to 64 letters, digits, '-' or '_', got {name:?}"
                )));
            }
            backends.push(RawBackend::parse(name, &key, table)?);
        }
        Ok(RawDns {
            backends,
            named: true,
        })
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// Authoritative servers to check after a change, and to ask for the zone's NS records
    /// (default: the backend's own server, where it has one).
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default = "default_verify_timeout")]
    pub timeout: String,
    /// Whether the zone's NS records (asked of `servers`, else of the backend's own server)
    /// name further authoritative servers to check (default true).
    #[serde(default = "default_discover_ns")]
    pub discover_ns: bool,
    /// Port the discovered name servers are asked on (default 53); tests and labs on other
    /// ports set it. Taken as an integer and checked, so 0 or 70000 is named as such.
    #[serde(default = "default_ns_port")]
    pub ns_port: i64,
    /// Recursive resolvers asked where a hosted provider's zone's name servers are, when
    /// `servers` is empty (default: this machine's, from `/etc/resolv.conf`).
    #[serde(default)]
    pub resolvers: Vec<String>,
}

fn default_discover_ns() -> bool {
    true
}

fn default_ns_port() -> i64 {
    53
}

fn default_verify_timeout() -> String {
    "10s".into()
}

/// A validated `verify` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyConfig {
    /// `servers` as listed (empty: the backend's own server, see [`Backend::verify_servers`]).
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
    /// `discover_ns`: the zone's NS records name the servers to check too.
    pub discover_ns: bool,
    /// `ns_port`: port the discovered name servers are asked on.
    pub ns_port: u16,
    /// `resolvers`: where a hosted provider's name servers are looked up when `servers` is
    /// empty (empty: this machine's).
    pub resolvers: Vec<SocketAddr>,
}

impl VerifyConfig {
    /// Where changes are verified and the NS records asked for a backend with `config`:
    /// `servers`, else the server the backend itself talks DNS to, where it has one.
    pub fn servers_of(&self, config: &BackendConfig) -> Vec<SocketAddr> {
        if self.servers.is_empty() {
            config.own_server().into_iter().collect()
        } else {
            self.servers.clone()
        }
    }
}

/// One validated backend.
#[derive(Clone, Debug)]
pub struct Backend {
    /// `default` for the single-table form, else the `<name>` of `[dns.<name>]`.
    pub name: String,
    /// The backend's settings, file paths resolved against the config's folder.
    pub config: BackendConfig,
    /// The backend built from them (secret read once, during validation).
    pub built: BuiltBackend,
    pub verify: VerifyConfig,
    /// The table as written, without `verify`: a reload compares it to refuse a change of
    /// the backend, which needs a restart.
    pub table: toml::Table,
}

impl Backend {
    /// Where changes are verified and the NS records asked: `verify.servers`, else the
    /// server the backend itself talks DNS to, where it has one.
    pub fn verify_servers(&self) -> Vec<SocketAddr> {
        self.verify.servers_of(&self.config)
    }

    /// How the backend is named in messages and the history: its type, with its name when
    /// backends are named (`edge (cloudflare)`).
    pub fn label(&self) -> String {
        if self.name == DEFAULT_BACKEND {
            self.config.kind().to_string()
        } else {
            format!("{} ({})", self.name, self.config.kind())
        }
    }
}

/// The validated `[dns]` table: every backend, in the order written.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub backends: Vec<Backend>,
}

impl DnsConfig {
    pub fn get(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The backend a service names.
    pub fn of(&self, service: &ServiceConfig) -> Option<&Backend> {
        self.get(&service.dns)
    }

    fn names(&self) -> String {
        let names: Vec<String> = self
            .backends
            .iter()
            .map(|b| format!("{:?}", b.name))
            .collect();
        names.join(", ")
    }
}

/// Records a backend's setting error at its key under `prefix` (`dns.url`,
/// `dns.edge.records[2].value`).
pub(super) fn push_setting_error(e: &mut Diagnostics, prefix: &str, error: &SettingError) {
    e.push(format!("{prefix}.{}", error.key), &error.message);
}

pub(super) fn validate(raw: &RawDns, base: &Path, e: &mut Diagnostics) -> Option<DnsConfig> {
    let before = e.len();
    let mut backends = Vec::new();
    for b in &raw.backends {
        if let Some(b) = validate_backend(b, &b.key(raw.named), base, e) {
            backends.push(b);
        }
    }
    check_builtin_listens(&backends, raw.named, e);
    (e.len() == before).then_some(DnsConfig { backends })
}

fn validate_verify(v: Option<&RawVerify>, key: &str, e: &mut Diagnostics) -> Option<VerifyConfig> {
    let Some(v) = v else {
        return Some(VerifyConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(10),
            discover_ns: true,
            ns_port: 53,
            resolvers: Vec::new(),
        });
    };
    let ns_port = u16::try_from(v.ns_port).ok().filter(|p| *p != 0);
    if ns_port.is_none() {
        e.expected(
            format!("{key}.verify.ns_port"),
            "a port number from 1 to 65535 (the port the zone's name servers answer on, 53 unless a test or lab says otherwise)",
            v.ns_port,
        );
    }
    let mut servers = Vec::new();
    for (i, s) in v.servers.iter().enumerate() {
        match s.parse::<SocketAddr>() {
            Ok(a) => servers.push(a),
            Err(_) => e.expected(
                format!("{key}.verify.servers[{i}]"),
                "an address like \"192.0.2.53:53\"",
                s,
            ),
        }
    }
    let mut resolvers = Vec::new();
    for (i, s) in v.resolvers.iter().enumerate() {
        match s.parse::<SocketAddr>() {
            Ok(a) => resolvers.push(a),
            Err(_) => e.expected(
                format!("{key}.verify.resolvers[{i}]"),
                "an address like \"192.0.2.1:53\"",
                s,
            ),
        }
    }
    let timeout = e.duration(format!("{key}.verify.timeout"), &v.timeout);
    Some(VerifyConfig {
        servers,
        resolvers,
        timeout: timeout?,
        discover_ns: v.discover_ns,
        ns_port: ns_port?,
    })
}

fn validate_backend(
    raw: &RawBackend,
    key: &str,
    base: &Path,
    e: &mut Diagnostics,
) -> Option<Backend> {
    let before = e.len();
    let verify = validate_verify(raw.verify.as_ref(), key, e);
    let table = raw.table();
    let mut config = match BackendConfig::deserialize(toml::Value::Table(table.clone())) {
        Ok(b) => b,
        Err(err) => {
            e.push(key, err.to_string().trim());
            return None;
        }
    };
    config.resolve_paths(base);
    let built = LoadedBackend::load(config.clone())
        .and_then(|loaded| crate::dns::build_backend(&loaded))
        .map_err(|m| push_setting_error(e, key, &m))
        .ok();
    if e.len() != before {
        return None;
    }
    Some(Backend {
        name: raw.name.clone(),
        config,
        built: built?,
        verify: verify?,
        table,
    })
}

/// Built-in backends with the same `listen` are one server with several zones; two whose
/// addresses overlap but differ could not both bind, and two with the same zone on one
/// server would answer for it twice.
fn check_builtin_listens(backends: &[Backend], named: bool, e: &mut Diagnostics) {
    let mut seen: Vec<(&Backend, Vec<SocketAddr>, String)> = Vec::new();
    for b in backends {
        let BuiltBackend::Builtin(built) = &b.built else {
            continue;
        };
        let mut listen = built.listen.clone();
        listen.sort();
        listen.dedup();
        let zone = crate::dns::normalize_name(&built.apex.to_ascii());
        let key = if named {
            format!("dns.{}", b.name)
        } else {
            "dns".into()
        };
        for (other, other_listen, other_zone) in &seen {
            if *other_listen == listen {
                if *other_zone == zone {
                    e.push(
                        format!("{key}.zone"),
                        format!(
                            "{zone:?} is served already by the built-in backend {:?} on the same addresses; expected one [dns.<name>] table per zone",
                            other.name
                        ),
                    );
                }
            } else if listen.iter().any(|a| other_listen.contains(a)) {
                e.push(
                    format!("{key}.listen"),
                    format!(
                        "shares addresses with the built-in backend {:?} but not all of them ({listen:?} against {other_listen:?}); expected the same `listen` list (one server, several zones) or none in common",
                        other.name
                    ),
                );
            }
        }
        seen.push((b, listen, zone));
    }
}

/// Gives each service its backend (`dns = "<name>"`, or the only one), refuses a service
/// whose zone is not its backend's (every backend refuses a change for another zone, which
/// would surface only at the first failover, as a permanent error that blocks switching),
/// and two services that would switch the same name.
pub(super) fn bind_services(
    dns: &DnsConfig,
    named: bool,
    services: &mut [ServiceConfig],
    e: &mut Diagnostics,
) {
    for s in services.iter_mut() {
        let key = service_key(&s.name);
        if s.dns.is_empty() {
            match dns.backends.as_slice() {
                [only] => s.dns = only.name.clone(),
                _ => {
                    e.push(
                        format!("{key}.dns"),
                        format!(
                            "missing; with several DNS backends each service names its own: expected one of {}",
                            dns.names()
                        ),
                    );
                    continue;
                }
            }
        }
        let Some(backend) = dns.get(&s.dns) else {
            let hint = if named {
                format!("expected one of {}", dns.names())
            } else {
                format!(
                    "the single [dns] table is named {DEFAULT_BACKEND:?}; expected {DEFAULT_BACKEND:?}, or name the backends [dns.<name>]"
                )
            };
            e.push(
                format!("{key}.dns"),
                format!("no DNS backend named {:?}; {hint}", s.dns),
            );
            continue;
        };
        check_zone(backend, named, s, &key, e);
    }
    let mut switched: BTreeMap<&str, &str> = BTreeMap::new();
    for s in services.iter() {
        for (j, name) in s.names.iter().enumerate() {
            if let Some(other) = switched.insert(name, &s.name)
                && other != s.name
            {
                e.push(
                    format!("{}.names[{j}]", service_key(&s.name)),
                    format!(
                        "{name:?} is switched by service {other:?} too; two services must not switch the same name (each would undo the other's change): keep it in one of them"
                    ),
                );
                switched.insert(name, other);
            }
        }
    }
}

fn check_zone(backend: &Backend, named: bool, s: &ServiceConfig, key: &str, e: &mut Diagnostics) {
    let Some(backend_zone) = backend.config.zone() else {
        return;
    };
    let want = crate::dns::normalize_name(backend_zone);
    let zone = crate::dns::normalize_name(&s.zone);
    if zone != want {
        let at = if named {
            format!("dns.{}.zone", backend.name)
        } else {
            "dns.zone".to_string()
        };
        e.push(
            format!("{key}.zone"),
            format!(
                "{zone:?} is not the zone of the {} backend ({want:?}, {at}); expected {want:?}, or a [dns.<name>] backend for {zone:?} named by the service's `dns`",
                backend.label()
            ),
        );
    }
}
