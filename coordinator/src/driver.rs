//! The driver: the only place that acts. One task per service probes the primary and the
//! backup and, in parallel, asks every witness for a fresh signed vote; it feeds the result
//! to the pure `failover::step` and carries out the actions it returns: history first (one
//! transaction: state, round with every raw vote, pending DNS change), then the DNS change on
//! the service's DNS worker (pending → applied, retried with backoff, verified), hooks and
//! notifications. After a crash, pending changes are reconciled against what DNS serves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use serde::Serialize;
use shared::probe::Prober;
use shared::protocol::{KeyId, NONCE_LEN, PROTOCOL_VERSION, Verdict, VoteRequest};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, info_span, warn};

use crate::config::ServiceConfig;
use crate::dns::{Change, DnsBackend, DnsError, RecordSet};
use crate::failover::{self, Action, Event, Observation, Override, Side, State, VoteTally};
use crate::hooks::{self, HookOutcome};
use crate::metrics::{DnsLabel, InvalidLabel, Metrics, RoundLabel, ServiceLabel, WitnessLabel};
use crate::notify::{Notice, Notifier};
use crate::store::{Decision, NewRound, PendingChange, Store, VoteRecord};
use crate::witnesses::{Answer, WitnessClient};

/// What every service task shares.
pub struct Runtime {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub notifier: Notifier,
    pub backend: Arc<dyn DnsBackend>,
    pub witnesses: Vec<Arc<WitnessClient>>,
    pub prober: Arc<Prober>,
    pub key: Arc<SigningKey>,
    pub key_id: KeyId,
    /// Authoritative servers to check after each change (empty: no verification).
    pub verify_servers: Vec<SocketAddr>,
    pub verify_timeout: Duration,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
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
}

/// An operator's command to one service.
#[derive(Debug)]
pub enum Command {
    SetOverride(Override, oneshot::Sender<Result<String, String>>),
    ManualFailback(oneshot::Sender<Result<String, String>>),
}

/// How the API and CLI reach a running service.
#[derive(Clone, Debug)]
pub struct ServiceHandle {
    pub name: String,
    pub commands: mpsc::Sender<Command>,
    pub status: watch::Receiver<ServiceStatus>,
}

/// A DNS change handed to the service's DNS worker.
#[derive(Debug, Clone)]
struct Job {
    id: i64,
    to: Side,
    change: Change,
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

fn random_nonce() -> String {
    let mut n = [0u8; NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .expect("the OS random source is available");
    hex::encode(n)
}

/// The state without its per-tick counters: persisted only when this changes, so a healthy
/// service costs no writes.
fn persistent(s: &State) -> State {
    let mut p = s.clone();
    p.primary_down_streak = 0;
    p.primary_up_streak = 0;
    p.backup_down_streak = 0;
    p.ticks_since_start = 0;
    p
}

/// Starts a service's task and DNS worker; returns its handle.
pub async fn spawn_service(
    rt: Arc<Runtime>,
    svc: ServiceConfig,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<ServiceHandle> {
    let name = svc.name.clone();
    let stored = {
        let n = name.clone();
        rt.store.call(move |s| s.load_state(&n)).await?
    };
    let state = match stored {
        Some(json) => serde_json::from_str::<State>(&json).map_err(|e| {
            anyhow::anyhow!("service {name}: stored state is unreadable ({e}); refusing to guess where DNS points")
        })?,
        None => State::new(Side::Primary),
    };
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (status_tx, status_rx) = watch::channel(status_of(&svc, &state, None, false));
    let (job_tx, job_rx) = mpsc::channel::<Job>(16);
    let (failed_tx, failed_rx) = mpsc::channel::<(Side, String)>(16);
    let svc = Arc::new(svc);
    let pending_flag = DnsPending {
        flag: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        status: status_tx.clone(),
    };

    let span = info_span!("service", service = %name);
    tasks.spawn(
        dns_worker(
            rt.clone(),
            svc.clone(),
            job_rx,
            failed_tx,
            pending_flag.clone(),
            shutdown.clone(),
        )
        .instrument(span.clone()),
    );
    let task = ServiceTask {
        rt,
        svc,
        state,
        persisted: None,
        status_tx,
        job_tx,
        pending_flag,
        last_obs: None,
    };
    tasks.spawn(task.run(cmd_rx, failed_rx, shutdown).instrument(span));
    Ok(ServiceHandle {
        name,
        commands: cmd_tx,
        status: status_rx,
    })
}

fn status_of(
    svc: &ServiceConfig,
    s: &State,
    obs: Option<(Observation, u64)>,
    pending: bool,
) -> ServiceStatus {
    ServiceStatus {
        service: svc.name.clone(),
        state: s.label().to_string(),
        active: s.active,
        override_: s.override_,
        primary_up: obs.map(|(o, _)| o.primary_up),
        backup_up: obs.map(|(o, _)| o.backup_up),
        last_votes: obs.map(|(o, _)| o.votes).unwrap_or_default(),
        last_tick_ms: obs.map(|(_, t)| t).unwrap_or(0),
        awaiting_manual_failback: s.awaiting_manual_failback,
        damped: s.damped,
        blocked: s.blocked.is_some(),
        dns_pending: pending,
    }
}

/// Whether a DNS change is on its way: set by the service task when it hands a change to the
/// DNS worker, cleared by the worker when the change is applied or has failed, and published in
/// the service's status at once (not only at the next tick).
#[derive(Clone)]
struct DnsPending {
    flag: Arc<std::sync::atomic::AtomicBool>,
    status: watch::Sender<ServiceStatus>,
}

impl DnsPending {
    fn set(&self, pending: bool) {
        self.flag
            .store(pending, std::sync::atomic::Ordering::SeqCst);
        self.status
            .send_if_modified(|s| std::mem::replace(&mut s.dns_pending, pending) != pending);
    }

    fn get(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct ServiceTask {
    rt: Arc<Runtime>,
    svc: Arc<ServiceConfig>,
    state: State,
    persisted: Option<State>,
    status_tx: watch::Sender<ServiceStatus>,
    job_tx: mpsc::Sender<Job>,
    pending_flag: DnsPending,
    last_obs: Option<(Observation, u64)>,
}

impl ServiceTask {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut failed: mpsc::Receiver<(Side, String)>,
        shutdown: CancellationToken,
    ) {
        self.persisted = Some(persistent(&self.state));
        info!(state = self.state.label(), "service starting");
        // A failed write is logged inside; the state stays as loaded.
        let _ = self.feed(Event::Started, None).await;
        self.reconcile().await;

        // Each service ticks at its own fixed phase of the interval: with many services in
        // phase, every probe and vote request of the interval would leave in one burst (at
        // 1,000 services that burst made ~1% of votes miss their deadline).
        let first = tokio::time::Instant::now() + phase_offset(&self.svc.name, self.svc.interval);
        let mut ticker = tokio::time::interval_at(first, self.svc.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let label = ServiceLabel {
            service: self.svc.name.clone(),
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(cmd) = cmds.recv() => self.command(cmd).await,
                Some((to, why)) = failed.recv() => {
                    let _ = self.feed(Event::SwitchFailed { to, permanent: true }, None).await;
                    warn!(to = %to, reason = %why, "switch failed permanently; automatic switching blocked until an operator sets an override");
                }
                t = ticker.tick() => {
                    let late = t.elapsed();
                    if late > self.svc.interval {
                        self.rt.metrics.late_ticks.get_or_create(&label).inc();
                        warn!(late_ms = late.as_millis() as u64, "probe interval started late");
                    }
                    self.rt.metrics.ticks.get_or_create(&label).inc();
                    self.tick().await;
                }
            }
        }
        info!("service stopped");
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::SetOverride(o, reply) => {
                let r = self
                    .feed(Event::SetOverride(o), None)
                    .await
                    .map(|()| format!("override {} set; {}", o.as_str(), self.state.label()));
                let _ = reply.send(r);
            }
            Command::ManualFailback(reply) => {
                let before = self.state.active;
                let r = self.feed(Event::ManualFailback, None).await.map(|()| {
                    if before == Side::Backup && self.state.active == Side::Primary {
                        "failback started".to_string()
                    } else {
                        format!(
                            "no failback: {} (see the events for why)",
                            self.state.label()
                        )
                    }
                });
                let _ = reply.send(r);
            }
        }
    }

    /// One probe interval: own probes and witness votes, all at once.
    async fn tick(&mut self) {
        let now = now_ms();
        let svc = self.svc.clone();
        let request = VoteRequest {
            version: PROTOCOL_VERSION,
            coordinator: self.rt.key_id.clone(),
            service: svc.name.clone(),
            round: now,
            nonce: random_nonce(),
            issued_at_ms: now,
            target: svc.primary_probe.clone(),
        };
        let (envelope, hash) = request.sign(&self.rt.key);
        let body = Bytes::from(envelope.to_json());
        let request_json = String::from_utf8_lossy(&body).into_owned();
        let asks = svc.witnesses.iter().map(|&i| {
            let w = self.rt.witnesses[i].clone();
            let (body, json, svc_name) = (body.clone(), request_json.clone(), svc.name.clone());
            async move { w.ask(&json, body, &hash, &svc_name, now).await }
        });
        let (primary, backup, answers) = tokio::join!(
            self.rt.prober.run(&svc.primary_probe),
            self.rt.prober.run(&svc.backup_probe),
            futures::future::join_all(asks),
        );
        let votes = self.tally(&answers);
        let obs = Observation {
            primary_up: primary.is_up(),
            backup_up: backup.is_up(),
            votes,
        };
        debug!(primary_up = obs.primary_up, backup_up = obs.backup_up, votes = %votes, "tick");
        let label = ServiceLabel {
            service: svc.name.clone(),
        };
        self.rt
            .metrics
            .primary_up
            .get_or_create(&label)
            .set(obs.primary_up as i64);
        self.rt
            .metrics
            .backup_up
            .get_or_create(&label)
            .set(obs.backup_up as i64);
        self.last_obs = Some((obs, now));
        let records: Vec<VoteRecord> = answers.into_iter().map(|a| a.record).collect();
        // A failed write is logged inside; the next tick decides again.
        let _ = self.feed(Event::Tick(obs), Some(records)).await;
    }

    fn tally(&self, answers: &[Answer]) -> VoteTally {
        let mut t = VoteTally::default();
        for a in answers {
            let wl = WitnessLabel {
                witness: a.witness.clone(),
            };
            match (&a.vote, &a.record.vote_envelope) {
                (Some(v), _) => {
                    self.rt
                        .metrics
                        .vote_latency
                        .get_or_create(&wl)
                        .observe(a.latency.as_secs_f64());
                    match v.verdict {
                        Verdict::Up => t.up += 1,
                        Verdict::Down => t.down += 1,
                    }
                }
                (None, Some(_)) => {
                    t.invalid += 1;
                    let reason = a.record.error.clone().unwrap_or_default();
                    // The stable code, never the text: a label per request hash would grow
                    // the metric without bound.
                    let code = a.invalid_code.unwrap_or("malformed").to_string();
                    self.rt
                        .metrics
                        .invalid_votes
                        .get_or_create(&InvalidLabel {
                            witness: a.witness.clone(),
                            reason: code,
                        })
                        .inc();
                    warn!(witness = %a.witness, %reason, "invalid vote");
                }
                (None, None) => {
                    t.missing += 1;
                    self.rt.metrics.votes_missing.get_or_create(&wl).inc();
                    debug!(witness = %a.witness, reason = a.record.error.as_deref().unwrap_or(""), "no vote");
                }
            }
        }
        t
    }

    /// Runs the decision function and carries out what it returns.
    /// Errs (and changes nothing) when the decision could not be written to the history.
    async fn feed(&mut self, event: Event, votes: Option<Vec<VoteRecord>>) -> Result<(), String> {
        let now = now_ms();
        let (next, actions) = failover::step(&self.svc.policy, &self.state, event, now);
        let obs = self.last_obs.map(|(o, _)| o).unwrap_or_default();
        let svc = self.svc.clone();
        let mut d = Decision {
            service: svc.name.clone(),
            at_ms: now,
            ..Default::default()
        };
        let p = persistent(&next);
        if self.persisted.as_ref() != Some(&p) {
            d.state_json = Some(serde_json::to_string(&p).expect("state serialises"));
        }
        let mut switch = None;
        let mut notices = Vec::new();
        for a in actions {
            match a {
                Action::Switch { to, reason } => {
                    let change = Change {
                        zone: svc.zone.clone(),
                        from: svc.records_for(to.other()),
                        to: svc.records_for(to),
                    };
                    d.dns_change = Some(PendingChange {
                        to_side: to.as_str().to_string(),
                        backend: self.rt.backend.kind().to_string(),
                        change_json: serde_json::to_string(&change).expect("change serialises"),
                    });
                    switch = Some((to, change, reason));
                }
                Action::RecordRound {
                    trigger,
                    outcome,
                    reason,
                } => {
                    self.rt
                        .metrics
                        .rounds
                        .get_or_create(&RoundLabel {
                            service: svc.name.clone(),
                            outcome: outcome.as_str().into(),
                        })
                        .inc();
                    info!(trigger = trigger.as_str(), outcome = outcome.as_str(), %reason, votes = %obs.votes, "round");
                    d.round = Some(NewRound {
                        service: svc.name.clone(),
                        at_ms: now,
                        trigger: trigger.as_str().into(),
                        outcome: outcome.as_str().into(),
                        reason,
                        primary_up: obs.primary_up,
                        backup_up: obs.backup_up,
                        votes_up: obs.votes.up,
                        votes_down: obs.votes.down,
                        votes_invalid: obs.votes.invalid,
                        votes_missing: obs.votes.missing,
                        changed_dns: false,
                    });
                    if trigger.has_votes()
                        && let Some(v) = &votes
                    {
                        d.votes = v.clone();
                    }
                }
                Action::Alert { kind, message } => {
                    warn!(alert = kind.as_str(), %message, "alert");
                    d.events
                        .push(("alert".into(), format!("{}: {message}", kind.as_str())));
                    notices.push(Notice::new(
                        &svc.name,
                        "alert",
                        format!("{}: {message}", kind.as_str()),
                        now,
                    ));
                }
                Action::Resolve { kind, message } => {
                    info!(alert = kind.as_str(), %message, "alert resolved");
                    d.events
                        .push(("resolved".into(), format!("{}: {message}", kind.as_str())));
                    notices.push(Notice::new(
                        &svc.name,
                        "resolved",
                        format!("{}: {message}", kind.as_str()),
                        now,
                    ));
                }
                Action::Transition { from, to, reason } => {
                    info!(from = %from, to = %to, %reason, "transition");
                    let msg = format!("{from}-active -> {to}-active: {reason}");
                    d.events.push(("transition".into(), msg.clone()));
                    notices.push(Notice::new(&svc.name, "transition", msg, now));
                }
            }
        }
        if let Some(r) = d.round.as_mut() {
            r.changed_dns = d.dns_change.is_some();
        }
        if matches!(event, Event::SetOverride(_)) {
            d.events.push((
                "override".into(),
                format!("operator set {}", next.override_.as_str()),
            ));
        }
        let wrote = d.state_json.is_some()
            || d.round.is_some()
            || !d.events.is_empty()
            || d.dns_change.is_some();
        let mut change_id = None;
        if wrote {
            let d2 = d.clone();
            match self.rt.store.call(move |s| s.record_decision(&d2)).await {
                Ok((_, c)) => change_id = c,
                Err(e) => {
                    // Never act on a decision the history does not hold: keep the old state
                    // and try again next tick.
                    error!(error = %e, "cannot write history; decision not carried out");
                    return Err(format!("history not writable, nothing changed: {e}"));
                }
            }
        }
        self.state = next;
        self.persisted = Some(p);
        for n in notices {
            self.rt.notifier.send(n);
        }
        if let (Some((to, change, reason)), Some(id)) = (switch, change_id) {
            self.pending_flag.set(true);
            if self
                .job_tx
                .send(Job {
                    id,
                    to,
                    change,
                    reason,
                })
                .await
                .is_err()
            {
                error!("DNS worker is gone; change stays pending until restart");
            }
        }
        let label = ServiceLabel {
            service: svc.name.clone(),
        };
        self.rt
            .metrics
            .backup_active
            .get_or_create(&label)
            .set((self.state.active == Side::Backup) as i64);
        // The flag is read under the status lock, so a DNS worker finishing right now cannot
        // have its "applied" overwritten by this (older) reading.
        let (state, obs, pending) = (&self.state, self.last_obs, &self.pending_flag);
        self.status_tx
            .send_modify(|s| *s = status_of(&svc, state, obs, pending.get()));
        Ok(())
    }

    /// After a restart: a change recorded as pending either reached DNS before the crash
    /// (mark it applied, do not send it again) or did not (send it again, same record).
    async fn reconcile(&mut self) {
        let name = self.svc.name.clone();
        let pending = match self
            .rt
            .store
            .call(move |s| s.pending_dns_changes(&name))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot read pending DNS changes");
                return;
            }
        };
        for row in pending {
            let change: Change = match serde_json::from_value(row.change.clone()) {
                Ok(c) => c,
                Err(e) => {
                    error!(id = row.id, error = %e, "unreadable pending change");
                    continue;
                }
            };
            let to = if row.to_side == "backup" {
                Side::Backup
            } else {
                Side::Primary
            };
            if to != self.state.active {
                // The state moved on (cannot normally happen: state and change are written together).
                let _ = self
                    .rt
                    .store
                    .call(move |s| {
                        s.dns_change_finish(
                            row.id,
                            "superseded",
                            now_ms(),
                            Some("state changed before it applied"),
                        )
                    })
                    .await;
                continue;
            }
            let served = self.rt.backend.current(&change.zone, &change.to).await;
            match served {
                Ok(cur) if same_addrs(&cur, &change.to) => {
                    info!(
                        id = row.id,
                        "pending change was applied before the restart; marking it applied"
                    );
                    let svc = self.svc.name.clone();
                    let _ = self
                        .rt
                        .store
                        .call(move |s| {
                            s.dns_change_finish(row.id, "applied", now_ms(), None)?;
                            s.add_event(
                                &svc,
                                now_ms(),
                                "dns-reconciled",
                                &format!("change {} found applied after restart", row.id),
                            )
                        })
                        .await;
                }
                other => {
                    if let Err(e) = &other {
                        warn!(id = row.id, error = %e, "cannot read DNS at start-up; sending the pending change again");
                    } else {
                        info!(
                            id = row.id,
                            "pending change not applied before the restart; sending it again"
                        );
                    }
                    self.pending_flag.set(true);
                    let _ = self
                        .job_tx
                        .send(Job {
                            id: row.id,
                            to,
                            change,
                            reason: "resumed after restart".into(),
                        })
                        .await;
                }
            }
        }
    }
}

/// Same addresses for every RRset key of `want` (TTL aside).
pub fn same_addrs(have: &[RecordSet], want: &[RecordSet]) -> bool {
    want.iter().all(|w| {
        have.iter()
            .find(|h| h.same_key(w))
            .map(|h| {
                let mut a = h.addrs.clone();
                a.sort();
                a == w.addrs
            })
            .unwrap_or(w.addrs.is_empty())
    })
}

async fn dns_worker(
    rt: Arc<Runtime>,
    svc: Arc<ServiceConfig>,
    mut jobs: mpsc::Receiver<Job>,
    failed: mpsc::Sender<(Side, String)>,
    pending_flag: DnsPending,
    shutdown: CancellationToken,
) {
    let mut next: Option<Job> = None;
    loop {
        let mut job = match next.take() {
            Some(j) => j,
            None => tokio::select! {
                j = jobs.recv() => match j { Some(j) => j, None => return },
                _ = shutdown.cancelled() => return,
            },
        };
        // Only the newest decision matters; older ones were marked superseded when it was recorded.
        while let Ok(j) = jobs.try_recv() {
            job = j;
        }
        let payload = serde_json::json!({
            "service": svc.name, "to": job.to.as_str(), "reason": job.reason, "change": job.change,
        });
        let env = [
            ("QUORATE_SERVICE", svc.name.clone()),
            ("QUORATE_TO", job.to.as_str().to_string()),
        ];
        let pre = match job.to {
            Side::Backup => svc.hooks.pre_failover.as_ref().map(|c| (c, false)),
            Side::Primary => svc.hooks.pre_failback.as_ref().map(|c| (c, true)),
        };
        if let Some((cmd, gate)) = pre
            && let HookOutcome::Failed(why) =
                hooks::run(cmd, &payload, &env, svc.hooks.timeout).await
        {
            if gate {
                let msg = format!("pre_failback hook failed, failback not done: {why}");
                error!(%msg);
                finish(&rt, &svc, job.id, "failed", Some(&msg), "dns-failed").await;
                pending_flag.set(false);
                let _ = failed.send((job.to, msg)).await;
                continue;
            }
            warn!(reason = %why, "pre_failover hook failed; failing over anyway");
            let svc_name = svc.name.clone();
            let _ = rt
                .store
                .call(move |s| {
                    s.add_event(
                        &svc_name,
                        now_ms(),
                        "hook-failed",
                        &format!("pre_failover: {why}"),
                    )
                })
                .await;
        }
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        let backend_kind = rt.backend.kind().to_string();
        loop {
            let result = tokio::select! {
                r = rt.backend.apply(&job.change) => r,
                // The change stays pending; the next start reconciles it.
                _ = shutdown.cancelled() => return,
            };
            match result {
                Ok(()) => {
                    let id = job.id;
                    let _ = rt
                        .store
                        .call(move |s| s.dns_change_attempt(id, now_ms(), None))
                        .await;
                    finish(&rt, &svc, job.id, "applied", None, "dns-applied").await;
                    pending_flag.set(false);
                    let lbl = DnsLabel {
                        backend: backend_kind.clone(),
                        result: "applied".into(),
                    };
                    rt.metrics.dns_changes.get_or_create(&lbl).inc();
                    rt.metrics
                        .dns_change_seconds
                        .get_or_create(&lbl)
                        .observe(started.elapsed().as_secs_f64());
                    info!(to = %job.to, id = job.id, elapsed_ms = started.elapsed().as_millis() as u64, "DNS change applied");
                    verify(&rt, &svc, &job).await;
                    let post = match job.to {
                        Side::Backup => svc.hooks.post_failover.as_ref(),
                        Side::Primary => svc.hooks.post_failback.as_ref(),
                    };
                    if let Some(cmd) = post
                        && let HookOutcome::Failed(why) =
                            hooks::run(cmd, &payload, &env, svc.hooks.timeout).await
                    {
                        warn!(reason = %why, "post hook failed");
                        let svc_name = svc.name.clone();
                        let _ = rt
                            .store
                            .call(move |s| s.add_event(&svc_name, now_ms(), "hook-failed", &why))
                            .await;
                    }
                    break;
                }
                Err(e) if e.is_retryable() => {
                    let (id, msg) = (job.id, e.to_string());
                    warn!(id, error = %msg, retry_in_ms = delay.as_millis() as u64, "DNS change failed; will retry");
                    let _ = rt
                        .store
                        .call(move |s| s.dns_change_attempt(id, now_ms(), Some(&msg)))
                        .await;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        j = jobs.recv() => {
                            // A newer decision supersedes this change.
                            if let Some(j) = j { next = Some(j); }
                            break;
                        }
                        _ = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    let msg = describe_permanent(&e);
                    error!(id = job.id, error = %msg, "DNS change failed permanently");
                    let id = job.id;
                    let m2 = msg.clone();
                    let _ = rt
                        .store
                        .call(move |s| s.dns_change_attempt(id, now_ms(), Some(&m2)))
                        .await;
                    finish(&rt, &svc, job.id, "failed", Some(&msg), "dns-failed").await;
                    pending_flag.set(false);
                    rt.metrics
                        .dns_changes
                        .get_or_create(&DnsLabel {
                            backend: backend_kind.clone(),
                            result: e.kind().into(),
                        })
                        .inc();
                    let _ = failed.send((job.to, msg)).await;
                    break;
                }
            }
        }
    }
}

fn describe_permanent(e: &DnsError) -> String {
    match e {
        DnsError::Conflict { .. } => format!(
            "{e}; not overwritten (set force = true, or fix the records by hand and set the override to auto)"
        ),
        _ => e.to_string(),
    }
}

async fn finish(
    rt: &Runtime,
    svc: &ServiceConfig,
    id: i64,
    status: &'static str,
    error: Option<&str>,
    kind: &'static str,
) {
    let (name, err) = (svc.name.clone(), error.map(str::to_string));
    let msg = match &err {
        Some(e) => format!("change {id} {status}: {e}"),
        None => format!("change {id} {status}"),
    };
    let m2 = msg.clone();
    if let Err(e) = rt
        .store
        .call(move |s| {
            s.dns_change_finish(id, status, now_ms(), err.as_deref())?;
            s.add_event(&name, now_ms(), kind, &m2)
        })
        .await
    {
        error!(error = %e, "cannot record DNS change result");
    }
    rt.notifier
        .send(Notice::new(&svc.name, kind, msg, now_ms()));
}

async fn verify(rt: &Runtime, svc: &ServiceConfig, job: &Job) {
    if rt.verify_servers.is_empty() {
        return;
    }
    let checks = crate::dns::verify::verify_served(
        &rt.verify_servers,
        &job.change.to,
        rt.verify_timeout,
        Duration::from_millis(100),
    )
    .await;
    let all_ok = checks.iter().all(|c| c.ok);
    for c in &checks {
        let label = crate::metrics::VerifyLabel {
            server: c.server.to_string(),
            result: if c.ok { "served" } else { "lagging" }.into(),
        };
        rt.metrics.dns_verify.get_or_create(&label).inc();
        rt.metrics
            .dns_verify_seconds
            .get_or_create(&label)
            .observe(c.elapsed.as_secs_f64());
    }
    let value = serde_json::Value::Array(
        checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "server": c.server.to_string(),
                    "ok": c.ok,
                    "elapsed_ms": c.elapsed.as_millis() as u64,
                    "last_seen": c.last_seen,
                    "error": c.error,
                })
            })
            .collect(),
    );
    let id = job.id;
    let name = svc.name.clone();
    let lagging: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.server.to_string())
        .collect();
    let _ = rt
        .store
        .call(move |s| {
            s.dns_change_verified(id, &value)?;
            if !lagging.is_empty() {
                s.add_event(
                    &name,
                    now_ms(),
                    "alert",
                    &format!(
                        "dns-lagging: change {id} not served by {} in time",
                        lagging.join(", ")
                    ),
                )?;
            }
            Ok(())
        })
        .await;
    if all_ok {
        info!(
            id,
            servers = checks.len(),
            "change served by every authoritative server"
        );
    } else {
        warn!(id, "some authoritative servers do not serve the change yet");
        rt.notifier.send(Notice::new(
            &svc.name,
            "alert",
            format!("dns-lagging: change {id} not served everywhere in time"),
            now_ms(),
        ));
    }
}

impl ServiceHandle {
    pub fn current(&self) -> ServiceStatus {
        self.status.borrow().clone()
    }
}

/// Deletes old history now and then.
pub async fn retention_loop(store: Store, keep: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                let keep_ms = keep.as_millis() as u64;
                match store.call(move |s| s.apply_retention(now_ms(), keep_ms)).await {
                    Ok(n) if n > 0 => info!(rounds = n, "retention: old rounds deleted"),
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "retention failed"),
                }
            }
        }
    }
}
