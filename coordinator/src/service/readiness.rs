//! A service's readiness, evaluated every interval by its task: the interval's witness
//! answers plus the last report of the service's readiness task (DNS side, backup as the
//! witnesses see it) make the live verdict; `crate::readiness::Alarm` and `Spells` turn it
//! into notices with hysteresis; the verdict goes to the status and `/metrics`.

use std::collections::BTreeSet;

use tokio::sync::watch;

use super::ServiceDeps;
use crate::config::{ReadinessConfig, ServiceConfig, WitnessConfig};
use crate::failover::Observation;
use crate::metrics::{ReasonLabel, ServiceLabel};
use crate::notify::{Event, Notice};
use crate::readiness::checks::SideReport;
use crate::readiness::{self, Alarm, Alert, Asked, ReadinessStatus, Reason, Spells};
use crate::witnesses::Answer;

pub(crate) struct Tracker {
    side: watch::Receiver<Option<SideReport>>,
    alarm: Alarm,
    witness_spells: Spells,
    disputed: Spells,
    status: ReadinessStatus,
    /// Reason codes with a metric series for this service (set to 0 when they clear).
    codes_seen: BTreeSet<&'static str>,
    memory: crate::readiness::AlertMemory,
    service: String,
    /// Hysteresis runs on the monotonic clock: a wall clock stepped back (NTP fixing a clock
    /// that was off, the very fault readiness reports) must not freeze "ready again".
    origin: tokio::time::Instant,
}

impl Tracker {
    pub(crate) fn new(
        cfg: &ReadinessConfig,
        side: watch::Receiver<Option<SideReport>>,
        memory: crate::readiness::AlertMemory,
        service: &str,
    ) -> Self {
        let after = cfg.alert_after.as_millis() as u64;
        Tracker {
            side,
            alarm: if memory.alerting(service) {
                Alarm::resumed(after)
            } else {
                Alarm::new(after)
            },
            memory,
            service: service.to_string(),
            origin: tokio::time::Instant::now(),
            witness_spells: Spells::new(cfg.witness_alert_after.as_millis() as u64),
            disputed: Spells::new(cfg.disputed_alert_after.as_millis() as u64),
            status: ReadinessStatus::unknown(),
            codes_seen: BTreeSet::new(),
        }
    }

    pub(crate) fn status(&self) -> ReadinessStatus {
        self.status.clone()
    }

    /// One interval: the verdict, the notices it gives, the metrics.
    pub(crate) fn evaluate(
        &mut self,
        deps: &ServiceDeps,
        svc: &ServiceConfig,
        answers: &[Answer],
        obs: &Observation,
        now: u64,
    ) -> Vec<Notice> {
        let witnesses: Vec<&WitnessConfig> = svc
            .witnesses
            .iter()
            .map(|&i| &deps.witnesses[i].config)
            .collect();
        let primary = svc.primary_probe.address().ip().to_string();
        let mut reasons = readiness::witness_reasons(
            &svc.name,
            &witnesses,
            answers,
            Asked::Primary(&primary),
            svc.policy.quorum,
        );
        let side = self.side.borrow().clone();
        if let Some(side) = &side {
            reasons.extend(side.reasons.iter().cloned());
        }
        let mut notices = Vec::new();
        let notice = |(event, resolved): (Event, bool), msg: String| {
            let n = Notice::new(&svc.name, event, msg, now);
            if resolved { n.resolved() } else { n }
        };
        let mono = self.origin.elapsed().as_millis() as u64;

        match self.alarm.update(mono, &reasons) {
            Some(Alert::NotReady { reasons, more }) => notices.push(notice(
                (Event::NotReady, false),
                format!(
                    "{}{}",
                    if more {
                        "still not ready, and also: "
                    } else {
                        "not ready: a failover now would not work as configured: "
                    },
                    list(&reasons)
                ),
            )),
            Some(Alert::ReadyAgain) => notices.push(notice(
                (Event::NotReady, true),
                "ready again: every witness, the DNS credentials and the authoritative servers check out".into(),
            )),
            None => {}
        }

        let witness_reasons: Vec<Reason> = reasons
            .iter()
            .filter(|r| r.subject.starts_with("witness "))
            .cloned()
            .collect();
        let ch = self.witness_spells.update(mono, &witness_reasons);
        for r in ch.confirmed {
            notices.push(notice(
                (Event::WitnessAlert, false),
                format!(
                    "{} silent or refusing for more than {}: {}",
                    r.subject,
                    humantime(self.witness_after_ms()),
                    r
                ),
            ));
        }
        for r in ch.ended {
            notices.push(notice(
                (Event::WitnessAlert, true),
                format!("{} answers with valid votes again", r.subject),
            ));
        }

        let disputed = disputed(&svc.name, obs);
        let ch = self.disputed.update(mono, disputed.as_slice());
        for r in ch.confirmed {
            notices.push(notice(
                (Event::DisputedAlert, false),
                format!(
                    "disputed for more than {}: {}",
                    humantime(self.disputed_after_ms()),
                    r
                ),
            ));
        }
        if !ch.ended.is_empty() {
            notices.push(notice(
                (Event::DisputedAlert, true),
                "this coordinator reaches the primary again (or the witnesses agree)".into(),
            ));
        }

        let verdict = if reasons.is_empty() {
            "ready"
        } else {
            "not-ready"
        };
        if verdict != self.status.verdict {
            self.status.since_ms = now;
        }
        self.status.verdict = verdict;
        self.status.alerting = self.alarm.alerting();
        self.memory.set(&self.service, self.alarm.alerting());
        self.status.dns = side.map(|s| s.dns);
        self.status.reasons = reasons;
        self.publish_metrics(deps, svc);
        notices
    }

    fn witness_after_ms(&self) -> u64 {
        self.witness_spells.after_ms()
    }

    fn disputed_after_ms(&self) -> u64 {
        self.disputed.after_ms()
    }

    fn publish_metrics(&mut self, deps: &ServiceDeps, svc: &ServiceConfig) {
        let m = &deps.metrics;
        m.ready
            .get_or_create(&ServiceLabel {
                service: svc.name.clone(),
            })
            .set((self.status.verdict == "ready") as i64);
        let mut counts: std::collections::BTreeMap<&'static str, i64> =
            self.codes_seen.iter().map(|c| (*c, 0)).collect();
        for r in &self.status.reasons {
            *counts.entry(r.code).or_default() += 1;
        }
        for (code, n) in counts {
            self.codes_seen.insert(code);
            m.readiness_reasons
                .get_or_create(&ReasonLabel {
                    service: svc.name.clone(),
                    reason: code.to_string(),
                })
                .set(n);
        }
        for &i in &svc.witnesses {
            deps.witnesses[i].publish_reliability(m);
        }
    }
}

/// Our own probe says the primary is down while a witness sees it up: the backup's own path
/// to the primary is cut. Harmless for a while (nothing is switched); long, it hides a real
/// outage from this coordinator, so a long spell is an alert.
fn disputed(service: &str, obs: &Observation) -> Option<Reason> {
    (!obs.primary_up && obs.votes.up > 0).then(|| {
        Reason::new(
            "disputed",
            format!("service {service}"),
            format!(
                "this coordinator cannot reach the primary, but {} witness(es) can",
                obs.votes.up
            ),
            "check the backup's own network path to the primary",
        )
    })
}

fn list(reasons: &[Reason]) -> String {
    reasons
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn humantime(ms: u64) -> String {
    if ms >= 60_000 && ms.is_multiple_of(60_000) {
        format!("{} min", ms / 60_000)
    } else {
        format!("{} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::failover::VoteTally;

    #[test]
    fn disputed_is_our_primary_probe_down_while_a_witness_sees_it_up() {
        let obs = |primary_up, up, down| Observation {
            primary_up,
            backup_up: true,
            votes: VoteTally {
                up,
                down,
                ..Default::default()
            },
        };
        assert!(disputed("www", &obs(false, 1, 2)).is_some());
        assert_eq!(
            disputed("www", &obs(false, 2, 0)).unwrap().message,
            "this coordinator cannot reach the primary, but 2 witness(es) can"
        );
        // All agree it is down (an outage), or we see it up: not disputed.
        assert!(disputed("www", &obs(false, 0, 3)).is_none());
        assert!(disputed("www", &obs(true, 3, 0)).is_none());
        assert!(disputed("www", &obs(true, 0, 3)).is_none());
    }
}
