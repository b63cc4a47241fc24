//! A service's `probe` table, one shape per `kind` (`http`, `https`, `tcp`, `dns`): a key
//! that does not belong to its kind (`query_name` on an http probe, `path` on a tcp probe) is
//! refused, naming the key, instead of being silently ignored.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;
use shared::probe::{DnsProbe, HttpMethod, HttpProbe, ProbeSpec, TcpProbe};

/// `probe = { kind = "https", port = 443, … }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RawProbe {
    Http(RawHttpProbe),
    Https(RawHttpProbe),
    Tcp(RawTcpProbe),
    Dns(RawDnsProbe),
}

/// `kind = "http"` or `"https"`: a request, the status and body it must get.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpProbe {
    pub port: u16,
    /// Host header and TLS server name (never resolved: the probe goes to the address).
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_path")]
    pub path: String,
    /// `GET` (default) or `HEAD`.
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default)]
    pub expect_status: Vec<u16>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    #[serde(default = "default_probe_timeout")]
    pub timeout: String,
}

/// `kind = "tcp"`: a connection that opens.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcpProbe {
    pub port: u16,
    #[serde(default = "default_probe_timeout")]
    pub timeout: String,
}

/// `kind = "dns"`: a DNS server that answers a query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsProbe {
    pub port: u16,
    /// The name to ask for (required).
    #[serde(default)]
    pub query_name: Option<String>,
    /// Its type (default `A`).
    #[serde(default = "default_query_type")]
    pub query_type: String,
    #[serde(default = "default_probe_timeout")]
    pub timeout: String,
}

fn default_path() -> String {
    "/".into()
}
fn default_query_type() -> String {
    "A".into()
}
fn default_probe_timeout() -> String {
    "1s".into()
}
fn yes() -> bool {
    true
}

impl RawProbe {
    /// The `timeout` key, whatever the kind.
    pub fn timeout(&self) -> &str {
        match self {
            RawProbe::Http(p) | RawProbe::Https(p) => &p.timeout,
            RawProbe::Tcp(p) => &p.timeout,
            RawProbe::Dns(p) => &p.timeout,
        }
    }

    fn port(&self) -> u16 {
        match self {
            RawProbe::Http(p) | RawProbe::Https(p) => p.port,
            RawProbe::Tcp(p) => p.port,
            RawProbe::Dns(p) => p.port,
        }
    }

    /// The probe of `addr` (primary's or backup's); `service` is the service's key path.
    pub(super) fn spec(
        &self,
        addr: IpAddr,
        timeout: Option<Duration>,
        service: &str,
        e: &mut Diagnostics,
    ) -> Option<ProbeSpec> {
        let timeout_ms = timeout?.as_millis().min(u32::MAX as u128) as u32;
        let address = SocketAddr::new(addr, self.port());
        let spec = match self {
            RawProbe::Http(p) | RawProbe::Https(p) => ProbeSpec::Http(HttpProbe {
                address,
                tls: matches!(self, RawProbe::Https(_)),
                host: p.host.clone(),
                path: p.path.clone(),
                method: p.method,
                expect_status: p.expect_status.clone(),
                body_contains: p.body_contains.clone(),
                tls_verify: p.tls_verify,
                timeout_ms,
            }),
            RawProbe::Tcp(_) => ProbeSpec::Tcp(TcpProbe {
                address,
                timeout_ms,
            }),
            RawProbe::Dns(p) => ProbeSpec::Dns(DnsProbe {
                server: address,
                name: match &p.query_name {
                    Some(n) => n.clone(),
                    None => {
                        e.push(
                            format!("{service}.probe.query_name"),
                            "a dns probe needs query_name",
                        );
                        return None;
                    }
                },
                rtype: p.query_type.clone(),
                timeout_ms,
            }),
        };
        if let Err(m) = spec.validate() {
            e.push(format!("{service}.probe"), m);
            return None;
        }
        Some(spec)
    }
}
