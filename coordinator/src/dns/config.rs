//! The `[dns]` table: which backend, its settings, and how changes are verified. The
//! backend-specific keys are checked by each backend's own `Config` (`deny_unknown_fields`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Errors, parse_duration};
use crate::dns::BackendConfig;

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
                    "dns.type: missing; expected one of \"builtin\", \"rfc2136\", \"powerdns\", \"virtualmin\", \"exec\", \"dryrun\"",
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
}

fn default_verify_timeout() -> String {
    "10s".into()
}

/// The validated `[dns]` table.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    pub backend: BackendConfig,
    pub verify_servers: Vec<SocketAddr>,
    pub verify_timeout: Duration,
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Builtin(_) => "builtin",
            BackendConfig::Rfc2136(_) => "rfc2136",
            BackendConfig::Powerdns(_) => "powerdns",
            BackendConfig::Virtualmin(_) => "virtualmin",
            BackendConfig::Exec(_) => "exec",
            BackendConfig::Dryrun(_) => "dryrun",
        }
    }
}

impl DnsConfig {
    /// Where to verify changes when `[dns.verify] servers` is not set: the server the
    /// backend itself talks DNS to, where it has one.
    pub fn default_verify_servers(&self) -> Vec<SocketAddr> {
        match &self.backend {
            BackendConfig::Rfc2136(c) => vec![c.server],
            // The built-in server answers from memory: nothing to wait for.
            BackendConfig::Builtin(_) => Vec::new(),
            _ => Vec::new(),
        }
    }
}

pub fn validate(raw: &RawDns, e: &mut Errors, _base: &Path) -> Option<DnsConfig> {
    let mut ok = true;
    let mut verify_servers = Vec::new();
    let mut verify_timeout = Duration::from_secs(10);
    if let Some(v) = &raw.verify {
        for (i, s) in v.servers.iter().enumerate() {
            match s.parse::<SocketAddr>() {
                Ok(a) => verify_servers.push(a),
                Err(_) => {
                    ok = false;
                    e.push(
                        &format!("dns.verify.servers[{i}]"),
                        format!("expected an address like \"192.0.2.53:53\", got {s:?}"),
                    );
                }
            }
        }
        match parse_duration(&v.timeout) {
            Ok(t) => verify_timeout = t,
            Err(m) => {
                ok = false;
                e.push("dns.verify.timeout", m);
            }
        }
    }
    let mut table = raw.rest.clone();
    table.insert("type".into(), toml::Value::String(raw.kind.clone()));
    let backend = match BackendConfig::deserialize(toml::Value::Table(table)) {
        Ok(b) => b,
        Err(err) => {
            e.push("dns", err.to_string().trim());
            return None;
        }
    };
    if let Err(m) = super::build_backend(&backend).map(|_| ()) {
        e.push("dns", m);
        ok = false;
    }
    ok.then_some(DnsConfig {
        backend,
        verify_servers,
        verify_timeout,
    })
}

/// Builds the configured backend and starts whatever it needs to run: the built-in server
/// binds its sockets here and starts serving the records of each service's persisted side,
/// so a restart never serves stale answers.
pub async fn start_backend(
    config: &crate::config::Config,
    store: &crate::store::Store,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<std::sync::Arc<dyn super::DnsBackend>, String> {
    let BackendConfig::Builtin(raw) = &config.dns.backend else {
        return super::build_backend(&config.dns.backend);
    };
    use super::builtin;
    let built = raw.build().map_err(|e| e.to_string())?;
    let mut sets = Vec::new();
    for svc in &config.services {
        let stored = store.load_state(&svc.name).map_err(|e| e.to_string())?;
        let side = stored.map_or(crate::failover::Side::Primary, |s| s.active);
        sets.extend(svc.records_for(side));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let listen = built.listen.clone();
    let server = std::sync::Arc::new(
        builtin::Builtin::new(built, sets, builtin::resume_serial(None, now))
            .map_err(|e| e.to_string())?,
    );
    let (udp, tcp) = builtin::bind(&listen)
        .await
        .map_err(|e| format!("builtin: cannot listen on {listen:?}: {e}"))?;
    tracing::info!(?listen, "built-in DNS server listening");
    tasks.spawn(server.clone().serve(udp, tcp, shutdown));
    Ok(server)
}
