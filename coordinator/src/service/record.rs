//! Turning what `failover::step` returned into effects as data: the decision record (one
//! transaction: state, round with its raw votes, events, pending DNS change), the DNS job for
//! the worker, and the notices. Pure like `step`: no tokio, no clock, no I/O, no logging; the
//! service task writes the record first and acts only once it is in the history.

use crate::dns::{Change, RecordSet};
use crate::failover::{Action, Event, Observation, Policy, Side, State};
use crate::notify::{Event as NoticeEvent, Notice};
use crate::store::{Decision, EventKind, NewRound, PendingChange, VoteRecord};

/// What a service's decisions are about: fixed for the life of the service task.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub service: String,
    pub zone: String,
    /// The backend's kind, stored with each DNS change.
    pub backend: String,
    pub primary: Vec<RecordSet>,
    pub backup: Vec<RecordSet>,
    /// The policy `step` runs on, stored with every round so its outcome can be re-derived.
    pub policy: Policy,
}

impl Target {
    fn records(&self, side: Side) -> Vec<RecordSet> {
        match side {
            Side::Primary => self.primary.clone(),
            Side::Backup => self.backup.clone(),
        }
    }
}

/// One call of the decision function, as the task saw it.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub event: Event,
    /// The state as last written to the history (`None`: nothing written since start).
    pub persisted: Option<&'a State>,
    /// The state `step` returned.
    pub next: &'a State,
    pub actions: Vec<Action>,
    /// The last tick's observation (the round's counts).
    pub obs: Observation,
    /// The last tick's raw votes, stored with a round decided on them.
    pub votes: Option<Vec<VoteRecord>>,
    /// For an operator's command: the API token role that gave it (`admin`).
    pub by: Option<&'a str>,
    pub now_ms: u64,
}

/// A DNS change for the worker, once the history holds it as pending.
#[derive(Clone, Debug, PartialEq)]
pub struct Switch {
    pub to: Side,
    pub change: Change,
    pub reason: String,
}

/// The effects of one decision, as data.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// What to write in one transaction; `None` when the decision changed nothing worth a row.
    pub decision: Option<Decision>,
    /// The persisted form of the new state (what the history holds once `decision` is written).
    pub persisted: State,
    /// The DNS change to hand to the worker once `decision` is written.
    pub switch: Option<Switch>,
    /// Sent once `decision` is written.
    pub notices: Vec<Notice>,
}

/// The state without its per-tick counters: persisted only when this changes, so a healthy
/// service costs no writes.
pub fn persistent(s: &State) -> State {
    let mut p = s.clone();
    p.primary_down_streak = 0;
    p.primary_up_streak = 0;
    p.backup_down_streak = 0;
    p.ticks_since_start = 0;
    p
}

/// Turns one decision into its record, DNS job and notices.
pub fn record(target: &Target, input: Input<'_>) -> Recorded {
    let Input {
        event,
        persisted,
        next,
        actions,
        obs,
        votes,
        by,
        now_ms: now,
    } = input;
    let name = target.service.as_str();
    let mut d = Decision {
        service: name.to_string(),
        at_ms: now,
        ..Default::default()
    };
    let p = persistent(next);
    if persisted != Some(&p) {
        d.state = Some(p.clone());
    }
    let mut switch = None;
    let mut notices = Vec::new();
    let operator = matches!(event, Event::SetOverride(_) | Event::ManualFailback);
    let by_role = |n: Notice| match by {
        Some(role) if operator => n.by(role),
        _ => n,
    };
    for a in actions {
        match a {
            Action::Switch { to, reason } => {
                let change = Change {
                    zone: target.zone.clone(),
                    from: target.records(to.other()),
                    to: target.records(to),
                };
                d.dns_change = Some(PendingChange {
                    to_side: to,
                    backend: target.backend.clone(),
                    change: change.clone(),
                });
                switch = Some(Switch { to, change, reason });
            }
            Action::RecordRound {
                trigger,
                outcome,
                reason,
            } => {
                d.round = Some(NewRound {
                    service: name.to_string(),
                    at_ms: now,
                    trigger,
                    outcome,
                    reason,
                    primary_up: obs.primary_up,
                    backup_up: obs.backup_up,
                    votes_up: obs.votes.up,
                    votes_down: obs.votes.down,
                    votes_invalid: obs.votes.invalid,
                    votes_missing: obs.votes.missing,
                    changed_dns: false,
                    policy: Some(target.policy.clone()),
                    spell: None,
                });
                if trigger.has_votes()
                    && let Some(v) = &votes
                {
                    d.votes = v.clone();
                }
            }
            Action::Alert { kind, message } => {
                d.events
                    .push((EventKind::Alert, format!("{kind}: {message}")));
                notices.push(by_role(Notice::new(
                    name,
                    NoticeEvent::from_alert(kind),
                    message,
                    now,
                )));
            }
            Action::Resolve { kind, message } => {
                d.events
                    .push((EventKind::Resolved, format!("{kind}: {message}")));
                notices.push(
                    Notice::new(name, NoticeEvent::from_alert(kind), message, now).resolved(),
                );
            }
            Action::Transition { from, to, reason } => {
                let msg = format!("{from}-active -> {to}-active: {reason}");
                d.events.push((EventKind::Transition, msg.clone()));
                let mut n = Notice::new(name, NoticeEvent::switch_to(to), msg, now);
                n.switch = Some((from, to));
                // The votes of the round that decided it (an operator's command has none).
                if !operator {
                    n.votes = Some(obs.votes);
                }
                notices.push(by_role(n));
            }
        }
    }
    if let Some(r) = d.round.as_mut() {
        r.changed_dns = d.dns_change.is_some();
    }
    match event {
        Event::SetOverride(_) => {
            let msg = format!("operator set {}", next.override_.as_str());
            d.events.push((EventKind::Override, msg.clone()));
            notices.insert(
                0,
                by_role(Notice::new(name, NoticeEvent::Override, msg, now)),
            );
        }
        Event::ManualFailback => {
            notices.insert(
                0,
                by_role(Notice::new(
                    name,
                    NoticeEvent::ManualFailback,
                    "operator asked for a failback",
                    now,
                )),
            );
        }
        _ => {}
    }
    let wrote =
        d.state.is_some() || d.round.is_some() || !d.events.is_empty() || d.dns_change.is_some();
    Recorded {
        decision: wrote.then_some(d),
        persisted: p,
        switch,
        notices,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
