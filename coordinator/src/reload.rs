//! Reload: on SIGHUP the coordinator reads its config file again, validates it exactly as at
//! start ([`config::load`]), compares it with the running one ([`plan`], pure) and applies
//! the difference without a restart:
//!
//! - a service added is started; a service whose settings or whose witnesses changed is
//!   stopped (its tasks cancelled and waited for) and started again with the new ones, its
//!   state resumed from the history as at start; a removed service is stopped (its history
//!   stays); every other service runs on untouched;
//! - the built-in DNS servers serve the records of added services and stop serving those of
//!   removed ones, in one snapshot swap per zone (a query sees the old zone or the new one,
//!   never none);
//! - a remote DNS backend (`[dns.<name>]`) may be added (built during validation) and one no
//!   service uses any more removed;
//! - the API's services and witnesses are swapped whole ([`crate::api::LiveCell`]).
//!
//! Every service starts again when what they all share changes: the coordinator's signing
//! key (a key rotation), `probe_ca_file`; the services of a backend start again when its
//! `verify` table changes.
//!
//! A config that does not validate, or that changes what cannot change in a running process
//! (`api.listen`, `coordinator.database`, the tokens, the API's certificate and key, `retention`, the notification channels, a DNS
//! backend's settings, a built-in server added or removed), is refused: every error is logged, one `alert`
//! notification says so, and the running config stays as it was.
//!
//! Invariant: a refused reload changes nothing; an accepted one stops only what changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::api::{Live, LiveCell};
use crate::compose;
use crate::config::{self, Config, ServiceConfig};
use crate::dns::{Change, RecordSet};
use crate::failover::Side;
use crate::metrics::Metrics;
use crate::notify::{Notice, Notifier};
use crate::service::{self, DnsDeps, ServiceDeps, ServiceHandle};
use crate::store::Store;
use crate::supervise::Supervisor;
use crate::witnesses::WitnessClient;

/// Names added, changed and removed between two configs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// What a reload does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub services: Diff,
    pub witnesses: Diff,
}

/// What a reload did, or why it changed nothing.
#[derive(Debug)]
pub enum Outcome {
    Applied(Plan),
    /// Every line says what was wrong, as `check` prints it.
    Refused(Vec<String>),
}

/// Compares the running config with a new one (both validated). `Err`: what cannot change
/// without a restart, one line each.
pub fn plan(old: &Config, new: &Config) -> Result<Plan, Vec<String>> {
    let file = new.path.display();
    let mut refused = Vec::new();
    let mut fixed = |key: &str, same: bool| {
        if !same {
            refused.push(format!("{file}: {key}: changed: restart to apply"));
        }
    };
    fixed("api.listen", old.api_listen == new.api_listen);
    fixed("coordinator.database", old.database == new.database);
    fixed("coordinator.retention", old.retention == new.retention);
    fixed(
        "history.checkpoint_every",
        old.checkpoint_every == new.checkpoint_every,
    );
    fixed(
        "api.token_file (the API token)",
        old.api_token == new.api_token,
    );
    fixed(
        "api.read_token_file (the read-only token)",
        old.api_read_token == new.api_read_token,
    );
    fixed(
        "api.metrics_token_file (the metrics token)",
        old.metrics_token == new.metrics_token,
    );
    // The listener's TLS config is built once at start: a renewed certificate (same path,
    // new contents) is refused like a new one, and applied by a restart.
    fixed(
        "api.tls_cert_file / api.tls_key_file (the API's certificate)",
        old.api_tls == new.api_tls,
    );
    fixed("notify", old.notify == new.notify);
    refused.extend(backend_changes(old, new));
    if !refused.is_empty() {
        return Err(refused);
    }

    let witness = |c: &Config, name: &str| c.witnesses.iter().find(|w| w.name == name).cloned();
    let mut witnesses = Diff::default();
    for w in &new.witnesses {
        match witness(old, &w.name) {
            None => witnesses.added.push(w.name.clone()),
            Some(o) if o != *w => witnesses.changed.push(w.name.clone()),
            Some(_) => {}
        }
    }
    for w in &old.witnesses {
        if witness(new, &w.name).is_none() {
            witnesses.removed.push(w.name.clone());
        }
    }

    // What every service shares and a reload can change: all of them start again. A new
    // signing key (a rotation: witnesses already trust it) signs every request from then on.
    let shared_changed = old.key_id != new.key_id || old.probe_roots != new.probe_roots;
    let verify_changed =
        |name: &str| old.dns.get(name).map(|b| &b.verify) != new.dns.get(name).map(|b| &b.verify);
    let mut services = Diff::default();
    for s in &new.services {
        match old.services.iter().find(|o| o.name == s.name) {
            None => services.added.push(s.name.clone()),
            Some(o) => {
                let witness_changed = s
                    .witness_names
                    .iter()
                    .any(|n| witnesses.changed.contains(n));
                if shared_changed
                    || witness_changed
                    || verify_changed(&s.dns)
                    || !same_service(o, s)
                {
                    services.changed.push(s.name.clone());
                }
            }
        }
    }
    for o in &old.services {
        if !new.services.iter().any(|s| s.name == o.name) {
            services.removed.push(o.name.clone());
        }
    }
    Ok(Plan {
        services,
        witnesses,
    })
}

/// The DNS backends a reload cannot change, one line each: a backend whose settings changed
/// (its client, secret or sockets are built once), and a built-in one added or removed (its
/// sockets). A hosted or remote backend may be added, and one no service uses removed.
fn backend_changes(old: &Config, new: &Config) -> Vec<String> {
    let file = new.path.display();
    let key = |c: &Config, name: &str| {
        if c.dns.backends.len() == 1 && name == crate::config::DEFAULT_BACKEND {
            "dns".to_string()
        } else {
            format!("dns.{name}")
        }
    };
    let builtin =
        |b: &crate::config::Backend| matches!(b.built, crate::dns::BuiltBackend::Builtin(_));
    let mut lines = Vec::new();
    for n in &new.dns.backends {
        match old.dns.get(&n.name) {
            Some(o) if o.table != n.table => lines.push(format!(
                "{file}: {}: changed: restart to apply",
                key(new, &n.name)
            )),
            None if builtin(n) => lines.push(format!(
                "{file}: {}: a built-in server added: restart to apply",
                key(new, &n.name)
            )),
            _ => {}
        }
    }
    for o in &old.dns.backends {
        if new.dns.get(&o.name).is_none() && builtin(o) {
            lines.push(format!(
                "{file}: {}: a built-in server removed: restart to apply",
                key(old, &o.name)
            ));
        }
    }
    lines
}

/// Equal settings, witnesses compared by name (their indices shift when others are added or
/// removed).
fn same_service(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    let strip = |s: &ServiceConfig| ServiceConfig {
        witnesses: Vec::new(),
        ..s.clone()
    };
    strip(a) == strip(b)
}

/// The dependencies services started from `config` share.
pub(crate) fn deps(
    config: &Config,
    store: &Store,
    metrics: &Arc<Metrics>,
    notifier: &Notifier,
    started: &compose::Started,
    alerts: &crate::readiness::AlertMemory,
    reliability: &crate::witnesses::reliability::Registry,
) -> anyhow::Result<Arc<ServiceDeps>> {
    let mut witnesses = Vec::new();
    for w in &config.witnesses {
        if w.cert_sha256.is_none() {
            info!(witness = %w.name, "witness TLS certificate not pinned; votes are still verified with its ed25519 key");
        }
        witnesses.push(Arc::new(
            WitnessClient::sharing(w.clone(), reliability).map_err(anyhow::Error::msg)?,
        ));
    }
    let mut dns = BTreeMap::new();
    for b in &config.dns.backends {
        let backend = started
            .backends
            .get(&b.name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("DNS backend {:?} is not running", b.name))?;
        dns.insert(
            b.name.clone(),
            Arc::new(DnsDeps {
                label: b.label(),
                backend,
                authorities: crate::readiness::checks::AuthoritySettings::of(b),
            }),
        );
    }
    Ok(Arc::new(ServiceDeps {
        store: store.clone(),
        metrics: metrics.clone(),
        notifier: notifier.clone(),
        dns,
        witnesses,
        prober: Arc::new(shared::probe::Prober::new(config.probe_roots.clone())),
        key: Arc::new(config.signing_key.clone()),
        key_id: config.key_id.clone(),
        readiness: config.readiness.clone(),
        alerts: alerts.clone(),
        dns_pending_after: config.notify.dns_pending_after,
        overdue_budget: std::sync::Mutex::new(crate::failover::mesh::OverdueBudget::for_services(
            steady_probes_per_second(&config.services),
        )),
    }))
}

/// Probes and vote requests a second the services make in steady state: each vantage point
/// (the coordinator and every witness of a service) once per interval.
fn steady_probes_per_second(services: &[ServiceConfig]) -> u64 {
    services
        .iter()
        .map(|s| {
            let points = s.witnesses.len() as u64 + 1;
            (points * 1000).div_ceil((s.interval.as_millis() as u64).max(1))
        })
        .sum()
}

/// A running service: its handle and the supervisor its tasks run under.
struct RunningService {
    handle: ServiceHandle,
    sup: Supervisor,
}

/// The running set: what a reload compares with and changes.
pub struct Running {
    config: Config,
    sup: Supervisor,
    store: Store,
    metrics: Arc<Metrics>,
    notifier: Notifier,
    dns: compose::Started,
    services: BTreeMap<String, RunningService>,
    live: LiveCell,
    /// Which services have a "not ready" alert out: kept across a service's restart by a
    /// reload, so the fix applied by that reload still gets its "ready again".
    alerts: crate::readiness::AlertMemory,
    /// Every witness's reliability window, kept across reloads.
    reliability: crate::witnesses::reliability::Registry,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Starts every service of `config`, each under its own child of `sup`.
    pub(crate) async fn start(
        config: Config,
        sup: Supervisor,
        store: Store,
        metrics: Arc<Metrics>,
        notifier: Notifier,
        dns: compose::Started,
    ) -> anyhow::Result<Running> {
        let alerts = crate::readiness::AlertMemory::default();
        let reliability = crate::witnesses::reliability::Registry::default();
        let deps = deps(
            &config,
            &store,
            &metrics,
            &notifier,
            &dns,
            &alerts,
            &reliability,
        )?;
        let mut services = BTreeMap::new();
        for svc in config.services.iter().cloned() {
            let running = spawn(&deps, svc, &sup).await?;
            services.insert(running.handle.name.clone(), running);
        }
        let live = LiveCell::default();
        let running = Running {
            config,
            sup,
            store,
            metrics,
            notifier,
            dns,
            services,
            live,
            alerts,
            reliability,
        };
        running.publish();
        Ok(running)
    }

    /// The running services' handles, by name.
    pub fn handles(&self) -> std::collections::HashMap<String, ServiceHandle> {
        self.services
            .iter()
            .map(|(n, r)| (n.clone(), r.handle.clone()))
            .collect()
    }

    /// What the API reads; follows every reload.
    pub fn live(&self) -> LiveCell {
        self.live.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn publish(&self) {
        self.live.set(Live {
            services: self.handles(),
            witnesses: self.config.witnesses.clone(),
            keys: crate::ledger::KeySet::from_config(&self.config),
            reliability: self.reliability.clone(),
        });
    }

    /// Reads the config file again and applies it, or refuses it (logged and notified).
    pub async fn reload(&mut self) -> Outcome {
        let path = self.config.path.clone();
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || config::load(&path)).await
        };
        let new = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(diagnostics)) => {
                return self.refuse(&path, diagnostics.iter().map(|d| d.to_string()).collect());
            }
            Err(e) => return self.refuse(&path, vec![format!("reading the config failed: {e}")]),
        };
        let plan = match plan(&self.config, &new) {
            Ok(p) => p,
            Err(lines) => return self.refuse(&path, lines),
        };
        if let Err(e) = self.apply(&plan, new).await {
            // The new config was valid, but a service could not be started: said loudly, and
            // the rest of the reload stands.
            error!(error = %format!("{e:#}"), "config reload: a service could not be started");
            self.notifier.send(Notice::new(
                "coordinator",
                crate::notify::Event::ConfigReload,
                format!("config reload: a service could not be started: {e:#}"),
                shared::unix_ms(std::time::SystemTime::now()),
            ));
        }
        Outcome::Applied(plan)
    }

    fn refuse(&self, path: &Path, lines: Vec<String>) -> Outcome {
        for line in &lines {
            error!(config = %path.display(), "config reload refused: {line}");
        }
        warn!(
            errors = lines.len(),
            "config reload refused; the running config stays as it was"
        );
        self.notifier.send(Notice::new(
            "coordinator",
            crate::notify::Event::ConfigReload,
            format!("config reload refused: {}", lines.join("; ")),
            shared::unix_ms(std::time::SystemTime::now()),
        ));
        Outcome::Refused(lines)
    }

    async fn apply(&mut self, plan: &Plan, new: Config) -> anyhow::Result<()> {
        let s = &plan.services;
        // Stopped all at once: each drains for at most GRACE, together as long as the slowest.
        let stopping: Vec<(String, RunningService)> = s
            .changed
            .iter()
            .chain(&s.removed)
            .filter_map(|n| self.services.remove(n).map(|r| (n.clone(), r)))
            .collect();
        let stopped = futures::future::join_all(
            stopping
                .iter()
                .map(|(_, r)| r.sup.stop(shared::shutdown::GRACE)),
        )
        .await;
        for ((name, _), ok) in stopping.iter().zip(stopped) {
            if !ok {
                warn!(service = %name, "service did not stop within {:?}; going on anyway", shared::shutdown::GRACE);
            }
        }
        for (backend, change) in served_changes(&self.config, &new, plan, &self.store)? {
            let Some(builtin) = self.dns.builtin_of(&backend) else {
                continue;
            };
            // One swap per zone: queries see the old records or the new ones, never neither.
            match builtin.apply_change(&change, true) {
                Ok(serial) => info!(
                    serial,
                    zone = %change.zone,
                    "built-in DNS: records of added and removed services swapped in"
                ),
                Err(e) => {
                    error!(error = %e, zone = %change.zone, "built-in DNS: the records of the reloaded services could not be served")
                }
            }
        }
        // Backends a reload may add (validated and built already) join the running set.
        for b in &new.dns.backends {
            if let crate::dns::BuiltBackend::Ready(backend) = &b.built {
                self.dns
                    .backends
                    .entry(b.name.clone())
                    .or_insert_with(|| backend.clone());
            }
        }
        let old = std::mem::replace(&mut self.config, new);
        drop(old);
        let mut first_error = None;
        if !(s.added.is_empty() && s.changed.is_empty()) {
            let deps = deps(
                &self.config,
                &self.store,
                &self.metrics,
                &self.notifier,
                &self.dns,
                &self.alerts,
                &self.reliability,
            )?;
            for name in s.added.iter().chain(&s.changed) {
                let Some(svc) = self.config.services.iter().find(|c| &c.name == name) else {
                    continue;
                };
                match spawn(&deps, svc.clone(), &self.sup).await {
                    Ok(r) => {
                        self.services.insert(name.clone(), r);
                    }
                    Err(e) => {
                        first_error.get_or_insert(e.context(format!("service {name:?}")));
                    }
                }
            }
        }
        self.publish();
        let w = &plan.witnesses;
        info!(
            key_id = %self.config.key_id,
            services_added = ?s.added,
            services_changed = ?s.changed,
            services_removed = ?s.removed,
            witnesses_added = ?w.added,
            witnesses_changed = ?w.changed,
            witnesses_removed = ?w.removed,
            "config reloaded{}",
            if s.is_empty() && w.is_empty() { ": nothing changed" } else { "" },
        );
        first_error.map_or(Ok(()), Err)
    }
}

/// Starts `svc` under a child of `sup`.
async fn spawn(
    deps: &Arc<ServiceDeps>,
    svc: ServiceConfig,
    sup: &Supervisor,
) -> anyhow::Result<RunningService> {
    let child = sup.child();
    let handle = service::spawn_service(deps.clone(), svc, &child).await?;
    Ok(RunningService { handle, sup: child })
}

/// The built-in servers' records to swap for a reload: per backend, the records of removed
/// and changed services dropped, those of added and changed services (at their stored side)
/// put in. One change per backend (a built-in backend is one zone).
fn served_changes(
    old: &Config,
    new: &Config,
    plan: &Plan,
    store: &Store,
) -> anyhow::Result<Vec<(String, Change)>> {
    let find = |c: &Config, n: &str| c.services.iter().find(|s| s.name == n).cloned();
    // backend → (zone, records)
    let mut by_backend: BTreeMap<String, (String, Vec<RecordSet>)> = BTreeMap::new();
    let mut put = |svc: &ServiceConfig, set: RecordSet| {
        let (_, to) = by_backend
            .entry(svc.dns.clone())
            .or_insert_with(|| (svc.zone.clone(), Vec::new()));
        match to.iter().position(|t| t.same_key(&set)) {
            Some(i) => to[i] = set,
            None => to.push(set),
        }
    };
    let empty = |s: &RecordSet| RecordSet::new(s.name.clone(), s.rtype, s.ttl, Vec::new());
    let s = &plan.services;
    // Removals first, so that a name moved to another service ends up served.
    for name in s.removed.iter().chain(&s.changed) {
        if let Some(o) = find(old, name)
            && !find(new, name).is_some_and(|n| same_records(&o, &n))
        {
            for r in o.records_for(Side::Primary) {
                put(&o, empty(&r));
            }
        }
    }
    for name in s.added.iter().chain(&s.changed) {
        if let Some(n) = find(new, name)
            && !find(old, name).is_some_and(|o| same_records(&o, &n))
        {
            let side = compose::stored_side(store, name)?;
            for r in n.records_for(side) {
                put(&n, r);
            }
        }
    }
    Ok(by_backend
        .into_iter()
        .filter(|(_, (_, to))| !to.is_empty())
        .map(|(backend, (zone, to))| {
            let from = to.iter().map(empty).collect();
            (backend, Change { zone, from, to })
        })
        .collect())
}

/// Whether two versions of a service serve the same records on both sides.
fn same_records(a: &ServiceConfig, b: &ServiceConfig) -> bool {
    [Side::Primary, Side::Backup]
        .into_iter()
        .all(|side| a.records_for(side) == b.records_for(side))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
