//! A service: one task per configured service probes the primary and the backup and asks
//! each witness for a signed vote, each at its own phase of the interval, and holds a
//! confirmation round with every witness at once when any of them sees the primary down
//! (`mesh`, `failover::mesh`); it feeds each round to the pure
//! `failover::step`, turns the actions into a record (`record`, pure as well), writes it to the
//! history in one transaction and only then acts: the DNS change goes to the service's DNS
//! worker (`dns_worker`: pending → applied, retried with backoff, verified, hooks), notices to
//! the notifier. After a crash, pending changes are reconciled against what DNS serves
//! (`reconcile`). Every task is supervised (`crate::supervise`).
//!
//! Invariant: nothing is acted on before the decision is in the history; a DNS change is
//! `pending` before it is sent; a history write that fails is logged, counted and retried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use ed25519_dalek::SigningKey;
use serde::Serialize;
use shared::probe::Prober;
use shared::protocol::KeyId;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument as _, info, info_span, warn};

use crate::config::ServiceConfig;
use crate::dns::DnsBackend;
use crate::failover::{Observation, Override, Side, State, VoteTally};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Store;
use crate::supervise::Supervisor;
use crate::witnesses::WitnessClient;

mod checkpoint;
mod dns_worker;
mod history;
mod mesh;
mod readiness;
mod reconcile;
pub mod record;
mod task;

/// What every service task shares: the history, metrics, notifier, DNS backends, witness
/// clients, prober and the coordinator's signing key.
pub struct ServiceDeps {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    /// Every DNS backend, by name; a service uses the one its config names.
    pub dns: BTreeMap<String, Arc<DnsDeps>>,
    pub witnesses: Vec<Arc<WitnessClient>>,
    pub prober: Arc<Prober>,
    pub key: Arc<SigningKey>,
    pub key_id: KeyId,
    pub readiness: crate::config::ReadinessConfig,
    /// Services with a "not ready" alert out, across restarts by a reload.
    pub alerts: crate::readiness::AlertMemory,
    /// `notify.dns_pending_after`: a change pending this long is a `dns-pending` notice.
    pub dns_pending_after: Duration,
    /// Overdue suspicions that may start confirmation rounds, shared by every service.
    pub overdue_budget: std::sync::Mutex<crate::failover::mesh::OverdueBudget>,
}

/// One DNS backend as its services use it: the backend, and where the zone's authoritative
/// servers are found to verify a change (and for the readiness survey).
pub struct DnsDeps {
    /// How the history and the messages name it: its type, with its name when backends are
    /// named (`edge (cloudflare)`).
    pub label: String,
    pub backend: Arc<dyn DnsBackend>,
    /// `verify`: the servers listed (or the backend's own), NS discovery, timeout. Nothing
    /// listed: changes are not verified on any server.
    pub authorities: crate::readiness::checks::AuthoritySettings,
}

impl std::fmt::Debug for DnsDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsDeps")
            .field("label", &self.label)
            .field("authorities", &self.authorities)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ServiceDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceDeps")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A service's live status, published after every step (the API reads it).
#[derive(Clone, Debug, Serialize)]
pub struct ServiceStatus {
    pub service: String,
    pub state: String,
    pub active: Side,
    #[serde(rename = "override")]
    pub override_: Override,
    pub primary_up: Option<bool>,
    pub backup_up: Option<bool>,
    pub last_votes: VoteTally,
    pub last_tick_ms: u64,
    pub awaiting_manual_failback: bool,
    pub damped: bool,
    pub blocked: bool,
    pub dns_pending: bool,
    /// The names of the witnesses this service asks, in the configured order.
    pub witnesses: Vec<String>,
    /// Set when one of the service's tasks ended (panicked or returned): the rest of this
    /// status is the last reading before it did, not a live one. Absent while healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// After a change failed permanently: what the DNS server actually answers (it may be
    /// neither side after a hand edit). Cleared when a change is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_serves: Option<String>,
    /// Would a failover work now? (`docs/readiness.md`)
    pub readiness: crate::readiness::ReadinessStatus,
}

/// An operator's command to one service.
#[derive(Debug)]
pub enum Command {
    /// The override, and the API token role that set it (for the history and notices).
    SetOverride(
        Override,
        &'static str,
        oneshot::Sender<Result<String, String>>,
    ),
    /// A failback, and the role that asked for it. While a failback waits on a failing
    /// pre-failback gate, it skips the gate.
    ManualFailback(&'static str, oneshot::Sender<Result<String, String>>),
}

/// How the API and CLI reach a running service.
#[derive(Clone, Debug)]
pub struct ServiceHandle {
    pub name: String,
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<ServiceStatus>,
}

impl ServiceHandle {
    pub fn current(&self) -> ServiceStatus {
        self.status.borrow().clone()
    }
}

/// A DNS change handed to the service's DNS worker.
#[derive(Debug, Clone)]
struct Job {
    id: i64,
    to: Side,
    change: crate::dns::Change,
    reason: String,
}

/// A stable offset in `[0, interval)` derived from the service name (FNV-1a), so services
/// spread over the interval and a restart keeps each one's phase.
fn phase_offset(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

fn now_ms() -> u64 {
    shared::unix_ms(SystemTime::now())
}

/// Starts a service's task and DNS worker, both supervised; returns its handle.
pub async fn spawn_service(
    deps: Arc<ServiceDeps>,
    svc: ServiceConfig,
    sup: &Supervisor,
) -> anyhow::Result<ServiceHandle> {
    let name = svc.name.clone();
    let dns = deps.dns.get(&svc.dns).cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "service {name:?}: no DNS backend named {:?} is running",
            svc.dns
        )
    })?;
    let state = {
        let n = name.clone();
        deps.store.call(move |s| s.load_state(&n)).await?
    }
    .unwrap_or_else(|| State::new(Side::Primary));
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (status_tx, status_rx) = watch::channel(status_of(&svc, &state, None, false));
    let (job_tx, job_rx) = mpsc::channel::<Job>(16);
    let (failed_tx, failed_rx) = mpsc::channel::<(Side, String)>(16);
    let target = record::Target {
        service: svc.name.clone(),
        zone: svc.zone.clone(),
        backend: dns.label.clone(),
        primary: svc.records_for(Side::Primary),
        backup: svc.records_for(Side::Backup),
        policy: svc.policy.clone(),
    };
    let svc = Arc::new(svc);
    let pending_flag = DnsPending {
        flag: Arc::new(AtomicBool::new(false)),
        status: status_tx.clone(),
        gate_waiting: Arc::new(AtomicBool::new(false)),
        gate_skip: Arc::new(tokio::sync::Notify::new()),
    };
    let history = Arc::new(history::History::new(
        deps.store.clone(),
        deps.metrics.clone(),
    ));

    let span = info_span!("service", service = %name);
    let worker = dns_worker::Worker {
        service: name.clone(),
        hooks: svc.hooks.clone(),
        dns: dns.clone(),
        metrics: deps.metrics.clone(),
        notifier: deps.notifier.clone(),
        history: history.clone(),
        failed: failed_tx,
        pending_flag: pending_flag.clone(),
        pending_after: deps.dns_pending_after,
        shutdown: sup.shutdown().clone(),
    };
    sup.spawn(
        format!("dns-worker:{name}"),
        dns_worker::run(worker, job_rx).instrument(span.clone()),
        mark_failed(status_tx.clone(), "dns worker"),
    );
    let (side_tx, side_rx) = watch::channel(None);
    let check = crate::readiness::checks::Ctx {
        svc: svc.clone(),
        backend: dns.backend.clone(),
        witnesses: svc
            .witnesses
            .iter()
            .map(|&i| deps.witnesses[i].clone())
            .collect(),
        key: deps.key.clone(),
        key_id: deps.key_id.clone(),
        authorities: dns.authorities.clone(),
        every: deps.readiness.interval,
    };
    let now_side = {
        let status = status_rx.clone();
        move || {
            let s = status.borrow();
            (s.active, s.dns_pending)
        }
    };
    sup.spawn(
        format!("readiness:{name}"),
        crate::readiness::checks::run(check, now_side, side_tx, sup.shutdown().clone())
            .instrument(span.clone()),
        mark_failed(status_tx.clone(), "readiness task"),
    );
    let tracker = readiness::Tracker::new(&deps.readiness, side_rx, deps.alerts.clone(), &name);
    let (mesh, inbox) = task::MeshState::new(svc.witnesses.len(), svc.interval);
    let task = task::ServiceTask {
        readiness: tracker,
        mesh,
        deps,
        dns,
        svc,
        target,
        history,
        state,
        persisted: None,
        unrecorded: Vec::new(),
        status_tx: status_tx.clone(),
        job_tx,
        pending_flag,
        last_obs: None,
    };
    sup.spawn(
        format!("service:{name}"),
        task.run(cmd_rx, failed_rx, inbox, sup.shutdown().clone())
            .instrument(span),
        mark_failed(status_tx.clone(), "service task"),
    );
    Ok(ServiceHandle {
        name,
        commands: cmd_tx,
        status: status_rx,
    })
}

/// What a supervised task of the service does when it ends: the status says the service
/// failed (and why) instead of showing its last reading as if it were live.
fn mark_failed(
    status: watch::Sender<ServiceStatus>,
    what: &'static str,
) -> impl FnOnce(&crate::supervise::Exit) + Send + 'static {
    move |exit| {
        let why = format!("{what} {exit}");
        status.send_modify(|s| s.failed = Some(why));
    }
}

fn status_of(
    svc: &ServiceConfig,
    s: &State,
    obs: Option<(Observation, u64)>,
    pending: bool,
) -> ServiceStatus {
    let mut status = ServiceStatus {
        service: svc.name.clone(),
        state: String::new(),
        active: s.active,
        override_: s.override_,
        primary_up: None,
        backup_up: None,
        last_votes: VoteTally::default(),
        last_tick_ms: 0,
        awaiting_manual_failback: false,
        damped: false,
        blocked: false,
        dns_pending: pending,
        witnesses: svc.witness_names.clone(),
        failed: None,
        dns_serves: None,
        readiness: crate::readiness::ReadinessStatus::unknown(),
    };
    decided(&mut status, s, obs, pending);
    status
}

/// Sets the fields of the status that a step of the decision owns; the others (a task's
/// failure mark, what DNS serves after a failed change, readiness) belong to their own writers
/// and are left as they are.
fn decided(status: &mut ServiceStatus, s: &State, obs: Option<(Observation, u64)>, pending: bool) {
    status.state = s.label().to_string();
    status.active = s.active;
    status.override_ = s.override_;
    status.primary_up = obs.map(|(o, _)| o.primary_up);
    status.backup_up = obs.map(|(o, _)| o.backup_up);
    status.last_votes = obs.map(|(o, _)| o.votes).unwrap_or_default();
    status.last_tick_ms = obs.map(|(_, t)| t).unwrap_or(0);
    status.awaiting_manual_failback = s.awaiting_manual_failback;
    status.damped = s.damped;
    status.blocked = s.blocked.is_some();
    status.dns_pending = pending;
}

/// Whether a DNS change is on its way: set by the service task when it hands a change to the
/// DNS worker, cleared by the worker when the change is applied or has failed, and published in
/// the service's status at once (not only at the next tick).
#[derive(Clone)]
struct DnsPending {
    flag: Arc<AtomicBool>,
    status: watch::Sender<ServiceStatus>,
    /// Set by the DNS worker while a failback waits on its failing pre-failback gate.
    gate_waiting: Arc<AtomicBool>,
    /// An operator's failback while the gate waits: the worker skips the gate.
    gate_skip: Arc<tokio::sync::Notify>,
}

impl DnsPending {
    fn set(&self, pending: bool) {
        self.flag.store(pending, Ordering::SeqCst);
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.dns_pending, pending) != pending);
    }

    fn get(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

pub use checkpoint::checkpoint_loop;

/// How often retention runs: hourly keeps each run small (an hour of rounds) without
/// mattering for a window measured in days.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Deletes old history every [`RETENTION_EVERY`] (the first run at once), each time after a
/// checkpoint signed with `key` that commits to what is deleted.
pub async fn retention_loop(
    store: Store,
    metrics: Arc<Metrics>,
    keep: Duration,
    key: Arc<SigningKey>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(RETENTION_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                let keep_ms = keep.as_millis() as u64;
                match store.retain(now_ms(), keep_ms, key.clone()).await {
                    Ok(n) if n > 0 => info!(rounds = n, "retention: old rounds deleted"),
                    Ok(_) => {}
                    Err(e) => {
                        metrics
                            .history_write_failures
                            .get_or_create(&crate::metrics::WriteLabel { what: "retention".into() })
                            .inc();
                        warn!(error = %e, "retention failed; tried again in an hour");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
