//! The service task's loop: a tick at a fixed phase of the interval (probes and witness votes
//! at once), operator commands, permanent DNS failures reported by the worker. Each is fed to
//! `failover::step`, recorded (`record`), written, and only then acted on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use shared::protocol::Verdict;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::history::History;
use super::record::{self, Input, Target};
use super::{Command, DnsPending, Job, ServiceDeps, ServiceStatus, decided, now_ms, phase_offset};
use crate::config::ServiceConfig;
use crate::failover::{self, Action, Event, Observation, Side, State, VoteTally};
use crate::metrics::{InvalidLabel, RoundLabel, ServiceLabel, WitnessLabel};
use crate::notify::{Event as NoticeEvent, Notice};
use crate::store::VoteRecord;
use crate::witnesses::Answer;

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
}

impl ServiceTask {
    pub(super) async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Command>,
        mut failed: mpsc::Receiver<(Side, String)>,
        shutdown: CancellationToken,
    ) {
        self.persisted = Some(record::persistent(&self.state));
        info!(state = self.state.label(), "service starting");
        self.feed_or_keep(Event::Started).await;
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
                    warn!(to = %to, reason = %why, "switch failed permanently; automatic switching blocked until an operator sets an override");
                    self.feed_or_keep(Event::SwitchFailed { to, permanent: true }).await;
                }
                t = ticker.tick() => {
                    let late = t.elapsed();
                    if late > self.svc.interval {
                        self.deps.metrics.late_ticks.get_or_create(&label).inc();
                        warn!(late_ms = late.as_millis() as u64, "probe interval started late");
                    }
                    self.deps.metrics.ticks.get_or_create(&label).inc();
                    self.catch_up().await;
                    self.tick().await;
                }
            }
        }
        info!("service stopped");
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

    /// One probe interval: own probes and witness votes, all at once.
    async fn tick(&mut self) {
        let now = now_ms();
        let svc = self.svc.clone();
        let request = crate::witnesses::sign_request(
            &self.deps.key,
            &self.deps.key_id,
            &svc.name,
            now,
            now,
            &svc.primary_probe,
        );
        let clients = svc.witnesses.iter().map(|&i| &self.deps.witnesses[i]);
        let (primary, backup, answers) = tokio::join!(
            self.deps.prober.run(&svc.primary_probe),
            self.deps.prober.run(&svc.backup_probe),
            crate::witnesses::ask_all(clients, &request, &svc.name),
        );
        let votes = self.tally(&answers);
        self.note_agreement(&answers);
        let obs = Observation {
            primary_up: primary.is_up(),
            backup_up: backup.is_up(),
            votes,
        };
        debug!(primary_up = obs.primary_up, backup_up = obs.backup_up, votes = %votes, "tick");
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
        let notices = self
            .readiness
            .evaluate(&self.deps, &svc, &answers, &obs, now);
        for n in notices {
            self.deps.notifier.send(n);
        }
        let published = self.readiness.status();
        self.status_tx.send_if_modified(|s| {
            std::mem::replace(&mut s.readiness, published.clone()) != published
        });
        let records: Vec<VoteRecord> = answers.into_iter().map(|a| a.record).collect();
        // A failed write is logged and counted inside; the next tick decides again.
        let _ = self.feed(Event::Tick(obs), Some(records), None).await;
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
