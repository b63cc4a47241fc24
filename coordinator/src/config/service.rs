//! The `[[service]]` tables: the names to switch in a zone, the primary's and the backup's
//! addresses, the probe, the failover policy (quorum, veto, failback, flap damping) and the
//! operator hooks. Errors name a service by its name: `service "www".quorum`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;
use shared::probe::ProbeSpec;

use super::probe::RawProbe;
use super::witness::RawWitness;
use crate::dns::{RecordSet, RecordType};
use crate::failover::{FailbackMode, Policy, Side, VetoRule};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    /// Zone apex, e.g. "example.test"; must be the zone of the service's DNS backend.
    pub zone: String,
    /// The DNS backend that writes the zone: a `[dns.<name>]` name; optional when there is
    /// only one backend.
    #[serde(default)]
    pub dns: Option<String>,
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
    pub veto: VetoRule,
    /// `auto` (default) or `manual`.
    #[serde(default)]
    pub failback: FailbackMode,
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
    /// A failing `pre_failback` is tried again after 1 s, doubling up to this ("5m").
    #[serde(default)]
    pub gate_retry_max: Option<String>,
    /// A `pre_failback` still failing this long is a `gate-failing` notice ("10m"); the
    /// retries go on.
    #[serde(default)]
    pub gate_alert_after: Option<String>,
}

impl Default for RawHooks {
    fn default() -> Self {
        RawHooks {
            pre_failover: None,
            post_failover: None,
            pre_failback: None,
            post_failback: None,
            timeout: default_hook_timeout(),
            gate_retry_max: None,
            gate_alert_after: None,
        }
    }
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
fn default_hook_timeout() -> String {
    "60s".into()
}

#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    /// Fully qualified, lowercase, trailing dot.
    pub zone: String,
    /// The name of its DNS backend (`[dns.<name>]`, or `default` for a single `[dns]`).
    pub dns: String,
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
    /// The names of those witnesses, in the same order (the status shows them; a reload
    /// compares services by them, since indices shift when witnesses are added or removed).
    pub witness_names: Vec<String>,
    pub hooks: HooksConfig,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HooksConfig {
    pub pre_failover: Option<Vec<String>>,
    pub post_failover: Option<Vec<String>>,
    pub pre_failback: Option<Vec<String>>,
    pub post_failback: Option<Vec<String>>,
    pub timeout: Duration,
    /// The longest wait between two tries of a failing `pre_failback` gate.
    pub gate_retry_max: Duration,
    /// A gate failing this long is a `gate-failing` notice.
    pub gate_alert_after: Duration,
}

/// The first retry of a failing gate comes after this; each next one twice as late.
pub const GATE_FIRST_RETRY: Duration = Duration::from_secs(1);

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            pre_failover: None,
            post_failover: None,
            pre_failback: None,
            post_failback: None,
            timeout: Duration::from_secs(60),
            gate_retry_max: Duration::from_secs(300),
            gate_alert_after: Duration::from_secs(600),
        }
    }
}

impl ServiceConfig {
    /// The record sets served when `side` is active.
    pub fn records_for(&self, side: Side) -> Vec<RecordSet> {
        let addrs = match side {
            Side::Primary => &self.primary,
            Side::Backup => &self.backup,
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

/// How errors name a service: `service "www"`.
pub(super) fn service_key(name: &str) -> String {
    format!("service {name:?}")
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

/// Every `[[service]]`; `default_interval` is `[coordinator] interval` when it parsed.
pub(super) fn validate_all(
    raw: &[RawService],
    witnesses: &[RawWitness],
    default_interval: Option<Duration>,
    e: &mut Diagnostics,
) -> Vec<ServiceConfig> {
    let mut services = Vec::new();
    let mut names = BTreeSet::new();
    for s in raw {
        let key = service_key(&s.name);
        if shared::protocol::check_service(&s.name).is_err() {
            e.push(
                format!("{key}.name"),
                "expected 1..=128 characters of [A-Za-z0-9._-]",
            );
        }
        if !names.insert(s.name.clone()) {
            e.push(
                format!("{key}.name"),
                format!("duplicate service name {:?}", s.name),
            );
        }
        if let Some(svc) = validate(s, &key, witnesses, default_interval, e) {
            services.push(svc);
        }
    }
    if raw.is_empty() {
        e.push("service", "at least one [[service]] is required");
    }
    services
}

fn parse_ips(list: &[String], key: &str, e: &mut Diagnostics) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (j, a) in list.iter().enumerate() {
        match a.parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => e.expected(format!("{key}[{j}]"), "an IPv4 or IPv6 address", a),
        }
    }
    out
}

/// The address probed on one side: `probe_address`, else the first of `addresses`.
fn probe_addr(side: &RawSide, addrs: &[IpAddr], key: &str, e: &mut Diagnostics) -> Option<IpAddr> {
    match &side.probe_address {
        Some(a) => {
            let ip = a.parse().ok();
            if ip.is_none() {
                e.expected(format!("{key}.probe_address"), "an IP address", a);
            }
            ip
        }
        None => addrs.first().copied(),
    }
}

fn validate(
    s: &RawService,
    key: &str,
    witnesses: &[RawWitness],
    default_interval: Option<Duration>,
    e: &mut Diagnostics,
) -> Option<ServiceConfig> {
    let before = e.len();
    let zone = normalize_zone(&s.zone);
    if shared::probe::check_hostname(zone.trim_end_matches('.')).is_err() {
        e.expected(format!("{key}.zone"), "a DNS zone name", &s.zone);
    }
    if s.names.is_empty() {
        e.push(
            format!("{key}.names"),
            "list at least one name to switch (\"@\" for the apex)",
        );
    }
    let mut names = Vec::new();
    for (j, n) in s.names.iter().enumerate() {
        let q = qualify(n, &zone);
        if !(q == zone || q.ends_with(&format!(".{zone}"))) {
            e.push(
                format!("{key}.names[{j}]"),
                format!("{n:?} is not inside zone {zone}"),
            );
        } else if shared::probe::check_hostname(q.trim_end_matches('.')).is_err() {
            e.push(
                format!("{key}.names[{j}]"),
                format!("{n:?} is not a valid name"),
            );
        }
        names.push(q);
    }
    if s.ttl == 0 || s.ttl > 86_400 {
        e.push(format!("{key}.ttl"), "expected 1..=86400 seconds");
    }
    let primary = parse_ips(&s.primary.addresses, &format!("{key}.primary.addresses"), e);
    let backup = parse_ips(&s.backup.addresses, &format!("{key}.backup.addresses"), e);
    if s.primary.addresses.is_empty() {
        e.push(
            format!("{key}.primary.addresses"),
            "list at least one address",
        );
    }
    if s.backup.addresses.is_empty() {
        e.push(
            format!("{key}.backup.addresses"),
            "list at least one address",
        );
    }
    let p_addr = probe_addr(&s.primary, &primary, &format!("{key}.primary"), e);
    let b_addr = probe_addr(&s.backup, &backup, &format!("{key}.backup"), e);
    let interval = match &s.interval {
        Some(t) => e.duration(format!("{key}.interval"), t),
        None => default_interval,
    };
    if let Some(i) = interval
        && (i < Duration::from_millis(100) || i > Duration::from_secs(3600))
    {
        e.push(format!("{key}.interval"), "expected between 100ms and 1h");
    }
    let probe_timeout = e.duration(format!("{key}.probe.timeout"), s.probe.timeout());
    if let (Some(t), Some(i)) = (probe_timeout, interval)
        && t > i
    {
        e.push(
            format!("{key}.probe.timeout"),
            format!("must not exceed the interval ({i:?})"),
        );
    }
    let primary_probe = p_addr.and_then(|a| s.probe.spec(a, probe_timeout, key, e));
    let backup_probe = b_addr.and_then(|a| s.probe.spec(a, probe_timeout, key, e));

    let witness_idx: Vec<usize> = match &s.witnesses {
        None => (0..witnesses.len()).collect(),
        Some(list) => list
            .iter()
            .filter_map(|n| {
                let i = witnesses.iter().position(|w| &w.name == n);
                if i.is_none() {
                    e.push(
                        format!("{key}.witnesses"),
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
            format!("{key}.witnesses"),
            "a service needs at least one witness (configure [[witness]] entries)",
        );
    }
    let quorum = s.quorum.unwrap_or(n / 2 + 1);
    let flap_window = e.duration(format!("{key}.flap_window"), &s.flap_window);
    let hook_timeout = e.duration(format!("{key}.hooks.timeout"), &s.hooks.timeout);
    let hook_defaults = HooksConfig::default();
    let gate_retry_max = match &s.hooks.gate_retry_max {
        Some(t) => e.duration(format!("{key}.hooks.gate_retry_max"), t),
        None => Some(hook_defaults.gate_retry_max),
    };
    if let Some(d) = gate_retry_max
        && d < GATE_FIRST_RETRY
    {
        e.push(
            format!("{key}.hooks.gate_retry_max"),
            format!("expected at least {GATE_FIRST_RETRY:?} (the first retry's wait)"),
        );
    }
    let gate_alert_after = match &s.hooks.gate_alert_after {
        Some(t) => e.duration(format!("{key}.hooks.gate_alert_after"), t),
        None => Some(hook_defaults.gate_alert_after),
    };
    for (k, cmd) in [
        ("pre_failover", &s.hooks.pre_failover),
        ("post_failover", &s.hooks.post_failover),
        ("pre_failback", &s.hooks.pre_failback),
        ("post_failback", &s.hooks.post_failback),
    ] {
        if let Some(c) = cmd
            && c.first().is_none_or(|first| first.is_empty())
        {
            e.push(format!("{key}.hooks.{k}"), "expected a command as a non-empty array, e.g. [\"/usr/local/bin/sync\", \"--now\"]");
        }
    }
    let policy = Policy {
        fail_after: s.fail_after,
        recover_after: s.recover_after,
        quorum,
        witnesses: n,
        veto: s.veto,
        failback: s.failback,
        failback_needs_quorum: s.failback_needs_quorum,
        max_flips: s.max_flips,
        flap_window_ms: flap_window.map(|d| d.as_millis() as u64).unwrap_or(0),
    };
    if let Err(m) = policy.validate() {
        e.push(format!("{key}.{}", m.field), m.message);
    }
    if e.len() != before {
        return None;
    }
    Some(ServiceConfig {
        name: s.name.clone(),
        zone,
        // Checked against the backends, and filled in when there is only one, by
        // `dns::bind_services`.
        dns: s.dns.clone().unwrap_or_default(),
        names,
        ttl: s.ttl,
        primary,
        backup,
        primary_probe: primary_probe?,
        backup_probe: backup_probe?,
        interval: interval?,
        policy,
        witness_names: witness_idx
            .iter()
            .map(|&i| witnesses[i].name.clone())
            .collect(),
        witnesses: witness_idx,
        hooks: HooksConfig {
            pre_failover: s.hooks.pre_failover.clone(),
            post_failover: s.hooks.post_failover.clone(),
            pre_failback: s.hooks.pre_failback.clone(),
            post_failback: s.hooks.post_failback.clone(),
            timeout: hook_timeout?,
            gate_retry_max: gate_retry_max?,
            gate_alert_after: gate_alert_after?,
        },
    })
}
