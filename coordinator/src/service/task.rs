//! The service task's loop: n + 1 slots per interval at the service's fixed phase (slot 0 the
//! coordinator's own probes, slot j + 1 a vote request to witness j: mesh-speed detection,
//! `failover::mesh`), the answers as they arrive, confirmation rounds, operator commands,
//! permanent DNS failures reported by the worker. Every round is fed to `failover::step`,
//! recorded (`record`), written, and only then acted on. The loop never waits on the network:
//! probes and requests run in their own tasks (`mesh`), so no slot starts late because a
//! round is waiting for a slow witness.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::{BoxFuture, FutureExt};
use shared::protocol::Verdict;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::history::History;
use super::mesh::{
    self, Arrived, Ask, Gathered, Heard, InFlight, ProbeFut, Probed, Recent, Settle, Vantage,
};
use super::record::{self, Input, Target};
use super::{Command, DnsPending, Job, ServiceDeps, ServiceStatus, decided, now_ms, phase_offset};
use crate::config::ServiceConfig;
use crate::failover::mesh::{Armed, Triggers};
use crate::failover::{self, Action, Event, Observation, Override, Side, State, VoteTally};
use crate::metrics::{InvalidLabel, RoundLabel, ServiceLabel, WitnessLabel};
use crate::notify::{Event as NoticeEvent, Notice};
use crate::store::VoteRecord;
use crate::witnesses::{Answer, SignedRequest};

/// A round being gathered (`mesh::gather`).
type RoundFut = BoxFuture<'static, Gathered>;

pub(super) struct ServiceTask {
    pub(super) deps: Arc<ServiceDeps>,
    /// The DNS backend the service's config names.
    pub(super) dns: Arc<super::DnsDeps>,
    pub(super) svc: Arc<ServiceConfig>,
    pub(super) target: Target,
    pub(super) history: Arc<History>,
    pub(super) state: State,
    pub(super) persisted: Option<State>,
    /// Events whose decision could not be written (start-up, a permanent DNS failure): fed
    /// again, in order, before the next tick, so none is lost while the history is down.
    pub(super) unrecorded: Vec<Event>,
    pub(super) status_tx: watch::Sender<ServiceStatus>,
    pub(super) job_tx: mpsc::Sender<Job>,
    pub(super) pending_flag: DnsPending,
    pub(super) last_obs: Option<(Observation, u64)>,
    pub(super) readiness: super::readiness::Tracker,
    pub(super) mesh: MeshState,
}

/// The task's mesh-speed detection state (`mesh`, `failover::mesh`).
pub(super) struct MeshState {
    /// Per witness of the service, in its configured order.
    vantage: Vec<Vantage>,
    triggers: Triggers,
    /// The last request id handed out (ids only grow).
    next_id: u64,
    /// When the primary was last seen up by any vantage point: an answer to a request sent
    /// after this is evidence of now.
    last_up: Instant,
    /// The coordinator's newest own probe in flight, and an instant just before it started.
    own: Option<(Instant, ProbeFut)>,
    /// When the newest own probe whose result was handled started: a result of an older one
    /// that comes after it is stale.
    own_heard: Option<Instant>,
    /// This interval's signed request, sent to each witness at its slot.
    request: Option<(u128, Arc<SignedRequest>)>,
    /// While the primary has been seen down in a round: when the next round of the streak is
    /// due (one interval after the last one started).
    next_round_at: Option<Instant>,
    /// How long our own recent probes of the primary took (those that found it up).
    own_recent: Recent,
    tx: mpsc::Sender<Heard>,
}

/// The receiving end of [`MeshState`]'s channel.
pub(super) struct MeshInbox(mpsc::Receiver<Heard>);

impl MeshState {
    pub(super) fn new(witnesses: usize, interval: std::time::Duration) -> (MeshState, MeshInbox) {
        // Each request or probe sends one or two messages; a few intervals of them at most.
        let (tx, rx) = mpsc::channel(64);
        let state = MeshState {
            vantage: (0..witnesses).map(|_| Vantage::default()).collect(),
            triggers: Triggers::new(witnesses, interval.as_millis() as u64),
            next_id: 0,
            last_up: Instant::now(),
            own: None,
            own_heard: None,
            request: None,
            next_round_at: None,
            own_recent: Recent::default(),
            tx,
        };
        (state, MeshInbox(rx))
    }
}

impl ServiceTask {
    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut failed: mpsc::Receiver<(Side, String)>,
        mut inbox: MeshInbox,
        shutdown: CancellationToken,
    ) {
        self.persisted = Some(record::persistent(&self.state));
        info!(state = self.state.label(), "service starting");
        self.feed_or_keep(Event::Started).await;
        self.reconcile().await;

        // Each service has its own fixed phase of the interval: with many services in phase,
        // every probe and vote request of the interval would leave in one burst (at 1,000
        // services that burst made ~1% of votes miss their deadline). Within it, n + 1 slots:
        // slot 0 our own probes, slot j + 1 witness j's request.
        let points = self.svc.witnesses.len() as u32 + 1;
        let slot = self.svc.interval / points;
        let first = Instant::now() + phase_offset(&self.svc.name, self.svc.interval);
        let mut slots =
            tokio::time::interval_at(first, slot.max(std::time::Duration::from_millis(1)));
        slots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let label = ServiceLabel {
            service: self.svc.name.clone(),
        };
        let mut round: Option<RoundFut> = None;
        loop {
            let due = self.mesh.next_round_at;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(cmd) = cmds.recv() => self.command(cmd).await,
                Some((to, why)) = failed.recv() => {
                    warn!(to = %to, reason = %why, "switch failed permanently; automatic switching blocked until an operator sets an override");
                    self.feed_or_keep(Event::SwitchFailed { to, permanent: true }).await;
                }
                t = slots.tick() => {
                    let n = t.saturating_duration_since(first).as_nanos() / slot.as_nanos().max(1);
                    let (interval_no, k) = (n / u128::from(points), n % u128::from(points));
                    if k == 0 {
                        let late = t.elapsed();
                        if late > slot {
                            self.deps.metrics.late_ticks.get_or_create(&label).inc();
                            warn!(late_ms = late.as_millis() as u64, "probe interval started late");
                        }
                        self.deps.metrics.ticks.get_or_create(&label).inc();
                        self.catch_up().await;
                        // Even while the last one is in flight: a probe that takes its whole
                        // timeout (a hung primary, a link down; the default timeout equals
                        // the interval) must not cost the next interval its probe, or a
                        // failback's hold-down counts one probe every other interval. At
                        // most two overlap, since the timeout may not exceed the interval.
                        self.slot_probe();
                    } else {
                        let j = k as usize - 1;
                        let req = self.interval_request(interval_no);
                        self.ask(j, &req);
                    }
                }
                Some(heard) = inbox.0.recv() => match heard {
                    Heard::Own(p) => self.own_probed(p, &mut round).await,
                    Heard::OwnOverdue => self.overdue(0, &mut round),
                    Heard::Answer(a) => self.arrived(*a, &mut round),
                    Heard::Overdue { j, id } => {
                        if self.mesh.vantage[j].inflight.iter().any(|f| f.id == id) {
                            self.overdue(j + 1, &mut round);
                        }
                    }
                },
                g = async { round.as_mut().expect("guarded by is_some").await }, if round.is_some() => {
                    round = None;
                    self.round_done(g, &mut round).await;
                }
                _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() && round.is_none() => {
                    self.mesh.next_round_at = None;
                    round = Some(self.confirmation(None, "streak"));
                }
            }
        }
        info!("service stopped");
    }

    /// Whether a "down" may start a confirmation round now (`failover::mesh::Triggers`).
    fn armed(&self, round_busy: bool) -> Armed {
        let s = &self.state;
        if s.active != Side::Primary || s.override_ != Override::Auto || s.blocked.is_some() {
            Armed::No
        } else if round_busy || self.mesh.next_round_at.is_some() {
            Armed::Busy
        } else {
            Armed::Yes
        }
    }

    /// Interval `no`'s signed request: signed at the interval's first witness slot and sent to
    /// each witness at its own, so no witness ever gets the same request twice (it would
    /// refuse it as replayed).
    fn interval_request(&mut self, no: u128) -> Arc<SignedRequest> {
        if let Some((n, req)) = &self.mesh.request
            && *n == no
        {
            return req.clone();
        }
        let req = Arc::new(self.sign());
        self.mesh.request = Some((no, req.clone()));
        req
    }

    fn sign(&self) -> SignedRequest {
        let now = now_ms();
        crate::witnesses::sign_request(
            &self.deps.key,
            &self.deps.key_id,
            &self.svc.name,
            now,
            now,
            &self.svc.primary_probe,
        )
    }

    /// Sends `req` to witness `j` in its own task; its answer comes back through the inbox,
    /// and the returned future lets a round await it too.
    fn ask(&mut self, j: usize, req: &Arc<SignedRequest>) -> Ask {
        let client = self.deps.witnesses[self.svc.witnesses[j]].clone();
        let service = self.svc.name.clone();
        let r = req.clone();
        let answer = async move {
            client
                .ask(&r.json, r.body.clone(), &r.hash, &service, r.round)
                .await
        }
        .boxed()
        .shared();
        self.mesh.next_id += 1;
        let id = self.mesh.next_id;
        let tx = self.mesh.tx.clone();
        let mut forward = answer.clone();
        let timeout = self.deps.witnesses[self.svc.witnesses[j]].config.timeout;
        let overdue = self.mesh.vantage[j].recent.overdue_after(timeout);
        tokio::spawn(async move {
            if let Some(after) = overdue {
                tokio::select! {
                    a = &mut forward => {
                        let _ = tx.send(Heard::Answer(Box::new(Arrived { j, id, answer: a }))).await;
                        return;
                    }
                    _ = tokio::time::sleep(after) => {
                        let _ = tx.send(Heard::Overdue { j, id }).await;
                    }
                }
            }
            let answer = forward.await;
            let _ = tx
                .send(Heard::Answer(Box::new(Arrived { j, id, answer })))
                .await;
        });
        let v = &mut self.mesh.vantage[j];
        v.last_json = Some(req.json.clone());
        v.inflight.push(InFlight {
            id,
            sent: Instant::now(),
            json: req.json.clone(),
            answer: answer.clone(),
        });
        Ask {
            j,
            id,
            json: req.json.clone(),
            answer,
            silent: v.known_silent(),
        }
    }

    /// Our own probes of the primary and the backup, started now in their own task.
    fn own_probe(&self) -> ProbeFut {
        let prober = self.deps.prober.clone();
        let svc = self.svc.clone();
        let started = Instant::now();
        let probe = async move {
            let (primary, backup) = tokio::join!(
                async {
                    let e = prober.run(&svc.primary_probe).await;
                    (e.is_up(), started.elapsed())
                },
                prober.run(&svc.backup_probe)
            );
            Probed {
                primary_up: primary.0,
                backup_up: backup.is_up(),
                primary_took: primary.1,
                started,
            }
        }
        .boxed()
        .shared();
        tokio::spawn(probe.clone().map(|_| ()));
        probe
    }

    /// Slot 0: our own probes, their result (and their being overdue) sent to the inbox.
    fn slot_probe(&mut self) {
        let before = Instant::now();
        let probe = self.own_probe();
        let timeout =
            std::time::Duration::from_millis(u64::from(self.svc.primary_probe.timeout_ms()));
        self.mesh.own = Some((before, probe.clone()));
        let tx = self.mesh.tx.clone();
        let mut p = probe;
        let overdue = self.mesh.own_recent.overdue_after(timeout);
        tokio::spawn(async move {
            if let Some(after) = overdue {
                tokio::select! {
                    r = &mut p => {
                        let _ = tx.send(Heard::Own(r)).await;
                        return;
                    }
                    _ = tokio::time::sleep(after) => {
                        let _ = tx.send(Heard::OwnOverdue).await;
                    }
                }
            }
            let r = p.await;
            let _ = tx.send(Heard::Own(r)).await;
        });
    }

    /// Slot 0's own probes are in: a "down" turns this interval's round into a confirmation;
    /// otherwise the round is decided on them and each witness's latest answer.
    async fn own_probed(&mut self, p: Probed, round: &mut Option<RoundFut>) {
        if self.mesh.own_heard.is_some_and(|h| p.started <= h) {
            debug!("an own probe's result came after a newer one's: stale, ignored");
            return;
        }
        self.mesh.own_heard = Some(p.started);
        if self
            .mesh
            .own
            .as_ref()
            .is_some_and(|(before, _)| p.started >= *before)
        {
            self.mesh.own = None;
        }
        if p.primary_up {
            self.saw_up(p.started);
            self.mesh.own_recent.push(p.primary_took);
        }
        let armed = self.armed(round.is_some());
        if self.mesh.triggers.observe(0, p.primary_up, now_ms(), armed) {
            *round = Some(self.confirmation(Some(p), "coordinator"));
            return;
        }
        if round.is_some() || (self.mesh.next_round_at.is_some() && !p.primary_up) {
            // A round in flight, or the streak's own rounds, cover this interval.
            return;
        }
        self.mesh.next_round_at = None;
        if self.mesh.vantage.iter().any(|v| v.last_json.is_none()) {
            // Just started: no witness asked yet. One round asks them all and waits for each.
            *round = Some(self.full_round(p));
            return;
        }
        let answers = self.steady_answers();
        self.finish_round(p, answers).await;
    }

    /// A probe that started at `started` found the primary up. A request sent after that is
    /// evidence of later than that "up", so a confirmation round may await it instead of
    /// sending a new one. (When the probe started, not when its answer came: a witness's
    /// answer can arrive long after it probed, behind a slow path.)
    fn saw_up(&mut self, started: Instant) {
        self.mesh.last_up = self.mesh.last_up.max(started);
    }

    /// Vantage point `v`'s probe is overdue: it may start a confirmation round.
    fn overdue(&mut self, v: usize, round: &mut Option<RoundFut>) {
        let armed = self.armed(round.is_some());
        let now = now_ms();
        if !self.mesh.triggers.overdue(v, now, armed) {
            return;
        }
        let budget = self
            .deps
            .overdue_budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(now);
        if budget {
            debug!(vantage = v, "a probe is overdue: confirmation round");
            *round = Some(self.confirmation(None, "overdue"));
        } else {
            debug!(
                vantage = v,
                "a probe is overdue; the coordinator's budget for such rounds is spent this second"
            );
            self.deps
                .metrics
                .overdue_refused
                .get_or_create(&ServiceLabel {
                    service: self.svc.name.clone(),
                })
                .inc();
        }
    }

    /// A witness's answer arrived: it is that witness's latest; a "down" may start a
    /// confirmation round.
    fn arrived(&mut self, a: Arrived, round: &mut Option<RoundFut>) {
        let verdict = a.answer.vote.as_ref().map(|v| v.verdict);
        let sent = self.mesh.vantage[a.j].arrived(a.id, a.answer);
        if verdict == Some(Verdict::Up)
            && let Some(sent) = sent
        {
            self.saw_up(sent);
        }
        if let Some(v) = verdict {
            let armed = self.armed(round.is_some());
            if self
                .mesh
                .triggers
                .observe(a.j + 1, v == Verdict::Up, now_ms(), armed)
            {
                debug!(
                    witness = a.j,
                    "a witness sees the primary down: confirmation round"
                );
                *round = Some(self.confirmation(None, "witness"));
            }
        }
    }

    /// A confirmation round: our own probe (`own`, or one in flight that started after the
    /// primary was last seen up, or a new one) and every witness asked at once, reusing a
    /// request in flight that left after the primary was last seen up.
    fn confirmation(&mut self, own: Option<Probed>, cause: &str) -> RoundFut {
        self.deps
            .metrics
            .confirmation_rounds
            .get_or_create(&crate::metrics::ConfirmLabel {
                service: self.svc.name.clone(),
                cause: cause.to_string(),
            })
            .inc();
        let last_up = self.mesh.last_up;
        let own = match (own, &self.mesh.own) {
            (Some(p), _) => futures::future::ready(p).boxed().shared(),
            (None, Some((at, f))) if *at > last_up => f.clone(),
            (None, _) => self.own_probe(),
        };
        let mut fresh: Option<Arc<SignedRequest>> = None;
        let mut asks = Vec::with_capacity(self.mesh.vantage.len());
        for j in 0..self.mesh.vantage.len() {
            let v = &self.mesh.vantage[j];
            if let Some(f) = v.inflight_since(last_up) {
                asks.push(Ask {
                    j,
                    id: f.id,
                    json: f.json.clone(),
                    answer: f.answer.clone(),
                    silent: v.known_silent(),
                });
            } else {
                let req = fresh.get_or_insert_with(|| Arc::new(self.sign())).clone();
                asks.push(self.ask(j, &req));
            }
        }
        let decisive = self.state.primary_down_streak + 1 >= self.svc.policy.fail_after;
        let settle = Settle::Confirm {
            policy: self.svc.policy.clone(),
            decisive,
        };
        mesh::gather(own, asks, settle).boxed()
    }

    /// The first round after start-up: every witness asked, every answer awaited.
    fn full_round(&mut self, p: Probed) -> RoundFut {
        let req = Arc::new(self.sign());
        let asks = (0..self.mesh.vantage.len())
            .map(|j| self.ask(j, &req))
            .collect();
        let own = futures::future::ready(p).boxed().shared();
        mesh::gather(own, asks, Settle::All).boxed()
    }

    /// Each witness's latest answer not used by a round yet; a witness without one is
    /// recorded as not having answered its last request.
    fn steady_answers(&mut self) -> Vec<Answer> {
        let mut out = Vec::with_capacity(self.mesh.vantage.len());
        for (j, v) in self.mesh.vantage.iter_mut().enumerate() {
            let a = match v.take_fresh() {
                Some(a) => a,
                None => {
                    let client = &self.deps.witnesses[self.svc.witnesses[j]];
                    let (json, why) = match v.inflight.iter().max_by_key(|f| f.id) {
                        Some(f) => (
                            f.json.clone(),
                            format!(
                                "request in flight for {} ms when the round was decided",
                                f.sent.elapsed().as_millis()
                            ),
                        ),
                        None => (
                            v.last_json.clone().unwrap_or_default(),
                            "no answer since the last round".to_string(),
                        ),
                    };
                    mesh::unanswered(client, &json, why)
                }
            };
            out.push(a);
        }
        out
    }

    /// A round's gathering ended: its answers are used, the round is decided, and while the
    /// primary is seen down the streak's next round is due one interval after this one began.
    async fn round_done(&mut self, g: Gathered, round: &mut Option<RoundFut>) {
        if g.probed.primary_up {
            self.saw_up(g.probed.started);
        }
        // Our own probe's verdict as of this round (it starts nothing by itself).
        self.mesh
            .triggers
            .observe(0, g.probed.primary_up, now_ms(), Armed::No);
        let mut answers = Vec::with_capacity(g.asks.len());
        for (ask, a) in g.asks.iter().zip(g.answers) {
            let v = &mut self.mesh.vantage[ask.j];
            answers.push(match a {
                Some(a) => {
                    v.mark_used(ask.id);
                    a
                }
                None => {
                    let client = &self.deps.witnesses[self.svc.witnesses[ask.j]];
                    let why = if ask.silent {
                        format!(
                            "known silent (no answer to its last {} requests): the round was decided without it; a late answer counts in a later round",
                            mesh::SILENT_AFTER
                        )
                    } else {
                        "not awaited: the round's outcome was settled before it answered".to_string()
                    };
                    mesh::unanswered(client, &ask.json, why)
                }
            });
        }
        self.finish_round(g.probed, answers).await;
        // The streak's rounds come one interval apart until one of them is decisive; after a
        // decisive round that did not switch (disputed, too few votes, …) the interval's own
        // rounds decide on each witness's latest answer, so a long dispute (a cut between
        // the backup and the primary) costs the witnesses no more requests than the steady
        // state, and a witness's new "down" still starts a confirmation at once.
        let s = &self.state;
        let streak = s.active == Side::Primary
            && s.override_ == Override::Auto
            && s.blocked.is_none()
            && s.primary_down_streak > 0
            && s.primary_down_streak < self.svc.policy.fail_after;
        self.mesh.next_round_at = streak.then(|| g.started + self.svc.interval);
        if self.mesh.triggers.take_missed(now_ms(), self.armed(false)) {
            *round = Some(self.confirmation(None, "missed"));
        }
    }

    /// Decides one round on our own probes and the witnesses' answers (in the service's
    /// witness order).
    async fn finish_round(&mut self, p: Probed, answers: Vec<Answer>) {
        let now = now_ms();
        let svc = self.svc.clone();
        let votes = self.tally(&answers);
        self.note_agreement(&answers);
        let obs = Observation {
            primary_up: p.primary_up,
            backup_up: p.backup_up,
            votes,
        };
        debug!(primary_up = obs.primary_up, backup_up = obs.backup_up, votes = %votes, "round");
        let label = ServiceLabel {
            service: svc.name.clone(),
        };
        self.deps
            .metrics
            .primary_up
            .get_or_create(&label)
            .set(obs.primary_up as i64);
        self.deps
            .metrics
            .backup_up
            .get_or_create(&label)
            .set(obs.backup_up as i64);
        self.last_obs = Some((obs, now));
        // Readiness judges each witness by the last answer it gave, not by whether this round
        // waited for it (a round settled by a veto does not make the others silent).
        let latest: Vec<Answer> = answers
            .iter()
            .zip(&self.mesh.vantage)
            .map(|(a, v)| v.latest().unwrap_or(a).clone())
            .collect();
        let notices = self
            .readiness
            .evaluate(&self.deps, &svc, &latest, &obs, now);
        for n in notices {
            self.deps.notifier.send(n);
        }
        let published = self.readiness.status();
        self.status_tx.send_if_modified(|s| {
            std::mem::replace(&mut s.readiness, published.clone()) != published
        });
        let records: Vec<VoteRecord> = answers.into_iter().map(|a| a.record).collect();
        // A failed write is logged and counted inside; the next round decides again.
        let _ = self.feed(Event::Tick(obs), Some(records), None).await;
    }

    /// Feeds `event`; when its decision cannot be written, keeps it for [`Self::catch_up`].
    async fn feed_or_keep(&mut self, event: Event) {
        if !self.unrecorded.is_empty() || self.feed(event, None, None).await.is_err() {
            self.unrecorded.push(event);
        }
    }

    /// Before a tick: writes what the history still lacks (kept events, then the DNS
    /// worker's backlog). Stops at the first failure; the next tick tries again.
    async fn catch_up(&mut self) {
        while let Some(&event) = self.unrecorded.first() {
            if self.feed(event, None, None).await.is_err() {
                return;
            }
            self.unrecorded.remove(0);
        }
        self.history.flush().await;
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::SetOverride(o, by, reply) => {
                let r = self
                    .feed(Event::SetOverride(o), None, Some(by))
                    .await
                    .map(|()| format!("override {} set; {}", o.as_str(), self.state.label()));
                let _ = reply.send(r);
            }
            Command::ManualFailback(by, reply) => {
                if self.pending_flag.gate_waiting.load(Ordering::SeqCst) {
                    // The failback is decided and waits on its failing gate: the operator
                    // takes it from here. The worker records the skip in the history.
                    self.pending_flag.gate_skip.notify_one();
                    self.deps.notifier.send(
                        Notice::new(
                            &self.svc.name,
                            NoticeEvent::ManualFailback,
                            "operator forced the failback past the failing pre_failback gate",
                            now_ms(),
                        )
                        .by(by),
                    );
                    let _ = reply.send(Ok(
                        "failback forced: the pre_failback gate is skipped for the pending change"
                            .to_string(),
                    ));
                    return;
                }
                let before = self.state.active;
                let r = self
                    .feed(Event::ManualFailback, None, Some(by))
                    .await
                    .map(|()| {
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

    /// Notes, per witness, whether its valid vote agreed with the round's majority (a round
    /// without a strict majority tells nothing).
    fn note_agreement(&self, answers: &[Answer]) {
        let verdicts: Vec<Verdict> = answers
            .iter()
            .filter_map(|a| a.vote.as_ref().map(|v| v.verdict))
            .collect();
        let up = verdicts.iter().filter(|v| **v == Verdict::Up).count();
        let down = verdicts.len() - up;
        let majority = match up.cmp(&down) {
            std::cmp::Ordering::Greater => Verdict::Up,
            std::cmp::Ordering::Less => Verdict::Down,
            std::cmp::Ordering::Equal => return,
        };
        for (a, &i) in answers.iter().zip(&self.svc.witnesses) {
            if let Some(v) = &a.vote {
                self.deps.witnesses[i].note_agreement(v.verdict == majority);
            }
        }
    }

    fn tally(&self, answers: &[Answer]) -> VoteTally {
        let mut t = VoteTally::default();
        for a in answers {
            let wl = WitnessLabel {
                witness: a.witness.clone(),
            };
            match (&a.vote, &a.record.vote_envelope) {
                (Some(v), _) => {
                    self.deps
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
                    self.deps
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
                    self.deps.metrics.votes_missing.get_or_create(&wl).inc();
                    debug!(witness = %a.witness, reason = a.record.error.as_deref().unwrap_or(""), "no vote");
                }
            }
        }
        t
    }

    /// Logs and counts what `step` decided (the record itself is pure).
    fn observe(&self, actions: &[Action], obs: &Observation) {
        for a in actions {
            match a {
                Action::RecordRound {
                    trigger,
                    outcome,
                    reason,
                } => {
                    self.deps
                        .metrics
                        .rounds
                        .get_or_create(&RoundLabel {
                            service: self.svc.name.clone(),
                            outcome: outcome.as_str().into(),
                        })
                        .inc();
                    info!(trigger = trigger.as_str(), outcome = outcome.as_str(), %reason, votes = %obs.votes, "round");
                }
                Action::Alert { kind, message } => {
                    warn!(alert = kind.as_str(), %message, "alert");
                }
                Action::Resolve { kind, message } => {
                    info!(alert = kind.as_str(), %message, "alert resolved");
                }
                Action::Transition { from, to, reason } => {
                    info!(from = %from, to = %to, %reason, "transition");
                }
                Action::Switch { .. } => {}
            }
        }
    }

    /// Runs the decision function, writes its record and carries out what it returns.
    /// Errs (and changes nothing) when the decision could not be written to the history;
    /// the failure is logged and counted in `quorate_history_write_failures_total`.
    async fn feed(
        &mut self,
        event: Event,
        votes: Option<Vec<VoteRecord>>,
        by: Option<&str>,
    ) -> Result<(), String> {
        let now = now_ms();
        let (next, actions) = failover::step(&self.svc.policy, &self.state, event, now);
        let obs = self.last_obs.map(|(o, _)| o).unwrap_or_default();
        self.observe(&actions, &obs);
        let rec = record::record(
            &self.target,
            Input {
                event,
                persisted: self.persisted.as_ref(),
                next: &next,
                actions,
                obs,
                votes,
                by,
                now_ms: now,
            },
        );
        let mut change_id = None;
        if let Some(d) = rec.decision {
            match self.deps.store.record_decision(d).await {
                Ok((_, c)) => change_id = c,
                Err(e) => {
                    // Never act on a decision the history does not hold: keep the old state
                    // and try again next tick.
                    self.history.count("decision");
                    error!(error = %e, "cannot write history; decision not carried out");
                    return Err(format!("history not writable, nothing changed: {e}"));
                }
            }
        }
        self.state = next;
        self.persisted = Some(rec.persisted);
        for n in rec.notices {
            self.deps.notifier.send(n);
        }
        if let (Some(sw), Some(id)) = (rec.switch, change_id) {
            self.pending_flag.set(true);
            if self
                .job_tx
                .send(Job {
                    id,
                    to: sw.to,
                    change: sw.change,
                    reason: sw.reason,
                })
                .await
                .is_err()
            {
                error!("DNS worker is gone; change stays pending until restart");
            }
        }
        let label = ServiceLabel {
            service: self.svc.name.clone(),
        };
        self.deps
            .metrics
            .backup_active
            .get_or_create(&label)
            .set((self.state.active == Side::Backup) as i64);
        // The flag is read under the status lock, so a DNS worker finishing right now cannot
        // have its "applied" overwritten by this (older) reading. Only the decision's own
        // fields change: a failure mark, `dns_serves` and readiness stay.
        let (state, obs, pending) = (&self.state, self.last_obs, &self.pending_flag);
        self.status_tx
            .send_modify(|s| decided(s, state, obs, pending.get()));
        Ok(())
    }
}
