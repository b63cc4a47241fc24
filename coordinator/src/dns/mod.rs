//! DNS backends: one trait, one module per backend. Only `dns/*` talks DNS.
//!
//! A [`Change`] replaces some record sets of one zone with others (e.g. `www A` and
//! `www AAAA` from the primary's addresses to the backup's, with a lower TTL). Each backend
//! applies a change as atomically as its server allows and reports failures as a
//! [`DnsError`] whose variant tells the driver what to do next.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    pub fn new(
        name: impl Into<String>,
        rtype: RecordType,
        ttl: u32,
        mut addrs: Vec<IpAddr>,
    ) -> Self {
        addrs.sort();
        addrs.dedup();
        RecordSet {
            name: name.into(),
            rtype,
            ttl,
            addrs,
        }
    }

    /// Same name and type (the RRset's identity); names compare without case and with or
    /// without the trailing dot.
    pub fn same_key(&self, other: &RecordSet) -> bool {
        self.rtype == other.rtype
            && self
                .name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(other.name.trim_end_matches('.'))
    }
}

impl fmt::Display for RecordSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        write!(
            f,
            "{} {} {} [{}]",
            self.name,
            self.ttl,
            self.rtype,
            addrs.join(", ")
        )
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
    /// A provider's rate limit (HTTP 429, Route 53's `Throttling`): transient, retried, and
    /// not before `retry_after` when the provider said how long to wait (`Retry-After`).
    #[error("transient DNS failure: {message}{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
}

impl DnsError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DnsError::Transient(_) | DnsError::Throttled { .. })
    }

    /// How long the provider asked to wait before the next try, if it said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            DnsError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            DnsError::Transient(_) | DnsError::Throttled { .. } => "transient",
            DnsError::Conflict { .. } => "conflict",
            DnsError::Auth(_) => "auth",
            DnsError::Rejected(_) => "rejected",
        }
    }
}

/// A backend setting that is not what its key takes, found while building the backend: the
/// key as written in the `[dns]` table (`url`, `records[2].value`, `tsig_secret_file`) and
/// what was wrong, expected and how to fix it. Displays as `KEY: message`; the config's
/// validation records it at `dns.KEY`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingError {
    pub key: String,
    pub message: String,
}

impl SettingError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> SettingError {
        SettingError {
            key: key.into(),
            message: message.into(),
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

    /// Proves, changing nothing, that the credentials are accepted, the zone is served there and
    /// writing is permitted. `expected` is what Quorate believes is served now (the persisted
    /// side's records); backends that can use it as a prerequisite do (RFC 2136), so a hand edit
    /// shows up as `DnsError::Conflict { expected, found }`. Ok carries one line saying what was proven.
    ///
    /// A backend that cannot prove anything (exec without `check_command`) still answers Ok,
    /// with a line starting with [`UNPROVEN`], so a readiness report can warn about it.
    fn check<'a>(
        &'a self,
        zone: &'a str,
        expected: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<String, DnsError>>;
}

/// How the proof line of [`DnsBackend::check`] starts when nothing could be proven.
pub const UNPROVEN: &str = "unproven:";

/// How the proof line of [`DnsBackend::check`] starts when the check passed but found
/// something that would make a switch fail (deSEC: a TTL under the domain's minimum): a
/// readiness report shows it as a warning.
pub const WARNING: &str = "warning:";

/// The conflict check of [`DnsBackend::check`] for backends that read the records (not
/// atomic, like their writes): `found` is what the backend serves for the keys of `expected`;
/// addresses are compared, not TTLs ([`Ttl::Ignored`], like an RFC 2136 prerequisite).
pub(crate) fn check_expected(expected: &[RecordSet], found: &[RecordSet]) -> Result<(), DnsError> {
    if same_records(expected, found, Ttl::Ignored) {
        Ok(())
    } else {
        Err(DnsError::Conflict {
            expected: describe_sets(expected),
            found: describe_sets(found),
        })
    }
}

pub mod cloudflare;
pub mod desec;
pub mod digitalocean;
pub mod dryrun;
pub mod exec;
pub mod gandi;
pub mod hetzner;
pub mod http;
pub mod powerdns;
pub(crate) mod provider;
pub mod rfc2136;
pub mod route53;
pub mod secret;
pub mod served;
pub mod virtualmin;

/// The `[dns]` table of the coordinator's config: `type` picks the backend, the other keys
/// belong to that backend's own `Config` (unknown keys are rejected by each of them).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendConfig {
    Builtin(builtin::Config),
    Rfc2136(rfc2136::Config),
    Powerdns(powerdns::Config),
    Virtualmin(virtualmin::Config),
    Cloudflare(cloudflare::Config),
    Route53(route53::Config),
    Exec(exec::Config),
    Dryrun(dryrun::Config),
    Hetzner(hetzner::Config),
    Digitalocean(digitalocean::Config),
    Gandi(gandi::Config),
    Desec(desec::Config),
}

impl BackendConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendConfig::Builtin(_) => "builtin",
            BackendConfig::Rfc2136(_) => "rfc2136",
            BackendConfig::Powerdns(_) => "powerdns",
            BackendConfig::Virtualmin(_) => "virtualmin",
            BackendConfig::Cloudflare(_) => "cloudflare",
            BackendConfig::Route53(_) => "route53",
            BackendConfig::Exec(_) => "exec",
            BackendConfig::Dryrun(_) => "dryrun",
            BackendConfig::Hetzner(_) => "hetzner",
            BackendConfig::Digitalocean(_) => "digitalocean",
            BackendConfig::Gandi(_) => "gandi",
            BackendConfig::Desec(_) => "desec",
        }
    }

    /// The zone the backend writes (as configured), where it has one: a service's zone must
    /// be this one, since every backend refuses a change for another zone.
    pub fn zone(&self) -> Option<&str> {
        match self {
            BackendConfig::Builtin(c) => Some(&c.zone),
            BackendConfig::Rfc2136(c) => Some(&c.zone),
            BackendConfig::Powerdns(c) => Some(&c.zone),
            BackendConfig::Virtualmin(c) => Some(&c.zone),
            BackendConfig::Cloudflare(c) => Some(&c.zone),
            BackendConfig::Route53(c) => Some(&c.zone),
            BackendConfig::Hetzner(c) => Some(&c.zone),
            BackendConfig::Digitalocean(c) => Some(&c.zone),
            BackendConfig::Gandi(c) => Some(&c.zone),
            BackendConfig::Desec(c) => Some(&c.zone),
            BackendConfig::Exec(_) | BackendConfig::Dryrun(_) => None,
        }
    }

    /// The server the backend itself talks DNS to, where it has one: where changes are
    /// verified when `[dns.verify] servers` is not set. The built-in server answers from
    /// memory: nothing to wait for.
    pub fn own_server(&self) -> Option<SocketAddr> {
        match self {
            BackendConfig::Rfc2136(c) => Some(c.server),
            _ => None,
        }
    }

    /// Whether the zone is served by servers the backend does not name (a hosted provider's,
    /// or a PowerDNS / Virtualmin API's): their addresses are looked up through a resolver
    /// when `verify.servers` lists none.
    pub fn has_remote_zone(&self) -> bool {
        match self {
            BackendConfig::Powerdns(_)
            | BackendConfig::Virtualmin(_)
            | BackendConfig::Cloudflare(_)
            | BackendConfig::Route53(_)
            | BackendConfig::Hetzner(_)
            | BackendConfig::Digitalocean(_)
            | BackendConfig::Gandi(_)
            | BackendConfig::Desec(_) => true,
            BackendConfig::Builtin(_)
            | BackendConfig::Rfc2136(_)
            | BackendConfig::Exec(_)
            | BackendConfig::Dryrun(_) => false,
        }
    }

    /// Makes every file the backend names (`tsig_secret_file`, `api_key_file`,
    /// `password_file`, `api_token_file`, `credentials_file`, `ca_file`, and `command`/`current_command`/`check_command` when their first element
    /// is a path, i.e. contains a `/`) relative to `base_dir`, the config file's folder, not
    /// to the working directory.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let file = |p: &mut PathBuf| *p = shared::config::resolve(base_dir, p);
        let command = |cmd: &mut Vec<String>| {
            if let Some(first) = cmd.first_mut()
                && first.contains('/')
            {
                *first = shared::config::resolve(base_dir, Path::new(first.as_str()))
                    .display()
                    .to_string();
            }
        };
        match self {
            BackendConfig::Rfc2136(c) => file(&mut c.tsig_secret_file),
            BackendConfig::Powerdns(c) => {
                file(&mut c.api_key_file);
                c.ca_file.iter_mut().for_each(file);
            }
            BackendConfig::Virtualmin(c) => {
                file(&mut c.password_file);
                c.ca_file.iter_mut().for_each(file);
            }
            BackendConfig::Cloudflare(c) => {
                c.api_token_file.iter_mut().for_each(file);
                c.ca_file.iter_mut().for_each(file);
            }
            BackendConfig::Route53(c) => {
                c.credentials_file.iter_mut().for_each(file);
                c.secret_access_key_file.iter_mut().for_each(file);
                c.ca_file.iter_mut().for_each(file);
            }
            BackendConfig::Exec(c) => {
                command(&mut c.command);
                c.current_command.iter_mut().for_each(command);
                c.check_command.iter_mut().for_each(command);
            }
            BackendConfig::Hetzner(c) => c.api_token_file.iter_mut().for_each(file),
            BackendConfig::Digitalocean(c) => c.api_token_file.iter_mut().for_each(file),
            BackendConfig::Gandi(c) => c.api_token_file.iter_mut().for_each(file),
            BackendConfig::Desec(c) => c.api_token_file.iter_mut().for_each(file),
            BackendConfig::Builtin(_) | BackendConfig::Dryrun(_) => {}
        }
    }
}

/// A backend config with its secret file read (once): what [`build_backend`] takes. Its
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct LoadedBackend {
    pub config: BackendConfig,
    secret: Option<String>,
    /// Route 53's access key (read from `credentials_file` or the environment).
    aws: Option<route53::AwsCredentials>,
}

impl fmt::Debug for LoadedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedBackend")
            .field("config", &self.config)
            .field(
                "secret_loaded",
                &(self.secret.is_some() || self.aws.is_some()),
            )
            .finish()
    }
}

impl LoadedBackend {
    /// Reads the backend's secret file, if it has one (paths as given: resolve them first
    /// with [`BackendConfig::resolve_paths`]), or, for the hosted providers, its token (or
    /// Route 53's credentials) from a file, an environment variable or a systemd credential.
    /// Errors name the key: `api_key_file`, `api_token_env`.
    pub fn load(config: BackendConfig) -> Result<LoadedBackend, SettingError> {
        let token = match &config {
            BackendConfig::Cloudflare(c) => Some(c.read_token()?),
            BackendConfig::Hetzner(c) => Some(c.token_source()?.read()?),
            BackendConfig::Digitalocean(c) => Some(c.token_source()?.read()?),
            BackendConfig::Gandi(c) => Some(c.token_source()?.read()?),
            BackendConfig::Desec(c) => Some(c.token_source()?.read()?),
            BackendConfig::Route53(c) => {
                let aws = Some(c.read_credentials()?);
                return Ok(LoadedBackend {
                    config,
                    secret: None,
                    aws,
                });
            }
            _ => None,
        };
        if let Some(secret) = token {
            return Ok(LoadedBackend {
                config,
                secret: Some(secret),
                aws: None,
            });
        }
        let file = match &config {
            BackendConfig::Rfc2136(c) => Some(("tsig_secret_file", &c.tsig_secret_file)),
            BackendConfig::Powerdns(c) => Some(("api_key_file", &c.api_key_file)),
            BackendConfig::Virtualmin(c) => Some(("password_file", &c.password_file)),
            _ => None,
        };
        let secret = match file {
            Some((key, path)) => Some(
                shared::keys::read_secret_file(path)
                    .map_err(|e| SettingError::new(key, e.to_string()))?,
            ),
            None => None,
        };
        Ok(LoadedBackend {
            config,
            secret,
            aws: None,
        })
    }

    fn secret(&self) -> String {
        self.secret.clone().unwrap_or_default()
    }
}

/// A built backend: ready to use, or, for the built-in server, its checked settings (the
/// server itself is made at start, from the records of each service's stored side).
#[derive(Clone)]
pub enum BuiltBackend {
    Ready(Arc<dyn DnsBackend>),
    Builtin(Box<builtin::BuiltinConfig>),
}

impl fmt::Debug for BuiltBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuiltBackend::Ready(b) => write!(f, "Ready({})", b.kind()),
            BuiltBackend::Builtin(c) => f.debug_tuple("Builtin").field(c).finish(),
        }
    }
}

/// Builds the backend a loaded config describes, without reading any secret file again, and
/// checks its values. Errors name the key and what was expected.
pub fn build_backend(loaded: &LoadedBackend) -> Result<BuiltBackend, SettingError> {
    Ok(BuiltBackend::Ready(match &loaded.config {
        BackendConfig::Builtin(c) => {
            let built = c.build()?;
            // The zone data is checked now (nothing is served yet), not at the first start.
            builtin::Builtin::new(built.clone(), Vec::new(), 1)?;
            return Ok(BuiltBackend::Builtin(Box::new(built)));
        }
        BackendConfig::Rfc2136(c) => Arc::new(rfc2136::build_with_secret(c, &loaded.secret())?),
        BackendConfig::Powerdns(c) => Arc::new(powerdns::build_with_secret(c, loaded.secret())?),
        BackendConfig::Virtualmin(c) => {
            Arc::new(virtualmin::build_with_secret(c, loaded.secret())?)
        }
        BackendConfig::Cloudflare(c) => {
            Arc::new(cloudflare::build_with_secret(c, loaded.secret())?)
        }
        BackendConfig::Route53(c) => match &loaded.aws {
            Some(creds) => Arc::new(route53::build_with_credentials(c, creds.clone())?),
            None => Arc::new(route53::build(c)?),
        },
        BackendConfig::Exec(c) => Arc::new(exec::build(c)?),
        BackendConfig::Dryrun(c) => Arc::new(dryrun::build(c)?),
        BackendConfig::Hetzner(c) => Arc::new(hetzner::build_with_secret(c, &loaded.secret())?),
        BackendConfig::Digitalocean(c) => {
            Arc::new(digitalocean::build_with_secret(c, &loaded.secret())?)
        }
        BackendConfig::Gandi(c) => Arc::new(gandi::build_with_secret(c, &loaded.secret())?),
        BackendConfig::Desec(c) => Arc::new(desec::build_with_secret(c, &loaded.secret())?),
    }))
}

/// Lower-case, with exactly one trailing dot: the form names are compared in.
pub fn normalize_name(name: &str) -> String {
    let mut n = name.trim_end_matches('.').to_ascii_lowercase();
    n.push('.');
    n
}

/// Whether `name` is `zone` itself or below it (both fully qualified or not).
pub fn name_in_zone(name: &str, zone: &str) -> bool {
    let name = normalize_name(name);
    let zone = normalize_name(zone);
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

/// The record sets in plain words, for conflict reports and logs:
/// `www.example.test. A [192.0.2.10] ttl 300; www.example.test. AAAA (none)`.
pub fn describe_sets(sets: &[RecordSet]) -> String {
    if sets.is_empty() {
        return "(nothing)".to_string();
    }
    let parts: Vec<String> = sets
        .iter()
        .map(|s| {
            if s.addrs.is_empty() {
                format!("{} {} (none)", s.name, s.rtype)
            } else {
                let addrs: Vec<String> = s.addrs.iter().map(|a| a.to_string()).collect();
                format!(
                    "{} {} [{}] ttl {}",
                    s.name,
                    s.rtype,
                    addrs.join(", "),
                    s.ttl
                )
            }
        })
        .collect();
    parts.join("; ")
}

/// Whether TTLs take part in a record-set comparison (see [`same_records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Addresses and TTL: "is exactly this answer served?" (already applied, verification).
    Compared,
    /// Addresses only: "is this the state a change starts from?" (conflict checks, like an
    /// RFC 2136 value-dependent prerequisite, which carries no TTL either).
    Ignored,
}

/// THE record-set comparison, used by every backend, by verification and by the built-in
/// server. The rule, per key (name + type, see [`RecordSet::same_key`]) of `wanted`:
/// - the set in `found` with that key is taken; a key missing from `found` counts as a set
///   with no addresses (an RRset that does not exist);
/// - addresses are compared as sets (order and duplicates do not matter);
/// - with [`Ttl::Compared`] the TTLs must be equal too, unless `wanted` has no addresses (an
///   RRset that does not exist has no TTL to compare).
///
/// Keys present only in `found` are not looked at.
pub fn same_records(wanted: &[RecordSet], found: &[RecordSet], ttl: Ttl) -> bool {
    wanted
        .iter()
        .all(|w| same_set(w, found.iter().find(|f| f.same_key(w)), ttl))
}

/// [`same_records`] for one key: `found` is the set served under `wanted`'s key, `None` when
/// there is none.
pub fn same_set(wanted: &RecordSet, found: Option<&RecordSet>, ttl: Ttl) -> bool {
    let sorted = |set: Option<&RecordSet>| {
        let mut addrs = set.map(|s| s.addrs.clone()).unwrap_or_default();
        addrs.sort();
        addrs.dedup();
        addrs
    };
    if sorted(Some(wanted)) != sorted(found) {
        return false;
    }
    match ttl {
        Ttl::Ignored => true,
        Ttl::Compared => wanted.addrs.is_empty() || found.is_some_and(|f| f.ttl == wanted.ttl),
    }
}

/// What a backend without an atomic conditional write should do after reading `current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precheck {
    /// `current` is `change.from` (or `force` is set): write.
    Proceed,
    /// `current` already is `change.to` (e.g. a retry after a lost answer): nothing to do.
    AlreadyApplied,
}

/// Compares what is served with what the change expects: `Conflict` when someone else
/// changed the records (unless `force`).
pub fn precheck(change: &Change, current: &[RecordSet], force: bool) -> Result<Precheck, DnsError> {
    if same_records(&change.to, current, Ttl::Compared) {
        return Ok(Precheck::AlreadyApplied);
    }
    if force || same_records(&change.from, current, Ttl::Ignored) {
        return Ok(Precheck::Proceed);
    }
    Err(DnsError::Conflict {
        expected: describe_sets(&change.from),
        found: describe_sets(current),
    })
}

/// The read → compare → write → read-back skeleton of a backend without an atomic
/// conditional write (PowerDNS, Virtualmin, exec):
/// 1. with `check_first`, read what is served for `change.from` ([`DnsBackend::current`]) and
///    [`precheck`] it: already applied → done; someone else's records → [`DnsError::Conflict`];
/// 2. run the write;
/// 3. with `read_back`, read `change.to` again and require its addresses ([`Ttl::Ignored`]):
///    a server that said yes but holds something else → [`DnsError::Rejected`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checked {
    pub check_first: bool,
    pub read_back: bool,
}

impl Checked {
    pub(crate) async fn apply<B, W>(
        self,
        backend: &B,
        change: &Change,
        write: W,
    ) -> Result<(), DnsError>
    where
        B: DnsBackend + ?Sized,
        W: std::future::Future<Output = Result<(), DnsError>>,
    {
        if self.check_first {
            let now = backend.current(&change.zone, &change.from).await?;
            if precheck(change, &now, false)? == Precheck::AlreadyApplied {
                return Ok(());
            }
        }
        write.await?;
        if self.read_back {
            let now = backend.current(&change.zone, &change.to).await?;
            if !same_records(&change.to, &now, Ttl::Ignored) {
                return Err(DnsError::Rejected(format!(
                    "{} accepted the change but holds {}",
                    backend.kind(),
                    describe_sets(&now)
                )));
            }
        }
        Ok(())
    }
}

impl Change {
    /// Checks the change is well formed before anything is sent: names inside the zone,
    /// `from` and `to` list the same keys in the same order, addresses match the type.
    pub fn validate(&self) -> Result<(), DnsError> {
        if self.to.is_empty() {
            return Err(DnsError::Rejected("change has no record sets".into()));
        }
        if self.from.len() != self.to.len() {
            return Err(DnsError::Rejected(format!(
                "change lists {} record sets to replace but {} new ones",
                self.from.len(),
                self.to.len()
            )));
        }
        for (i, (f, t)) in self.from.iter().zip(&self.to).enumerate() {
            if !f.same_key(t) {
                return Err(DnsError::Rejected(format!(
                    "record set {i} of the change: from is {} {} but to is {} {}",
                    f.name, f.rtype, t.name, t.rtype
                )));
            }
            for set in [f, t] {
                if !name_in_zone(&set.name, &self.zone) {
                    return Err(DnsError::Rejected(format!(
                        "{} is not inside zone {}",
                        set.name, self.zone
                    )));
                }
                if let Some(bad) = set.addrs.iter().find(|a| RecordType::of(a) != set.rtype) {
                    return Err(DnsError::Rejected(format!(
                        "{} {}: address {bad} is not of type {}",
                        set.name, set.rtype, set.rtype
                    )));
                }
            }
        }
        for (i, a) in self.to.iter().enumerate() {
            if self.to[..i].iter().any(|b| b.same_key(a)) {
                return Err(DnsError::Rejected(format!(
                    "{} {} appears twice in the change",
                    a.name, a.rtype
                )));
            }
        }
        Ok(())
    }
}

/// The first TOML example under the heading "## `<kind>`" of a doc (docs/dns-backends.md),
/// for the tests that parse every documented example.
#[cfg(test)]
pub(crate) fn doc_example(doc: &str, kind: &str) -> String {
    let heading = format!("## `{kind}`");
    let after = doc
        .find(&heading)
        .map(|i| &doc[i..])
        .unwrap_or_else(|| panic!("no section {heading} in the doc"));
    let start = after
        .find("```toml\n")
        .map(|i| i + "```toml\n".len())
        .unwrap_or_else(|| panic!("no toml example under {heading}"));
    let body = &after[start..];
    let end = body.find("```").unwrap_or(body.len());
    let block = &body[..end];
    // The example is a whole [dns] table; the backend config is its content.
    block.replacen("[dns]\n", "", 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(name: &str, rtype: RecordType, ttl: u32, addrs: &[&str]) -> RecordSet {
        RecordSet::new(
            name,
            rtype,
            ttl,
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn backend_config_from_toml() {
        let c: BackendConfig = toml::from_str(
            r#"type = "rfc2136"
server = "192.0.2.53:53"
zone = "example.com."
tsig_key_name = "quorate"
tsig_algorithm = "hmac-sha512"
tsig_secret_file = "/etc/quorate/tsig.secret"
timeout = "3s"
"#,
        )
        .unwrap();
        match c {
            BackendConfig::Rfc2136(r) => {
                assert_eq!(r.tsig_algorithm, rfc2136::TsigAlg::HmacSha512);
                assert_eq!(r.timeout, std::time::Duration::from_secs(3));
                assert!(!r.force);
            }
            other => panic!("{other:?}"),
        }
        let err = toml::from_str::<BackendConfig>(
            "type = \"powerdns\"\nurl = \"http://x\"\nzone = \"z.\"\napi_key_file = \"/k\"\napi_key = \"inline\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("api_key"), "{err}");
        let err = toml::from_str::<BackendConfig>("type = \"route66\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("route66"), "{err}");
        let err = toml::from_str::<BackendConfig>(
            "type = \"exec\"\ncommand = [\"/bin/true\"]\ntimeout = \"soon\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("duration"), "{err}");
        assert!(matches!(
            toml::from_str::<BackendConfig>("type = \"dryrun\"\n").unwrap(),
            BackendConfig::Dryrun(_)
        ));
    }

    /// Every `[dns]` example in docs/dns-backends.md parses, and the hosted providers' ones
    /// build (with a stand-in token): the documented keys are the real ones.
    #[test]
    fn documented_examples_parse() {
        let doc = include_str!("../../../docs/dns-backends.md");
        let mut kinds = Vec::new();
        for block in doc.split("```toml").skip(1) {
            let block = block.split("```").next().unwrap();
            if !block.contains("[dns]") {
                continue;
            }
            let table: toml::Table =
                toml::from_str(block).unwrap_or_else(|e| panic!("{block}: {e}"));
            let config = BackendConfig::deserialize(table["dns"].clone())
                .unwrap_or_else(|e| panic!("{block}: {e}"));
            match &config {
                BackendConfig::Hetzner(c) => {
                    hetzner::build_with_secret(c, "t").unwrap();
                }
                BackendConfig::Digitalocean(c) => {
                    digitalocean::build_with_secret(c, "t").unwrap();
                }
                BackendConfig::Gandi(c) => {
                    gandi::build_with_secret(c, "t").unwrap();
                }
                BackendConfig::Desec(c) => {
                    desec::build_with_secret(c, "t").unwrap();
                }
                _ => {}
            }
            kinds.push(config.kind());
        }
        for k in [
            "hetzner",
            "digitalocean",
            "gandi",
            "desec",
            "powerdns",
            "rfc2136",
        ] {
            assert!(kinds.contains(&k), "no example for {k}: {kinds:?}");
        }
    }

    #[test]
    fn provider_token_keys_are_checked_and_named() {
        let c: BackendConfig = toml::from_str(
            "type = \"desec\"\nzone = \"example.com\"\napi_token_env = \"CARGO_PKG_NAME\"\n",
        )
        .unwrap();
        // cargo sets CARGO_PKG_NAME for the tests it runs: an environment variable that is there.
        let loaded = LoadedBackend::load(c).unwrap();
        assert!(!format!("{loaded:?}").contains("coordinator"));
        assert!(matches!(
            build_backend(&loaded).unwrap(),
            BuiltBackend::Ready(b) if b.kind() == "desec"
        ));
        let two = toml::from_str::<BackendConfig>(
            "type = \"gandi\"\nzone = \"example.com\"\napi_token_env = \"A\"\napi_token_credential = \"b\"\n",
        )
        .unwrap();
        let e = LoadedBackend::load(two).unwrap_err();
        assert!(e.message.contains("only one"), "{e}");
        let none = toml::from_str::<BackendConfig>("type = \"hetzner\"\nzone = \"example.com\"\n")
            .unwrap();
        assert_eq!(LoadedBackend::load(none).unwrap_err().key, "api_token_file");
        let http = toml::from_str::<BackendConfig>(
            "type = \"digitalocean\"\nzone = \"example.com\"\napi_token_env = \"CARGO_PKG_NAME\"\nbase_url = \"http://api.example.com/v2\"\n",
        )
        .unwrap();
        let e = build_backend(&LoadedBackend::load(http).unwrap()).unwrap_err();
        assert_eq!(e.key, "base_url");
    }

    #[test]
    fn change_validation() {
        let ok = Change {
            zone: "example.test.".into(),
            from: vec![set("www.example.test.", RecordType::A, 300, &["192.0.2.1"])],
            to: vec![set("WWW.example.test", RecordType::A, 60, &["192.0.2.2"])],
        };
        ok.validate().unwrap();
        let mut outside = ok.clone();
        outside.to[0].name = "www.example.org.".into();
        outside.from[0].name = "www.example.org.".into();
        assert!(
            matches!(outside.validate(), Err(DnsError::Rejected(t)) if t.contains("not inside zone"))
        );
        let mut wrong_family = ok.clone();
        wrong_family.to[0].addrs = vec!["2001:db8::1".parse().unwrap()];
        assert!(wrong_family.validate().is_err());
        let mut mismatched = ok.clone();
        mismatched.to[0].rtype = RecordType::AAAA;
        mismatched.to[0].addrs.clear();
        assert!(mismatched.validate().is_err());
        assert!(name_in_zone("example.test.", "example.test"));
        assert!(!name_in_zone("badexample.test.", "example.test."));
    }

    #[test]
    fn one_comparison_rule() {
        let www = |ttl, addrs: &[&str]| set("www.example.test.", RecordType::A, ttl, addrs);
        let mut unsorted = www(300, &[]);
        unsorted.addrs = vec![
            "192.0.2.2".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
        ];
        let upper = set("WWW.example.test", RecordType::A, 300, &["192.0.2.1"]);
        let other_key = set("api.example.test.", RecordType::A, 300, &["192.0.2.1"]);
        // (wanted, found, same with Ttl::Ignored, same with Ttl::Compared)
        let cases: &[(RecordSet, Vec<RecordSet>, bool, bool)] = &[
            (
                www(300, &["192.0.2.1"]),
                vec![www(300, &["192.0.2.1"])],
                true,
                true,
            ),
            (
                www(300, &["192.0.2.1"]),
                vec![www(60, &["192.0.2.1"])],
                true,
                false,
            ),
            (
                www(300, &["192.0.2.1"]),
                vec![www(300, &["192.0.2.9"])],
                false,
                false,
            ),
            (
                www(300, &["192.0.2.1", "192.0.2.2"]),
                vec![unsorted],
                true,
                true,
            ),
            (www(300, &["192.0.2.1"]), vec![upper], true, true),
            // A missing key is an RRset with no addresses.
            (www(300, &[]), vec![], true, true),
            (www(300, &["192.0.2.1"]), vec![other_key], false, false),
            // No addresses: no TTL to compare.
            (www(300, &[]), vec![www(0, &[])], true, true),
        ];
        for (wanted, found, ignored, compared) in cases {
            let w = std::slice::from_ref(wanted);
            assert_eq!(
                same_records(w, found, Ttl::Ignored),
                *ignored,
                "{wanted} vs {found:?}"
            );
            assert_eq!(
                same_records(w, found, Ttl::Compared),
                *compared,
                "{wanted} vs {found:?}"
            );
        }
    }

    #[test]
    fn precheck_outcomes() {
        let c = Change {
            zone: "example.test.".into(),
            from: vec![set("www.example.test.", RecordType::A, 300, &["192.0.2.1"])],
            to: vec![set("www.example.test.", RecordType::A, 60, &["192.0.2.2"])],
        };
        // TTL differences do not make a conflict; addresses do.
        let served = vec![set("www.example.test.", RecordType::A, 120, &["192.0.2.1"])];
        assert_eq!(precheck(&c, &served, false).unwrap(), Precheck::Proceed);
        assert_eq!(
            precheck(&c, &c.to, false).unwrap(),
            Precheck::AlreadyApplied
        );
        let other = vec![set(
            "www.example.test.",
            RecordType::A,
            300,
            &["203.0.113.1"],
        )];
        match precheck(&c, &other, false).unwrap_err() {
            DnsError::Conflict { expected, found } => {
                assert_eq!(expected, "www.example.test. A [192.0.2.1] ttl 300");
                assert_eq!(found, "www.example.test. A [203.0.113.1] ttl 300");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(precheck(&c, &other, true).unwrap(), Precheck::Proceed);
        assert_eq!(
            describe_sets(&[set("a.example.test.", RecordType::AAAA, 0, &[])]),
            "a.example.test. AAAA (none)"
        );
    }
}
