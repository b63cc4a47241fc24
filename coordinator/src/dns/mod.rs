//! DNS backends: one trait, one module per backend. Only `dns/*` talks DNS.
//!
//! A [`Change`] replaces some record sets of one zone with others (e.g. `www A` and
//! `www AAAA` from the primary's addresses to the backup's, with a lower TTL). Each backend
//! applies a change as atomically as its server allows and reports failures as a
//! [`DnsError`] whose variant tells the driver what to do next.

use std::fmt;
use std::net::IpAddr;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub mod builtin;

/// A/AAAA only: the records a failover switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordType {
    A,
    AAAA,
}

impl RecordType {
    pub fn of(ip: &IpAddr) -> RecordType {
        match ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
        })
    }
}

/// One RRset: a fully qualified name (with trailing dot), a type, a TTL, its addresses
/// (sorted, so two sets compare equal when they serve the same answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSet {
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    pub addrs: Vec<IpAddr>,
}

impl RecordSet {
    pub fn new(name: impl Into<String>, rtype: RecordType, ttl: u32, mut addrs: Vec<IpAddr>) -> Self {
        addrs.sort();
        addrs.dedup();
        RecordSet {
            name: name.into(),
            rtype,
            ttl,
            addrs,
        }
    }

    /// Same name and type (the RRset's identity).
    pub fn same_key(&self, other: &RecordSet) -> bool {
        self.name.eq_ignore_ascii_case(&other.name) && self.rtype == other.rtype
    }
}

impl fmt::Display for RecordSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        write!(f, "{} {} {} [{}]", self.name, self.ttl, self.rtype, addrs.join(", "))
    }
}

/// Replace `from` with `to` in `zone`. `from` and `to` list the same RRset keys, in the same
/// order; `from` is what Quorate believes is served now (the prerequisite).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Zone apex, fully qualified (`example.test.`).
    pub zone: String,
    pub from: Vec<RecordSet>,
    pub to: Vec<RecordSet>,
}

/// Why a change did not apply, sorted by what the driver should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Network trouble, server busy, timeout: retry with backoff.
    #[error("transient DNS failure: {0}")]
    Transient(String),
    /// The records are not what Quorate expected (someone changed them by hand): do not
    /// overwrite; alert. `found` is what the server serves now.
    #[error("conflict: expected {expected}, server has {found}")]
    Conflict { expected: String, found: String },
    /// Credentials refused: alert; retrying will not help.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server refused the change for another reason: alert; retrying will not help.
    #[error("change rejected: {0}")]
    Rejected(String),
}

impl DnsError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DnsError::Transient(_))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DnsError::Transient(_) => "transient",
            DnsError::Conflict { .. } => "conflict",
            DnsError::Auth(_) => "auth",
            DnsError::Rejected(_) => "rejected",
        }
    }
}

/// A place where a zone's records live.
pub trait DnsBackend: Send + Sync {
    /// Short name for logs and history (`rfc2136`, `powerdns`, …).
    fn kind(&self) -> &'static str;

    /// What the backend serves now for each key of `like` (name + type); an RRset that does
    /// not exist comes back with no addresses.
    fn current<'a>(
        &'a self,
        zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>>;

    /// Applies the change, as one atomic operation where the server allows it.
    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<(), DnsError>>;
}
