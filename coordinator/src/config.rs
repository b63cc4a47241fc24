//! Coordinator configuration: the raw TOML shape (`deny_unknown_fields`) and its validation
//! into a typed [`Config`], done once, before anything binds. Every error names the file,
//! the key and what was expected; `check` prints them all.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Deserialize;
use shared::probe::{DnsProbe, HttpMethod, HttpProbe, ProbeSpec, TcpProbe};
use shared::protocol::KeyId;

use crate::dns::{RecordSet, RecordType};
use crate::failover::{FailbackMode, Policy, VetoRule};

/// The example printed by `quorate-coordinator example-config` and parsed by the tests.
pub const EXAMPLE: &str = include_str!("../../deploy/examples/coordinator.toml");

/// Time a witness gets beyond its own probe's timeout to answer: the round trip, TLS and
/// signing.
pub const WITNESS_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub coordinator: RawCoordinator,
    pub api: RawApi,
    #[serde(default)]
    pub witness: Vec<RawWitness>,
    pub dns: crate::dns::config::RawDns,
    #[serde(default)]
    pub notify: RawNotify,
    #[serde(default)]
    pub service: Vec<RawService>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoordinator {
    /// The coordinator's ed25519 signing key (PKCS#8 PEM, mode 0600).
    pub key_file: PathBuf,
    /// The SQLite history file.
    pub database: PathBuf,
    /// Default probe interval for services ("1s").
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How long rounds that changed nothing are kept ("90d").
    #[serde(default = "default_retention")]
    pub retention: String,
    /// Extra CA certificates (PEM) trusted by HTTPS probes of primary and backup.
    #[serde(default)]
    pub probe_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: String,
    /// File holding the bearer token (mode 0600).
    pub token_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitness {
    pub name: String,
    /// `https://host:port` of the witness.
    pub url: String,
    /// `ed25519:<base64>`, as printed by `quorate-witness init`.
    pub public_key: String,
    /// Optional pin of the witness's TLS certificate (hex SHA-256 of its DER).
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// Per-request timeout ("2s"); must exceed the probe timeout of every service that asks
    /// this witness; defaults to the longest such probe timeout plus
    /// [`WITNESS_TIMEOUT_MARGIN`].
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// The URL, or `url_file` when the URL carries a secret (Slack hooks do).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    /// Zone apex, e.g. "example.test".
    pub zone: String,
    /// Names to switch, relative to the zone ("@" is the apex).
    pub names: Vec<String>,
    /// TTL of the switched records.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    pub primary: RawSide,
    pub backup: RawSide,
    pub probe: RawProbe,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default = "default_fail_after")]
    pub fail_after: u32,
    #[serde(default = "default_recover_after")]
    pub recover_after: u32,
    /// Default: a majority of this service's witnesses.
    #[serde(default)]
    pub quorum: Option<u32>,
    /// `any` (default) or `majority`.
    #[serde(default)]
    pub veto: Option<String>,
    /// `auto` (default) or `manual`.
    #[serde(default)]
    pub failback: Option<String>,
    #[serde(default)]
    pub failback_needs_quorum: bool,
    #[serde(default = "default_max_flips")]
    pub max_flips: u32,
    #[serde(default = "default_flap_window")]
    pub flap_window: String,
    /// Names of the witnesses to ask; default all.
    #[serde(default)]
    pub witnesses: Option<Vec<String>>,
    #[serde(default)]
    pub hooks: RawHooks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSide {
    pub addresses: Vec<String>,
    /// The address probed; default the first of `addresses`.
    #[serde(default)]
    pub probe_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// `http`, `https`, `tcp` or `dns`.
    pub kind: String,
    pub port: u16,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub expect_status: Vec<u16>,
    #[serde(default)]
    pub body_contains: Option<String>,
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// For `dns`: the name to ask for and its type.
    #[serde(default)]
    pub query_name: Option<String>,
    #[serde(default)]
    pub query_type: Option<String>,
    #[serde(default = "default_probe_timeout")]
    pub timeout: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHooks {
    #[serde(default)]
    pub pre_failover: Option<Vec<String>>,
    #[serde(default)]
    pub post_failover: Option<Vec<String>>,
    /// A gate: failback waits until it exits 0.
    #[serde(default)]
    pub pre_failback: Option<Vec<String>>,
    #[serde(default)]
    pub post_failback: Option<Vec<String>>,
    #[serde(default = "default_hook_timeout")]
    pub timeout: String,
}

impl Default for RawHooks {
    fn default() -> Self {
        RawHooks {
            pre_failover: None,
            post_failover: None,
            pre_failback: None,
            post_failback: None,
            timeout: default_hook_timeout(),
        }
    }
}

fn default_interval() -> String {
    "1s".into()
}
fn default_retention() -> String {
    "90d".into()
}
fn default_ttl() -> u32 {
    60
}
fn default_fail_after() -> u32 {
    2
}
fn default_recover_after() -> u32 {
    60
}
fn default_max_flips() -> u32 {
    4
}
fn default_flap_window() -> String {
    "1h".into()
}
fn default_probe_timeout() -> String {
    "1s".into()
}
fn default_hook_timeout() -> String {
    "60s".into()
}
fn yes() -> bool {
    true
}

/// The validated configuration.
pub struct Config {
    pub path: PathBuf,
    pub signing_key: SigningKey,
    pub key_id: KeyId,
    pub database: PathBuf,
    pub retention: Duration,
    pub probe_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub api_listen: SocketAddr,
    pub api_token: String,
    pub witnesses: Vec<WitnessConfig>,
    pub dns: crate::dns::config::DnsConfig,
    pub webhooks: Vec<WebhookConfig>,
    pub services: Vec<ServiceConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct WitnessConfig {
    pub name: String,
    pub url: String,
    pub key: VerifyingKey,
    pub key_id: KeyId,
    pub cert_sha256: Option<[u8; 32]>,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub slack: bool,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token: never print it.
        f.debug_struct("WebhookConfig")
            .field("slack", &self.slack)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    pub name: String,
    /// Fully qualified, lowercase, trailing dot.
    pub zone: String,
    /// Fully qualified names switched.
    pub names: Vec<String>,
    pub ttl: u32,
    pub primary: Vec<IpAddr>,
    pub backup: Vec<IpAddr>,
    pub primary_probe: ProbeSpec,
    pub backup_probe: ProbeSpec,
    pub interval: Duration,
    pub policy: Policy,
    /// Indices into `Config::witnesses`.
    pub witnesses: Vec<usize>,
    pub hooks: HooksConfig,
}

#[derive(Clone, Debug, Default)]
pub struct HooksConfig {
    pub pre_failover: Option<Vec<String>>,
    pub post_failover: Option<Vec<String>>,
    pub pre_failback: Option<Vec<String>>,
    pub post_failback: Option<Vec<String>>,
    pub timeout: Duration,
}

impl ServiceConfig {
    /// The record sets served when `side` is active.
    pub fn records_for(&self, side: crate::failover::Side) -> Vec<RecordSet> {
        let addrs = match side {
            crate::failover::Side::Primary => &self.primary,
            crate::failover::Side::Backup => &self.backup,
        };
        let mut types: BTreeSet<RecordType> = self.primary.iter().map(RecordType::of).collect();
        types.extend(self.backup.iter().map(RecordType::of));
        let mut out = Vec::new();
        for name in &self.names {
            for t in &types {
                let a: Vec<IpAddr> = addrs
                    .iter()
                    .filter(|ip| RecordType::of(ip) == *t)
                    .copied()
                    .collect();
                out.push(RecordSet::new(name.clone(), *t, self.ttl, a));
            }
        }
        out
    }
}

/// Collects errors, each prefixed with the file name.
pub struct Errors {
    file: String,
    list: Vec<String>,
}

impl Errors {
    pub fn new(file: &Path) -> Errors {
        Errors {
            file: file.display().to_string(),
            list: Vec::new(),
        }
    }
    pub fn push(&mut self, key: &str, msg: impl std::fmt::Display) {
        self.list.push(format!("{}: {key}: {msg}", self.file));
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// All configuration errors found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("expected a duration like \"1s\", \"500ms\" or \"90d\", got {s:?} ({e})")
    })
}

/// Makes `name` fully qualified in `zone` ("@" → the apex).
pub fn qualify(name: &str, zone: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name == "@" {
        zone.to_string()
    } else if name.ends_with('.') {
        name
    } else {
        format!("{name}.{zone}")
    }
}

pub fn normalize_zone(z: &str) -> String {
    let z = z.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{z}.")
}

/// Reads, parses and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("{}: cannot read: {e}", path.display())]))?;
    let raw: RawConfig =
        toml::from_str(&text).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(raw, path, base)
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        base.join(p)
    }
}

/// Turns the raw shape into the typed config, reading keys and secrets (relative paths are
/// relative to the config file's folder).
pub fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, ConfigError> {
    let mut e = Errors::new(path);

    let signing_key =
        match shared::keys::load_signing_key(&resolve(base, &raw.coordinator.key_file)) {
            Ok(k) => Some(k),
            Err(err) => {
                e.push("coordinator.key_file", err);
                None
            }
        };
    let interval = parse_duration(&raw.coordinator.interval)
        .map_err(|m| e.push("coordinator.interval", m))
        .ok();
    let retention = parse_duration(&raw.coordinator.retention)
        .map_err(|m| e.push("coordinator.retention", m))
        .ok();
    let mut probe_roots = Vec::new();
    if let Some(ca) = &raw.coordinator.probe_ca_file {
        match shared::tls::read_cert_bundle(&resolve(base, ca)) {
            Ok(c) => probe_roots = c,
            Err(m) => e.push("coordinator.probe_ca_file", m),
        }
    }

    let api_listen = raw
        .api
        .listen
        .parse::<SocketAddr>()
        .map_err(|_| {
            e.push(
                "api.listen",
                format!(
                    "expected an address like \"127.0.0.1:8080\", got {:?}",
                    raw.api.listen
                ),
            )
        })
        .ok();
    let api_token = match shared::keys::read_secret_file(&resolve(base, &raw.api.token_file)) {
        Ok(t) if t.len() >= 16 => Some(t),
        Ok(_) => {
            e.push("api.token_file", "the token must be at least 16 characters");
            None
        }
        Err(err) => {
            e.push("api.token_file", err);
            None
        }
    };

    let mut witnesses = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, w) in raw.witness.iter().enumerate() {
        let key = format!("witness[{i}]");
        if !seen.insert(w.name.clone()) {
            e.push(
                &format!("{key}.name"),
                format!("duplicate witness name {:?}", w.name),
            );
        }
        if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
            e.push(
                &format!("{key}.url"),
                format!("expected an https:// URL, got {:?}", w.url),
            );
        }
        let pk = shared::keys::parse_public_key(&w.public_key)
            .map_err(|m| e.push(&format!("{key}.public_key"), m))
            .ok();
        let pin = match &w.cert_sha256 {
            None => None,
            Some(h) => match hex::decode(h.trim().replace(':', "")) {
                Ok(b) if b.len() == 32 => b.try_into().ok(),
                _ => {
                    e.push(
                        &format!("{key}.cert_sha256"),
                        "expected 64 hex digits (SHA-256 of the certificate)",
                    );
                    None
                }
            },
        };
        let timeout = match &w.timeout {
            Some(t) => parse_duration(t)
                .map_err(|m| e.push(&format!("{key}.timeout"), m))
                .ok(),
            None => None,
        };
        if let Some(pk) = pk {
            witnesses.push(WitnessConfig {
                name: w.name.clone(),
                url: w.url.trim_end_matches('/').to_string(),
                key_id: KeyId::of(&pk),
                key: pk,
                cert_sha256: pin,
                // Filled below once the shortest interval is known.
                timeout: timeout.unwrap_or(Duration::ZERO),
            });
        }
    }

    let dns = crate::dns::config::validate(&raw.dns, &mut e, base);

    let mut webhooks = Vec::new();
    for (i, w) in raw.notify.webhook.iter().enumerate() {
        let key = format!("notify.webhook[{i}]");
        let url = match (&w.url, &w.url_file) {
            (Some(u), None) => Some(u.clone()),
            (None, Some(f)) => shared::keys::read_secret_file(&resolve(base, f))
                .map_err(|err| e.push(&format!("{key}.url_file"), err))
                .ok(),
            _ => {
                e.push(&key, "set exactly one of url or url_file");
                None
            }
        };
        let slack = match w.format.as_deref() {
            None | Some("json") => false,
            Some("slack") => true,
            Some(o) => {
                e.push(
                    &format!("{key}.format"),
                    format!("expected \"json\" or \"slack\", got {o:?}"),
                );
                false
            }
        };
        if let Some(url) = url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                e.push(&format!("{key}.url"), "expected an http(s):// URL");
            }
            webhooks.push(WebhookConfig { url, slack });
        }
    }

    let mut services = Vec::new();
    let mut names = BTreeSet::new();
    for (i, s) in raw.service.iter().enumerate() {
        let key = format!("service[{i}]");
        if shared::protocol::check_service(&s.name).is_err() {
            e.push(
                &format!("{key}.name"),
                "expected 1..=128 characters of [A-Za-z0-9._-]",
            );
        }
        if !names.insert(s.name.clone()) {
            e.push(
                &format!("{key}.name"),
                format!("duplicate service name {:?}", s.name),
            );
        }
        if let Some(svc) = validate_service(s, &key, &raw.witness, interval, &mut e) {
            services.push(svc);
        }
    }
    if raw.service.is_empty() {
        e.push("service", "at least one [[service]] is required");
    }

    // A witness answers "down" on a dead primary only once its own probe has timed out, so
    // the coordinator must wait for it longer than the longest probe timeout of the services
    // that ask it; otherwise a primary that hangs (rather than refuses) gets no votes at all
    // and every round is `coordinator-isolated`. Default: that probe timeout plus
    // WITNESS_TIMEOUT_MARGIN for the round trip, TLS and signing.
    for w in &mut witnesses {
        let Some(raw_i) = raw.witness.iter().position(|r| r.name == w.name) else {
            continue;
        };
        let longest = services
            .iter()
            .filter(|s| s.witnesses.contains(&raw_i))
            .map(|s| {
                let ms = s
                    .primary_probe
                    .timeout_ms()
                    .max(s.backup_probe.timeout_ms());
                (Duration::from_millis(u64::from(ms)), s.name.as_str())
            })
            .max();
        match longest {
            None if w.timeout.is_zero() => w.timeout = WITNESS_TIMEOUT_MARGIN,
            None => {}
            Some((probe, _)) if w.timeout.is_zero() => w.timeout = probe + WITNESS_TIMEOUT_MARGIN,
            Some((probe, svc)) if w.timeout <= probe => e.push(
                &format!("witness[{raw_i}].timeout"),
                format!(
                    "{:?} leaves the witness no time to answer: service {svc:?} probes with a timeout of {probe:?}, and a witness can vote \"down\" on a primary that hangs only after that; expected more than {probe:?} (default: {:?})",
                    w.timeout,
                    probe + WITNESS_TIMEOUT_MARGIN
                ),
            ),
            Some(_) => {}
        }
    }

    if !e.is_empty() {
        return Err(ConfigError(e.list));
    }
    let signing_key = signing_key.expect("no errors means the key loaded");
    Ok(Config {
        path: path.to_owned(),
        key_id: KeyId::of(&signing_key.verifying_key()),
        signing_key,
        database: resolve(base, &raw.coordinator.database),
        retention: retention.expect("validated"),
        probe_roots,
        api_listen: api_listen.expect("validated"),
        api_token: api_token.expect("validated"),
        witnesses,
        dns: dns.expect("validated"),
        webhooks,
        services,
    })
}

fn parse_ips(list: &[String], key: &str, e: &mut Errors) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (j, a) in list.iter().enumerate() {
        match a.parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => e.push(
                &format!("{key}[{j}]"),
                format!("expected an IPv4 or IPv6 address, got {a:?}"),
            ),
        }
    }
    out
}

fn validate_service(
    s: &RawService,
    key: &str,
    witnesses: &[RawWitness],
    default_interval: Option<Duration>,
    e: &mut Errors,
) -> Option<ServiceConfig> {
    let before = e.list.len();
    let zone = normalize_zone(&s.zone);
    if shared::probe::check_hostname(zone.trim_end_matches('.')).is_err() {
        e.push(
            &format!("{key}.zone"),
            format!("expected a DNS zone name, got {:?}", s.zone),
        );
    }
    if s.names.is_empty() {
        e.push(
            &format!("{key}.names"),
            "list at least one name to switch (\"@\" for the apex)",
        );
    }
    let mut names = Vec::new();
    for (j, n) in s.names.iter().enumerate() {
        let q = qualify(n, &zone);
        if !(q == zone || q.ends_with(&format!(".{zone}"))) {
            e.push(
                &format!("{key}.names[{j}]"),
                format!("{n:?} is not inside zone {zone}"),
            );
        } else if shared::probe::check_hostname(q.trim_end_matches('.')).is_err() {
            e.push(
                &format!("{key}.names[{j}]"),
                format!("{n:?} is not a valid name"),
            );
        }
        names.push(q);
    }
    if s.ttl == 0 || s.ttl > 86_400 {
        e.push(&format!("{key}.ttl"), "expected 1..=86400 seconds");
    }
    let primary = parse_ips(&s.primary.addresses, &format!("{key}.primary.addresses"), e);
    let backup = parse_ips(&s.backup.addresses, &format!("{key}.backup.addresses"), e);
    if s.primary.addresses.is_empty() {
        e.push(
            &format!("{key}.primary.addresses"),
            "list at least one address",
        );
    }
    if s.backup.addresses.is_empty() {
        e.push(
            &format!("{key}.backup.addresses"),
            "list at least one address",
        );
    }
    let probe_addr =
        |side: &RawSide, addrs: &[IpAddr], k: &str, e: &mut Errors| -> Option<IpAddr> {
            match &side.probe_address {
                Some(a) => a
                    .parse()
                    .map_err(|_| {
                        e.push(
                            &format!("{key}.{k}.probe_address"),
                            format!("expected an IP address, got {a:?}"),
                        )
                    })
                    .ok(),
                None => addrs.first().copied(),
            }
        };
    let p_addr = probe_addr(&s.primary, &primary, "primary", e);
    let b_addr = probe_addr(&s.backup, &backup, "backup", e);
    let interval = match &s.interval {
        Some(t) => parse_duration(t)
            .map_err(|m| e.push(&format!("{key}.interval"), m))
            .ok(),
        None => default_interval,
    };
    if let Some(i) = interval
        && (i < Duration::from_millis(100) || i > Duration::from_secs(3600))
    {
        e.push(&format!("{key}.interval"), "expected between 100ms and 1h");
    }
    let probe_timeout = parse_duration(&s.probe.timeout)
        .map_err(|m| e.push(&format!("{key}.probe.timeout"), m))
        .ok();
    if let (Some(t), Some(i)) = (probe_timeout, interval)
        && t > i
    {
        e.push(
            &format!("{key}.probe.timeout"),
            format!("must not exceed the interval ({i:?})"),
        );
    }
    let primary_probe = p_addr.and_then(|a| build_probe(&s.probe, a, probe_timeout, key, e));
    let backup_probe = b_addr.and_then(|a| build_probe(&s.probe, a, probe_timeout, key, e));

    let witness_idx: Vec<usize> = match &s.witnesses {
        None => (0..witnesses.len()).collect(),
        Some(list) => list
            .iter()
            .filter_map(|n| {
                let i = witnesses.iter().position(|w| &w.name == n);
                if i.is_none() {
                    e.push(
                        &format!("{key}.witnesses"),
                        format!("no [[witness]] named {n:?}"),
                    );
                }
                i
            })
            .collect(),
    };
    let n = witness_idx.len() as u32;
    if n == 0 {
        e.push(
            &format!("{key}.witnesses"),
            "a service needs at least one witness (configure [[witness]] entries)",
        );
    }
    let quorum = s.quorum.unwrap_or(n / 2 + 1);
    let veto = match s.veto.as_deref() {
        None | Some("any") => VetoRule::Any,
        Some("majority") => VetoRule::Majority,
        Some(o) => {
            e.push(
                &format!("{key}.veto"),
                format!("expected \"any\" or \"majority\", got {o:?}"),
            );
            VetoRule::Any
        }
    };
    let failback = match s.failback.as_deref() {
        None | Some("auto") => FailbackMode::Auto,
        Some("manual") => FailbackMode::Manual,
        Some(o) => {
            e.push(
                &format!("{key}.failback"),
                format!("expected \"auto\" or \"manual\", got {o:?}"),
            );
            FailbackMode::Auto
        }
    };
    let flap_window = parse_duration(&s.flap_window)
        .map_err(|m| e.push(&format!("{key}.flap_window"), m))
        .ok();
    let hook_timeout = parse_duration(&s.hooks.timeout)
        .map_err(|m| e.push(&format!("{key}.hooks.timeout"), m))
        .ok();
    for (k, cmd) in [
        ("pre_failover", &s.hooks.pre_failover),
        ("post_failover", &s.hooks.post_failover),
        ("pre_failback", &s.hooks.pre_failback),
        ("post_failback", &s.hooks.post_failback),
    ] {
        if let Some(c) = cmd
            && (c.is_empty() || c[0].is_empty())
        {
            e.push(&format!("{key}.hooks.{k}"), "expected a command as a non-empty array, e.g. [\"/usr/local/bin/sync\", \"--now\"]");
        }
    }
    let policy = Policy {
        fail_after: s.fail_after,
        recover_after: s.recover_after,
        quorum,
        witnesses: n,
        veto,
        failback,
        failback_needs_quorum: s.failback_needs_quorum,
        max_flips: s.max_flips,
        flap_window_ms: flap_window.map(|d| d.as_millis() as u64).unwrap_or(0),
    };
    if let Err(m) = policy.validate() {
        e.push(&format!("{key}.{}", m.field), m.message);
    }
    if e.list.len() != before {
        return None;
    }
    Some(ServiceConfig {
        name: s.name.clone(),
        zone,
        names,
        ttl: s.ttl,
        primary,
        backup,
        primary_probe: primary_probe?,
        backup_probe: backup_probe?,
        interval: interval?,
        policy,
        witnesses: witness_idx,
        hooks: HooksConfig {
            pre_failover: s.hooks.pre_failover.clone(),
            post_failover: s.hooks.post_failover.clone(),
            pre_failback: s.hooks.pre_failback.clone(),
            post_failback: s.hooks.post_failback.clone(),
            timeout: hook_timeout?,
        },
    })
}

fn build_probe(
    p: &RawProbe,
    addr: IpAddr,
    timeout: Option<Duration>,
    key: &str,
    e: &mut Errors,
) -> Option<ProbeSpec> {
    let timeout_ms = timeout?.as_millis().min(u32::MAX as u128) as u32;
    let address = SocketAddr::new(addr, p.port);
    let spec = match p.kind.as_str() {
        "http" | "https" => ProbeSpec::Http(HttpProbe {
            address,
            tls: p.kind == "https",
            host: p.host.clone(),
            path: p.path.clone().unwrap_or_else(|| "/".into()),
            method: match p.method.as_deref() {
                None | Some("GET") => HttpMethod::Get,
                Some("HEAD") => HttpMethod::Head,
                Some(o) => {
                    e.push(
                        &format!("{key}.probe.method"),
                        format!("expected \"GET\" or \"HEAD\", got {o:?}"),
                    );
                    return None;
                }
            },
            expect_status: p.expect_status.clone(),
            body_contains: p.body_contains.clone(),
            tls_verify: p.tls_verify,
            timeout_ms,
        }),
        "tcp" => ProbeSpec::Tcp(TcpProbe {
            address,
            timeout_ms,
        }),
        "dns" => ProbeSpec::Dns(DnsProbe {
            server: address,
            name: match &p.query_name {
                Some(n) => n.clone(),
                None => {
                    e.push(
                        &format!("{key}.probe.query_name"),
                        "a dns probe needs query_name",
                    );
                    return None;
                }
            },
            rtype: p.query_type.clone().unwrap_or_else(|| "A".into()),
            timeout_ms,
        }),
        o => {
            e.push(
                &format!("{key}.probe.kind"),
                format!("expected http, https, tcp or dns, got {o:?}"),
            );
            return None;
        }
    };
    if let Err(m) = spec.validate() {
        e.push(&format!("{key}.probe"), m);
        return None;
    }
    Some(spec)
}
