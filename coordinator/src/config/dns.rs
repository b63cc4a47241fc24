//! The `[dns]` table: which backend (`type`), its own keys (checked by the backend's
//! `Config`, `deny_unknown_fields`), and `[dns.verify]`. Validation resolves the backend's
//! file paths against the config's folder, reads its secret once and builds it; a service
//! whose zone is not the backend's is refused here rather than at the first failover.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;

use super::service::{RawService, service_key};
use crate::dns::{BackendConfig, BuiltBackend, LoadedBackend, SettingError};

/// The raw table, split by hand: `type` picks the backend, `verify` is common, and every
/// other key belongs to the backend.
#[derive(Debug)]
pub struct RawDns {
    pub kind: String,
    pub verify: Option<RawVerify>,
    pub rest: toml::Table,
}

impl<'de> Deserialize<'de> for RawDns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut t = toml::Table::deserialize(d)?;
        let kind = match t.remove("type") {
            Some(toml::Value::String(s)) => s,
            Some(_) => return Err(D::Error::custom("dns.type: expected a string")),
            None => {
                return Err(D::Error::custom(
                    "dns.type: missing; expected one of \"builtin\", \"rfc2136\", \"powerdns\", \"virtualmin\", \"cloudflare\", \"route53\", \"hetzner\", \"digitalocean\", \"gandi\", \"desec\", \"exec\", \"dryrun\"",
                ));
            }
        };
        let verify = match t.remove("verify") {
            Some(v) => Some(
                RawVerify::deserialize(v)
                    .map_err(|e| D::Error::custom(format!("dns.verify: {e}")))?,
            ),
            None => None,
        };
        Ok(RawDns {
            kind,
            verify,
            rest: t,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVerify {
    /// Authoritative servers to check after a change (default: the backend's own server,
    /// where it has one).
    #[serde(default)]
    pub servers: Vec<String>,
    #[serde(default = "default_verify_timeout")]
    pub timeout: String,
    /// Whether the readiness survey also asks the zone's NS records (of `servers`, else the
    /// backend's own server) for its authoritative servers (default true).
    #[serde(default = "default_discover_ns")]
    pub discover_ns: bool,
    /// Port the discovered name servers are asked on (default 53); tests and labs on other
    /// ports set it. Taken as an integer and checked, so 0 or 70000 is named as such.
    #[serde(default = "default_ns_port")]
    pub ns_port: i64,
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

/// The validated `[dns]` table.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The backend's settings, file paths resolved against the config's folder.
    pub backend: BackendConfig,
    /// The backend built from them (secret read once, during validation).
    pub built: BuiltBackend,
    pub verify_servers: Vec<SocketAddr>,
    pub verify_timeout: Duration,
    /// `[dns.verify] discover_ns`: the readiness survey also checks the servers named by the
    /// zone's NS records.
    pub discover_ns: bool,
    /// `[dns.verify] ns_port`: port the discovered name servers are asked on; tests and labs
    /// on other ports set it.
    pub ns_port: u16,
}

impl DnsConfig {
    /// Where to verify changes when `[dns.verify] servers` is not set: the server the
    /// backend itself talks DNS to, where it has one.
    pub fn default_verify_servers(&self) -> Vec<SocketAddr> {
        self.backend.own_server().into_iter().collect()
    }
}

/// Records a backend's setting error at its key under `dns.` (`dns.url`, `dns.records[2].value`).
pub(super) fn push_setting_error(e: &mut Diagnostics, error: &SettingError) {
    e.push(format!("dns.{}", error.key), &error.message);
}

pub(super) fn validate(raw: &RawDns, base: &Path, e: &mut Diagnostics) -> Option<DnsConfig> {
    let before = e.len();
    let mut verify_servers = Vec::new();
    let mut verify_timeout = Some(Duration::from_secs(10));
    let mut discover_ns = default_discover_ns();
    let mut ns_port = Some(53u16);
    if let Some(v) = &raw.verify {
        discover_ns = v.discover_ns;
        ns_port = u16::try_from(v.ns_port).ok().filter(|p| *p != 0);
        if ns_port.is_none() {
            e.expected(
                "dns.verify.ns_port",
                "a port number from 1 to 65535 (the port the zone's name servers answer on, 53 unless a test or lab says otherwise)",
                v.ns_port,
            );
        }
        for (i, s) in v.servers.iter().enumerate() {
            match s.parse::<SocketAddr>() {
                Ok(a) => verify_servers.push(a),
                Err(_) => e.expected(
                    format!("dns.verify.servers[{i}]"),
                    "an address like \"192.0.2.53:53\"",
                    s,
                ),
            }
        }
        verify_timeout = e.duration("dns.verify.timeout", &v.timeout);
    }
    let mut table = raw.rest.clone();
    table.insert("type".into(), toml::Value::String(raw.kind.clone()));
    let mut backend = match BackendConfig::deserialize(toml::Value::Table(table)) {
        Ok(b) => b,
        Err(err) => {
            e.push("dns", err.to_string().trim());
            return None;
        }
    };
    backend.resolve_paths(base);
    let built = LoadedBackend::load(backend.clone())
        .and_then(|loaded| crate::dns::build_backend(&loaded))
        .map_err(|m| push_setting_error(e, &m))
        .ok();
    if e.len() != before {
        return None;
    }
    Some(DnsConfig {
        backend,
        built: built?,
        verify_servers,
        verify_timeout: verify_timeout?,
        discover_ns,
        ns_port: ns_port?,
    })
}

/// Every backend refuses a change for a zone other than its own, which would surface only at
/// the first failover, as a permanent error that blocks switching: refuse it now.
pub(super) fn check_zones(backend: &BackendConfig, services: &[RawService], e: &mut Diagnostics) {
    let Some(backend_zone) = backend.zone() else {
        return;
    };
    let want = crate::dns::normalize_name(backend_zone);
    for s in services {
        let zone = crate::dns::normalize_name(&s.zone);
        if zone != want {
            e.push(
                format!("{}.zone", service_key(&s.name)),
                format!(
                    "{zone:?} is not the zone of the {} backend ({want:?}, dns.zone); expected {want:?}, or a [dns] backend for {zone:?}",
                    backend.kind()
                ),
            );
        }
    }
}
