//! The readiness checks that cost something, run every `[readiness] interval` on their own
//! task per service (never inside the decision loop): the DNS backend's harmless
//! authenticated operation, what every authoritative server of the zone serves against the
//! persisted side (drift), and whether the witnesses can reach the backup. `check --online`
//! runs the same functions once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Asked, Reason, witness_reason};
use crate::config::{ServiceConfig, VerifyConfig};
use crate::dns::served::{self, Authority, ServerCheck};
use crate::dns::{BackendConfig, DnsBackend, DnsError, RecordSet, describe_sets};
use crate::failover::Side;
use crate::witnesses::{self, WitnessClient};

/// Where the zone's authoritative servers are found: a backend's `verify` table.
#[derive(Clone, Debug)]
pub struct AuthoritySettings {
    /// Servers listed in the config (or the backend's own server).
    pub listed: Vec<SocketAddr>,
    /// Ask `listed` for the zone's NS records and check those servers too.
    pub discover: bool,
    /// The port discovered name servers are asked on.
    pub port: u16,
    pub timeout: Duration,
    /// When nothing is listed: the recursive resolvers that say where the zone's name servers
    /// are (a hosted provider's). `None`: nowhere to look (the built-in server, `dryrun`,
    /// `exec`); an empty list: this machine's resolvers, read at each use.
    pub resolvers: Option<Vec<SocketAddr>>,
}

/// How often a server that does not serve a change yet is asked again.
pub const VERIFY_POLL: Duration = Duration::from_millis(100);

/// What [`AuthoritySettings::verify_change`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    /// Servers that could not be found (an NS name without an address, no resolver answered).
    pub problems: Vec<String>,
    /// Every server found, in the order found, and whether it served the change in time.
    pub checks: Vec<(Authority, ServerCheck)>,
}

impl Verification {
    /// The servers that did not serve the change in time, as `ns2.example.test. (addr)`.
    pub fn lagging(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|(_, c)| !c.ok)
            .map(|(a, _)| a.to_string())
            .collect()
    }

    /// The `dns-lagging` alert for change `id`, when a server did not serve it in time.
    pub fn alert(&self, id: i64) -> Option<String> {
        let lagging = self.lagging();
        (!lagging.is_empty()).then(|| {
            format!(
                "dns-lagging: change {id} not served by {} in time",
                lagging.join(", ")
            )
        })
    }
}

/// The bound on each query that looks for the zone's name servers.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(2);

impl AuthoritySettings {
    /// A backend's `verify` table, and where its zone's servers can be found.
    pub fn of(backend: &crate::config::Backend) -> AuthoritySettings {
        AuthoritySettings::new(&backend.config, &backend.verify)
    }

    /// A backend's settings and its `verify` table (what [`AuthoritySettings::of`] reads
    /// from a validated backend).
    pub fn new(config: &BackendConfig, v: &VerifyConfig) -> AuthoritySettings {
        AuthoritySettings {
            listed: v.servers_of(config),
            discover: v.discover_ns,
            port: v.ns_port,
            timeout: v.timeout,
            resolvers: config.has_remote_zone().then(|| v.resolvers.clone()),
        }
    }

    /// The check after a change, as the DNS worker runs it: every authoritative server
    /// [`find`](Self::find) finds, polled (every [`VERIFY_POLL`]) until it serves exactly
    /// `expected`, addresses and TTL, or `timeout` has passed.
    pub async fn verify_change(&self, zone: &str, expected: &[RecordSet]) -> Verification {
        let (found, problems) = self.find(zone).await;
        if found.is_empty() {
            return Verification {
                problems,
                checks: Vec::new(),
            };
        }
        let servers: Vec<SocketAddr> = found.iter().map(|a| a.addr).collect();
        let checks = served::wait_until_served(&servers, expected, self.timeout, VERIFY_POLL).await;
        Verification {
            problems,
            checks: found.into_iter().zip(checks).collect(),
        }
    }

    /// Every authoritative server of `zone` to ask, and the problems met finding them: the
    /// listed servers and, with `discover`, those the zone's NS records name (asked of the
    /// listed servers, or of a resolver when none is listed).
    pub async fn find(&self, zone: &str) -> (Vec<Authority>, Vec<String>) {
        let timeout = self.timeout.min(DISCOVERY_TIMEOUT);
        if !self.listed.is_empty() {
            if self.discover {
                return served::discover_authorities(
                    zone,
                    &self.listed,
                    &self.listed,
                    self.port,
                    timeout,
                )
                .await;
            }
            let listed = self
                .listed
                .iter()
                .map(|&addr| Authority {
                    addr,
                    ns_name: None,
                })
                .collect();
            return (listed, Vec::new());
        }
        match &self.resolvers {
            Some(resolvers) if self.discover => {
                let resolvers = if resolvers.is_empty() {
                    served::system_resolvers()
                } else {
                    resolvers.clone()
                };
                served::discover_via_resolvers(zone, &resolvers, self.port, timeout).await
            }
            _ => (Vec::new(), Vec::new()),
        }
    }
}

/// One authoritative server's answer, as the status shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ServerLine {
    /// `ns1.example.test. 192.0.2.53:53`, or the address alone for a listed server.
    pub server: String,
    /// What it serves for the service's names, or why it did not answer.
    pub serves: String,
    /// Whether it serves the persisted side.
    pub agrees: bool,
}

/// The last DNS-side proof of a service.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
pub struct DnsReport {
    pub checked_at_ms: u64,
    /// The side whose records are expected (the persisted one).
    pub expected_side: String,
    /// What the backend's harmless operation proved; `None` when it failed.
    pub proof: Option<String>,
    pub servers: Vec<ServerLine>,
}

/// The outcome of one round of readiness checks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SideReport {
    pub reasons: Vec<Reason>,
    pub dns: DnsReport,
}

/// A failed harmless operation as a reason. The backend's message already names the setting
/// and the fix; the code says which kind of trouble it is.
pub fn dns_reason(backend: &str, zone: &str, e: &DnsError) -> Reason {
    let subject = format!("dns {backend} {zone}");
    match e {
        DnsError::Auth(m) => Reason::new(
            "dns-credentials",
            subject,
            m.clone(),
            "make the credentials in the [dns] table match the server's (the message names the setting)",
        ),
        DnsError::Transient(m) | DnsError::Throttled { message: m, .. } => Reason::new(
            "dns-unreachable",
            subject,
            m.clone(),
            "start the DNS server or open the path to it; a change now would wait and retry",
        ),
        DnsError::Conflict { expected, found } => Reason::new(
            "dns-drift",
            subject,
            format!(
                "the server serves {found}, but Quorate's persisted side is {expected}: changed by hand? A switch now would be refused as a conflict"
            ),
            "put the records back as Quorate has them, or change the service's addresses in the config and reload",
        ),
        other => Reason::new(
            if other.kind() == "zone" {
                "dns-zone"
            } else {
                "dns-rejected"
            },
            subject,
            other.to_string(),
            "the message says what the server refused; fix the zone or the permission on the server",
        ),
    }
}

/// What the DNS side proved.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSide {
    /// The backend's harmless operation: what it proved, or why it failed.
    pub proof: Result<String, Reason>,
    /// Every authoritative server found, and what it serves.
    pub servers: Vec<ServerLine>,
    /// Servers that could not be found (an NS name without an address, no server answered).
    pub discovery: Vec<Reason>,
    /// Servers that serve something else than the persisted side, or disagree.
    pub drift: Vec<Reason>,
}

impl DnsSide {
    pub fn reasons(&self) -> Vec<Reason> {
        let mut r: Vec<Reason> = self.proof.clone().err().into_iter().collect();
        r.extend(self.discovery.iter().cloned());
        r.extend(self.drift.iter().cloned());
        r
    }
}

/// The backend's harmless operation, then every authoritative server against `expected`.
/// `skip_servers` (a change is on its way) leaves the servers out: mid-switch they differ
/// by design.
pub async fn dns_side(
    backend: &dyn DnsBackend,
    zone: &str,
    expected: &[RecordSet],
    authorities: &AuthoritySettings,
    skip_servers: bool,
) -> DnsSide {
    let proof = backend
        .check(zone, expected)
        .await
        .map_err(|e| dns_reason(backend.kind(), zone, &e));
    let mut side = DnsSide {
        proof,
        servers: Vec::new(),
        discovery: Vec::new(),
        drift: Vec::new(),
    };
    // No server listed and none to find (the built-in server, dryrun, exec without a
    // `verify` table): the backend's check is the whole proof.
    if skip_servers {
        return side;
    }
    let (found, problems) = authorities.find(zone).await;
    side.discovery = problems
        .into_iter()
        .map(|p| {
            Reason::new(
                "dns-servers",
                format!("dns {zone}"),
                p,
                "give every NS name of the zone an address the coordinator can reach, or set verify.discover_ns = false and list the servers in verify.servers",
            )
        })
        .collect();
    if found.is_empty() {
        return side;
    }
    let views = served::survey(&found, expected, authorities.timeout).await;
    side.drift = served::drift(expected, &views)
        .into_iter()
        .map(|d| {
            // A server that does not answer has not drifted: it cannot be checked (and
            // would not serve a change either).
            if d.contains("no answer") {
                Reason::new(
                    "dns-servers",
                    format!("dns {zone}"),
                    d,
                    "start that name server, or open the path from this coordinator to it (discovered servers are asked on [dns.verify] ns_port)",
                )
            } else {
                Reason::new(
                    "dns-drift",
                    format!("dns {zone}"),
                    d,
                    "put the records back as Quorate has them on every server (a hand edit, or a secondary that stopped transferring), or change the service's addresses in the config and reload",
                )
            }
        })
        .collect();
    for v in &views {
        let server = match &v.authority.ns_name {
            Some(n) => format!("{n} {}", v.authority.addr),
            None => v.authority.addr.to_string(),
        };
        let (serves, agrees) = match &v.answer {
            Ok(sets) => (
                describe_sets(sets),
                crate::dns::same_records(expected, sets, crate::dns::Ttl::Compared),
            ),
            Err(e) => (format!("no answer: {e}"), false),
        };
        side.servers.push(ServerLine {
            server,
            serves,
            agrees,
        });
    }
    side
}

/// Asks the service's witnesses to probe the BACKUP with a real signed request: can the world
/// reach the address a failover would send it to? Witness failures other than a refused
/// target are left out (the interval's own answers report them).
pub async fn backup_from_witnesses(
    key: &ed25519_dalek::SigningKey,
    key_id: &shared::protocol::KeyId,
    clients: &[Arc<WitnessClient>],
    svc: &ServiceConfig,
    now_ms: u64,
) -> Vec<Reason> {
    if clients.is_empty() {
        return Vec::new();
    }
    let req = witnesses::sign_request(key, key_id, &svc.name, now_ms, now_ms, &svc.backup_probe);
    let answers = witnesses::ask_all(clients.iter(), &req, &svc.name).await;
    let addr = svc.backup_probe.address().ip().to_string();
    let mut reasons = Vec::new();
    let (mut valid, mut down) = (0, Vec::new());
    for (a, c) in answers.iter().zip(clients) {
        match (&a.vote, &a.failure) {
            (Some(v), _) => {
                valid += 1;
                if v.verdict == shared::protocol::Verdict::Down {
                    let why = v
                        .evidence
                        .detail
                        .clone()
                        .or_else(|| v.evidence.error.as_ref().map(|e| format!("{e:?}")))
                        .unwrap_or_else(|| "down".into());
                    down.push(format!("{} ({why})", a.witness));
                }
            }
            (None, Some(f)) => {
                let r = witness_reason(&c.config, Asked::Backup(&addr), f);
                if r.code == "backup-not-allowed" {
                    reasons.push(r);
                }
            }
            (None, None) => {}
        }
    }
    if valid > 0 && down.len() * 2 > valid {
        reasons.push(Reason::new(
            "backup-unreachable",
            format!("service {}", svc.name),
            format!(
                "{} of {valid} witnesses cannot reach the backup {addr}: {}",
                down.len(),
                down.join("; ")
            ),
            "a failover now would send visitors to an address the world cannot reach: check the backup's firewall, its service and its uplink",
        ));
    }
    reasons
}

/// What the readiness task of one service needs.
pub struct Ctx {
    pub svc: Arc<ServiceConfig>,
    pub backend: Arc<dyn DnsBackend>,
    pub witnesses: Vec<Arc<WitnessClient>>,
    pub key: Arc<ed25519_dalek::SigningKey>,
    pub key_id: shared::protocol::KeyId,
    pub authorities: AuthoritySettings,
    pub every: Duration,
}

/// The service's readiness task: every `every`, the DNS side and the backup as the witnesses
/// see it, published on `out`. `status` tells the service's active side and whether a change
/// is on its way, at the moment of each check.
pub async fn run(
    ctx: Ctx,
    status: impl Fn() -> (Side, bool),
    out: watch::Sender<Option<SideReport>>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(ctx.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let (side, pending) = status();
        let expected = ctx.svc.records_for(side);
        let now = shared::unix_ms(std::time::SystemTime::now());
        let check = async {
            let (dns, backup) = tokio::join!(
                dns_side(
                    ctx.backend.as_ref(),
                    &ctx.svc.zone,
                    &expected,
                    &ctx.authorities,
                    pending
                ),
                backup_from_witnesses(&ctx.key, &ctx.key_id, &ctx.witnesses, &ctx.svc, now),
            );
            (dns, backup)
        };
        let (dns, backup) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = check => r,
        };
        let mut reasons = dns.reasons();
        reasons.extend(backup);
        let report = SideReport {
            reasons,
            dns: DnsReport {
                checked_at_ms: now,
                expected_side: side.as_str().to_string(),
                proof: dns.proof.ok(),
                servers: dns.servers,
            },
        };
        if out.send(Some(report)).is_err() {
            return;
        }
    }
}
