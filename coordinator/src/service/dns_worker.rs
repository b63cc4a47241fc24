//! The DNS worker of one service: takes the newest pending change, runs the pre-hook (for a
//! failback, the gate: retried with backoff until it passes, a newer decision supersedes the
//! failback, or an operator's failback skips it), applies
//! it (transient errors retried with backoff, 250 ms doubling to 10 s, until a newer decision
//! supersedes it), records the result, verifies it on the authoritative servers and runs the
//! post-hook. Every result goes through `History`, so a failed write is retried, not lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::history::History;
use super::{DnsPending, Job, now_ms};
use crate::config::GATE_FIRST_RETRY;
use crate::config::HooksConfig;
use crate::dns::DnsError;
use crate::failover::Side;
use crate::hooks::{self, HookOutcome};
use crate::metrics::{DnsLabel, Metrics};
use crate::notify::{Event as NoticeEvent, Notice, Notifier};
use crate::store::{ChangeStatus, EventKind, HistoryWrite, NewEvent};

/// The first retry of a transient DNS error waits this long, then twice as long each time.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Retries never wait longer than this: a change stays at most 10 s behind a recovered backend.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(10);
/// A provider's `Retry-After` is honoured up to this long: Cloudflare and Route 53 ask for
/// seconds to a few minutes; a larger hint (a broken header) must not park a failover for
/// hours. The wait is cut short by a newer decision or shutdown either way.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long to wait before the next try after a transient `error`: the backoff `delay`, or
/// the provider's `Retry-After` when it asks for longer (up to [`MAX_RETRY_AFTER`]).
pub(super) fn retry_wait(delay: Duration, error: &DnsError) -> Duration {
    match error.retry_after() {
        Some(hint) => delay.max(hint.min(MAX_RETRY_AFTER)),
        None => delay,
    }
}

/// What one service's DNS worker needs (and nothing of the probing side).
pub(super) struct Worker {
    pub(super) service: String,
    pub(super) hooks: HooksConfig,
    /// The backend, and the authoritative servers to check after each change.
    pub(super) dns: Arc<super::DnsDeps>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) notifier: Notifier,
    pub(super) history: Arc<History>,
    /// Permanent failures, reported to the service task (which blocks automatic switching).
    pub(super) failed: mpsc::Sender<(Side, String)>,
    pub(super) pending_flag: DnsPending,
    /// `notify.dns_pending_after`.
    pub(super) pending_after: Duration,
    pub(super) shutdown: CancellationToken,
}

pub(super) async fn run(w: Worker, mut jobs: mpsc::Receiver<Job>) {
    let (hooks, shutdown) = (&w.hooks, &w.shutdown);
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
            "service": w.service, "to": job.to.as_str(), "reason": job.reason, "change": job.change,
        });
        let env = [
            ("QUORATE_SERVICE", w.service.clone()),
            ("QUORATE_TO", job.to.as_str().to_string()),
        ];
        let mut pending = PendingAlarm::new(w.pending_after);
        match (job.to, &hooks.pre_failover, &hooks.pre_failback) {
            (Side::Backup, Some(cmd), _) => {
                if let HookOutcome::Failed(why) = w.hook(cmd, &payload, &env).await {
                    warn!(reason = %why, "pre_failover hook failed; failing over anyway");
                    w.hook_failed(format!("pre_failover: {why}; failing over anyway"))
                        .await;
                }
            }
            (Side::Primary, _, Some(cmd)) => {
                match w
                    .gate(&job, cmd, &payload, &env, &mut jobs, &mut pending)
                    .await
                {
                    Gate::Passed => {}
                    Gate::Superseded(j) => {
                        next = Some(j);
                        continue;
                    }
                    Gate::Stopped => return,
                }
            }
            _ => {}
        }
        let started = Instant::now();
        let mut delay = FIRST_RETRY;
        let backend_kind = w.dns.backend.kind().to_string();
        loop {
            let result = tokio::select! {
                r = w.dns.backend.apply(&job.change) => r,
                // The change stays pending; the next start reconciles it.
                _ = shutdown.cancelled() => return,
            };
            match result {
                Ok(()) => {
                    w.attempt(job.id, None).await;
                    w.finish(job.id, ChangeStatus::Applied, None, EventKind::DnsApplied)
                        .await;
                    pending.applied(&w, &job);
                    w.pending_flag.set(false);
                    w.pending_flag
                        .status
                        .send_if_modified(|s| s.dns_serves.take().is_some());
                    let lbl = DnsLabel {
                        backend: backend_kind.clone(),
                        result: "applied".into(),
                    };
                    w.metrics.dns_changes.get_or_create(&lbl).inc();
                    w.metrics
                        .dns_change_seconds
                        .get_or_create(&lbl)
                        .observe(started.elapsed().as_secs_f64());
                    info!(to = %job.to, id = job.id, elapsed_ms = started.elapsed().as_millis() as u64, "DNS change applied");
                    w.confirm_served(&job).await;
                    let post = match job.to {
                        Side::Backup => hooks.post_failover.as_ref(),
                        Side::Primary => hooks.post_failback.as_ref(),
                    };
                    if let Some(cmd) = post
                        && let HookOutcome::Failed(why) = w.hook(cmd, &payload, &env).await
                    {
                        warn!(reason = %why, "post hook failed");
                        w.hook_failed(why).await;
                    }
                    break;
                }
                Err(e) if e.is_retryable() => {
                    let msg = e.to_string();
                    let wait = retry_wait(delay, &e);
                    warn!(id = job.id, error = %msg, retry_in_ms = wait.as_millis() as u64, "DNS change failed; will retry");
                    w.attempt(job.id, Some(msg.clone())).await;
                    pending.check(&w, &job, &msg).await;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        j = jobs.recv() => {
                            // A newer decision supersedes this change.
                            if let Some(j) = j { next = Some(j); }
                            break;
                        }
                        _ = shutdown.cancelled() => return,
                    }
                    delay = (delay * 2).min(MAX_RETRY);
                }
                Err(e) => {
                    // Say what the server answers now, not what was intended: after a
                    // conflict it may serve neither side.
                    let served = w.describe_served(&job).await;
                    let msg = format!("{}; {served}", describe_permanent(&e));
                    w.pending_flag
                        .status
                        .send_modify(|s| s.dns_serves = Some(served.clone()));
                    error!(id = job.id, error = %msg, "DNS change failed permanently");
                    w.attempt(job.id, Some(msg.clone())).await;
                    w.metrics
                        .dns_changes
                        .get_or_create(&DnsLabel {
                            backend: backend_kind.clone(),
                            result: e.kind().into(),
                        })
                        .inc();
                    w.fail(&job, msg).await;
                    break;
                }
            }
        }
    }
}

/// How a pre-failback gate ended.
enum Gate {
    /// It exited 0, or an operator's failback skipped it: fail back.
    Passed,
    /// A newer decision came while it waited (the primary failed again, an override).
    Superseded(Job),
    /// Shutdown: the change stays pending; the next start runs the gate again.
    Stopped,
}

/// `dns-pending`: a change not applied `after` its decision is news, once per change; and so
/// is its landing, when that was reported.
struct PendingAlarm {
    since: tokio::time::Instant,
    after: Duration,
    raised: bool,
}

impl PendingAlarm {
    fn new(after: Duration) -> PendingAlarm {
        PendingAlarm {
            since: tokio::time::Instant::now(),
            after,
            raised: false,
        }
    }

    /// After a try that did not apply the change (`why`: what stands in the way).
    async fn check(&mut self, w: &Worker, job: &Job, why: &str) {
        let waited = self.since.elapsed();
        if self.raised || waited < self.after {
            return;
        }
        self.raised = true;
        let msg = format!(
            "change {} to {} still pending after {}: {why}",
            job.id,
            job.to,
            humantime::format_duration(Duration::from_secs(waited.as_secs()))
        );
        warn!(id = job.id, "{msg}");
        w.event(EventKind::Alert, format!("dns-pending: {msg}"))
            .await;
        w.notifier.send(Notice::new(
            &w.service,
            NoticeEvent::DnsPending,
            msg,
            now_ms(),
        ));
    }

    fn applied(&self, w: &Worker, job: &Job) {
        if self.raised {
            w.notifier.send(
                Notice::new(
                    &w.service,
                    NoticeEvent::DnsPending,
                    format!("change {} to {} applied", job.id, job.to),
                    now_ms(),
                )
                .resolved(),
            );
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

impl Worker {
    /// Runs an operator hook; killed at its timeout, or when it outlives the shutdown grace.
    async fn hook(
        &self,
        cmd: &[String],
        payload: &serde_json::Value,
        env: &[(&str, String)],
    ) -> HookOutcome {
        hooks::run(
            cmd,
            payload,
            env,
            self.hooks.timeout,
            &self.shutdown,
            shared::shutdown::GRACE,
        )
        .await
    }

    /// A hook failed: in the history, and a `hook-failed` notice.
    async fn hook_failed(&self, why: String) {
        self.event(EventKind::HookFailed, why.clone()).await;
        self.notifier.send(Notice::new(
            &self.service,
            NoticeEvent::HookFailed,
            why,
            now_ms(),
        ));
    }

    /// The pre-failback gate: run until it exits 0, retried with backoff (1 s doubling to
    /// `gate_retry_max`), every try in the history; a `gate-failing` notice once it has failed
    /// for `gate_alert_after` (the retries go on). A newer decision supersedes the failback
    /// (the primary failing again decides a failover); an operator's failback skips the gate.
    async fn gate(
        &self,
        job: &Job,
        cmd: &[String],
        payload: &serde_json::Value,
        env: &[(&str, String)],
        jobs: &mut mpsc::Receiver<Job>,
        pending: &mut PendingAlarm,
    ) -> Gate {
        let skip = self.pending_flag.gate_skip.clone();
        // A skip meant for an earlier wait must not skip this one.
        let _ = futures::FutureExt::now_or_never(skip.notified());
        let started = tokio::time::Instant::now();
        let mut delay = GATE_FIRST_RETRY;
        let mut alerted = false;
        let waiting = |on: bool| self.pending_flag.gate_waiting.store(on, Ordering::SeqCst);
        let resolve = |alerted: bool, how: &str| {
            if alerted {
                self.notifier.send(
                    Notice::new(&self.service, NoticeEvent::GateFailing, how, now_ms()).resolved(),
                );
            }
        };
        for attempt in 1u32.. {
            let why = match self.hook(cmd, payload, env).await {
                HookOutcome::Ok => {
                    waiting(false);
                    let msg = format!("pre_failback attempt {attempt} passed; failing back");
                    info!(id = job.id, attempt, "pre_failback gate passed");
                    self.event(EventKind::Gate, msg.clone()).await;
                    resolve(alerted, &msg);
                    return Gate::Passed;
                }
                HookOutcome::Failed(why) => why,
            };
            if self.shutdown.is_cancelled() {
                return Gate::Stopped;
            }
            waiting(true);
            let wait = delay;
            let msg = format!(
                "pre_failback attempt {attempt} failed: {why}; failback waits, next try in {}",
                humantime::format_duration(wait)
            );
            warn!(id = job.id, attempt, reason = %why, retry_in_ms = wait.as_millis() as u64, "pre_failback gate failed; failback waits");
            self.event(EventKind::Gate, msg).await;
            self.attempt(job.id, Some(format!("pre_failback gate: {why}")))
                .await;
            let failing = started.elapsed();
            if !alerted && failing >= self.hooks.gate_alert_after {
                alerted = true;
                let msg = format!(
                    "the pre_failback gate has failed for {} ({attempt} tries, last: {why}); failback waits and the gate is still retried; `quorate-coordinator failback` skips it",
                    humantime::format_duration(Duration::from_secs(failing.as_secs()))
                );
                self.event(EventKind::Alert, format!("gate-failing: {msg}"))
                    .await;
                self.notifier.send(Notice::new(
                    &self.service,
                    NoticeEvent::GateFailing,
                    msg,
                    now_ms(),
                ));
            }
            pending
                .check(self, job, &format!("the pre_failback gate fails: {why}"))
                .await;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = skip.notified() => {
                    waiting(false);
                    let msg = format!("pre_failback skipped by an operator's failback after {attempt} failed tries; failing back");
                    warn!(id = job.id, "{msg}");
                    self.event(EventKind::Gate, msg.clone()).await;
                    resolve(alerted, &msg);
                    return Gate::Passed;
                }
                j = jobs.recv() => {
                    waiting(false);
                    return match j {
                        Some(j) => {
                            let msg = format!("failback superseded by a newer decision after {attempt} failed pre_failback tries");
                            info!(id = job.id, "{msg}");
                            self.event(EventKind::Gate, msg.clone()).await;
                            resolve(alerted, &msg);
                            Gate::Superseded(j)
                        }
                        None => Gate::Stopped,
                    };
                }
                _ = self.shutdown.cancelled() => {
                    waiting(false);
                    return Gate::Stopped;
                }
            }
            delay = (delay * 2).min(self.hooks.gate_retry_max);
        }
        Gate::Stopped
    }

    /// What the backend serves now for the change's record sets, in words.
    async fn describe_served(&self, job: &Job) -> String {
        match self
            .dns
            .backend
            .current(&job.change.zone, &job.change.to)
            .await
        {
            Ok(sets) => format!(
                "the server now answers {}",
                crate::dns::describe_sets(&sets)
            ),
            Err(e) => format!("what the server answers now is unknown: {e}"),
        }
    }

    fn new_event(&self, kind: EventKind, message: String) -> NewEvent {
        NewEvent {
            service: self.service.clone(),
            at_ms: now_ms(),
            kind,
            message,
        }
    }

    async fn event(&self, kind: EventKind, message: String) {
        self.history
            .write(HistoryWrite::Event(self.new_event(kind, message)))
            .await;
    }

    async fn attempt(&self, id: i64, error: Option<String>) {
        self.history
            .write(HistoryWrite::DnsAttempt {
                id,
                at_ms: now_ms(),
                error,
            })
            .await;
    }

    /// Records the change's result with its event, and notifies.
    /// A change that will not be applied (a failed failback gate, a permanent DNS error):
    /// recorded as failed, no longer pending, and reported to the service task, which blocks
    /// automatic switching until an operator steps in.
    async fn fail(&self, job: &Job, msg: String) {
        self.finish(
            job.id,
            ChangeStatus::Failed,
            Some(&msg),
            EventKind::DnsFailed,
        )
        .await;
        self.pending_flag.set(false);
        let _ = self.failed.send((job.to, msg)).await;
    }

    async fn finish(&self, id: i64, status: ChangeStatus, error: Option<&str>, kind: EventKind) {
        let msg = match error {
            Some(e) => format!("change {id} {status}: {e}"),
            None => format!("change {id} {status}"),
        };
        self.history
            .write(HistoryWrite::DnsFinish {
                id,
                at_ms: now_ms(),
                status,
                error: error.map(str::to_string),
                event: Some(self.new_event(kind, msg.clone())),
            })
            .await;
        let event = match kind {
            EventKind::DnsApplied => NoticeEvent::DnsApplied,
            _ => NoticeEvent::DnsFailed,
        };
        self.notifier
            .send(Notice::new(&self.service, event, msg, now_ms()));
    }

    /// Polls every authoritative server of the zone until it serves the change: the servers
    /// listed (or the backend's own), and, with `discover_ns`, every server the zone's NS
    /// records name (asked of a resolver for a hosted provider's zone). None found: not
    /// verified, and said so in the log.
    async fn confirm_served(&self, job: &Job) {
        let verification = self
            .dns
            .authorities
            .verify_change(&job.change.zone, &job.change.to)
            .await;
        for p in &verification.problems {
            warn!(problem = %p, "finding the zone's name servers to verify the change");
        }
        if verification.checks.is_empty() {
            return;
        }
        let checks: Vec<&crate::dns::served::ServerCheck> =
            verification.checks.iter().map(|(_, c)| c).collect();
        let all_ok = checks.iter().all(|c| c.ok);
        for c in &checks {
            let label = crate::metrics::ServedLabel {
                server: c.server.to_string(),
                result: if c.ok { "served" } else { "lagging" }.into(),
            };
            self.metrics.dns_verify.get_or_create(&label).inc();
            self.metrics
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
        let alert = verification
            .alert(id)
            .map(|text| self.new_event(EventKind::Alert, text));
        self.history
            .write(HistoryWrite::DnsVerified {
                id,
                verification: value,
                alert,
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
            self.notifier.send(Notice::new(
                &self.service,
                NoticeEvent::DnsLagging,
                format!("change {id} not served everywhere in time"),
                now_ms(),
            ));
        }
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn retry_after_lengthens_the_wait_up_to_a_bound() {
        let busy = DnsError::Transient("busy".into());
        assert_eq!(retry_wait(FIRST_RETRY, &busy), FIRST_RETRY);
        let throttled = |s| DnsError::Throttled {
            message: "429".into(),
            retry_after: Some(Duration::from_secs(s)),
        };
        assert_eq!(
            retry_wait(FIRST_RETRY, &throttled(3)),
            Duration::from_secs(3)
        );
        // A hint shorter than the backoff does not shorten it.
        assert_eq!(retry_wait(MAX_RETRY, &throttled(1)), MAX_RETRY);
        assert_eq!(retry_wait(FIRST_RETRY, &throttled(86_400)), MAX_RETRY_AFTER);
        let no_hint = DnsError::Throttled {
            message: "429".into(),
            retry_after: None,
        };
        assert_eq!(retry_wait(FIRST_RETRY, &no_hint), FIRST_RETRY);
    }
}
