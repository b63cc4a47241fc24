//! The probe *spec*: what to probe and what counts as "up" ([`ProbeSpec`]), what a probe saw
//! ([`Evidence`], [`ProbeError`]), and the bounds every field is validated against.
//!
//! Pure: no I/O, no clock, no TLS. A [`ProbeSpec`] travels inside a signed vote request and
//! its [`Evidence`] inside a signed vote, so these types are part of the wire protocol
//! (`docs/protocol.md`): their serde shape must not change. Running a spec is
//! [`super::runner`]'s job.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::hostname::{HostnameError, check_hostname};

/// Longest probe timeout anyone may ask for.
pub const MAX_TIMEOUT_MS: u32 = 30_000;
/// How much of an HTTP body is searched for `body_contains`.
pub const BODY_PREFIX_LIMIT: usize = 64 * 1024;
/// Longest `detail` string in evidence.
pub const MAX_DETAIL_LEN: usize = 200;

/// What to probe and what counts as "up".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProbeSpec {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Dns(DnsProbe),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Where to connect (IPv4 or IPv6 address and port).
    pub address: SocketAddr,
    /// HTTPS when true.
    #[serde(default)]
    pub tls: bool,
    /// Host header and TLS SNI; the address is used when absent.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_path")]
    pub path: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Statuses that count as up; empty means 200..=399.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// A substring the first [`BODY_PREFIX_LIMIT`] bytes of the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Certificate validation (on by default).
    #[serde(default = "yes")]
    pub tls_verify: bool,
    pub timeout_ms: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    pub address: SocketAddr,
    pub timeout_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsProbe {
    /// The DNS server to ask (over UDP).
    pub server: SocketAddr,
    /// The name to ask for, e.g. `www.example.test.`.
    pub name: String,
    /// `A`, `AAAA`, `SOA`, `NS`, `TXT` or `CNAME`.
    #[serde(default = "default_rtype")]
    pub rtype: String,
    pub timeout_ms: u32,
}

fn default_path() -> String {
    "/".into()
}
fn default_rtype() -> String {
    "A".into()
}
fn yes() -> bool {
    true
}

/// What a probe saw. `error` is `None` exactly when the target counts as up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// `http`, `https`, `tcp` or `dns`.
    pub probe: String,
    /// Time from start to verdict, in microseconds.
    pub latency_us: u64,
    /// HTTP status, when one was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why the target counts as down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ProbeError>,
    /// A short human-readable detail (bounded by [`MAX_DETAIL_LEN`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Evidence {
    pub fn is_up(&self) -> bool {
        self.error.is_none()
    }
}

/// Why a probe failed, as a closed set so votes stay comparable across implementations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeError {
    Timeout,
    Refused,
    Unreachable,
    Reset,
    Tls,
    Http,
    Status,
    Body,
    DnsRcode,
    DnsEmpty,
    Io,
}

impl ProbeSpec {
    pub fn timeout_ms(&self) -> u32 {
        match self {
            ProbeSpec::Http(p) => p.timeout_ms,
            ProbeSpec::Tcp(p) => p.timeout_ms,
            ProbeSpec::Dns(p) => p.timeout_ms,
        }
    }

    /// The address the probe connects to (what a witness's allowlist is checked against).
    pub fn address(&self) -> SocketAddr {
        match self {
            ProbeSpec::Http(p) => p.address,
            ProbeSpec::Tcp(p) => p.address,
            ProbeSpec::Dns(p) => p.server,
        }
    }

    /// Checks every field is within bounds; the error names the field.
    pub fn validate(&self) -> Result<(), SpecError> {
        let t = self.timeout_ms();
        if t == 0 || t > MAX_TIMEOUT_MS {
            return Err(SpecError::Timeout(t));
        }
        match self {
            ProbeSpec::Http(p) => {
                if !p.path.starts_with('/') || p.path.len() > 1024 || has_ctl(&p.path) {
                    return Err(SpecError::Path);
                }
                if let Some(h) = &p.host {
                    check_hostname(h).map_err(SpecError::Host)?;
                }
                if let Some(b) = &p.body_contains
                    && (b.is_empty() || b.len() > 1024)
                {
                    return Err(SpecError::BodyContains);
                }
                if p.expect_status.len() > 32 {
                    return Err(SpecError::TooManyStatuses);
                }
                if let Some(s) = p.expect_status.iter().find(|s| !(100..=599).contains(*s)) {
                    return Err(SpecError::Status(*s));
                }
            }
            ProbeSpec::Tcp(_) => {}
            ProbeSpec::Dns(p) => {
                check_hostname(p.name.trim_end_matches('.')).map_err(SpecError::Name)?;
                if !["A", "AAAA", "SOA", "NS", "TXT", "CNAME"].contains(&p.rtype.as_str()) {
                    return Err(SpecError::Rtype(p.rtype.clone()));
                }
            }
        }
        Ok(())
    }
}

/// A probe spec field out of bounds (see [`ProbeSpec::validate`]); the message names the
/// field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("timeout_ms must be 1..={MAX_TIMEOUT_MS}, got {0}")]
    Timeout(u32),
    #[error(
        "path must start with '/', be at most 1024 bytes and contain no control characters or spaces"
    )]
    Path,
    #[error("host: {0}")]
    Host(HostnameError),
    #[error("body_contains must be 1..=1024 bytes")]
    BodyContains,
    #[error("expect_status lists at most 32 codes")]
    TooManyStatuses,
    #[error("expect_status: {0} is not an HTTP status (100..=599)")]
    Status(u16),
    #[error("name: {0}")]
    Name(HostnameError),
    #[error("rtype must be one of A, AAAA, SOA, NS, TXT, CNAME, got {0:?}")]
    Rtype(String),
}

fn has_ctl(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_control() || b == b' ')
}
