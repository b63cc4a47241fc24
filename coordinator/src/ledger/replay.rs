//! Policy replay: the recorded rounds of a history run again through the pure decision
//! function under a proposed policy, and every round it would have decided differently named.
//! Pure: the store reads the rounds, `cli::replay` prints the report.
//!
//! What a round records is enough to decide it again: the trigger (primary down while the
//! primary was active, or primary up while the backup was), our own probes of both sides,
//! the vote tally, and in its reason the streak of probes that led to it. So for each vote
//! round, in order, per service:
//!
//! - the streak is compared with the proposed `fail_after` / `recover_after`: below it, the
//!   proposed policy would not have held the round yet;
//! - otherwise `failover::decide_round` gives the outcome under the proposed quorum, veto rule,
//!   failback mode and failback quorum;
//! - a switch it decides passes through flap damping as the daemon's does (the switches the
//!   replay itself decided, within `flap_window`, against `max_flips`);
//! - a recorded start-up hold or block stands (they depend on a restart or a failed DNS change,
//!   not on the policy).
//!
//! Where the replay switches and the record did not, or the other way round, the service's
//! side differs from the recorded one from then on: later rounds recorded on the other side
//! are named "not comparable" (what the proposed policy would have seen there was not
//! recorded) until the record and the replay are on the same side again.
//!
//! Limits, printed with the report: healthy probes write no round, so a proposed threshold
//! below the recorded one cannot show how much sooner a round would have come (the probes
//! before each episode's first round were not recorded).

use std::collections::BTreeMap;

use crate::failover::{Observation, Outcome, Policy, Side, Trigger, VoteTally, decide_round};
use crate::store::Round;

/// One recorded round, as the replay reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub id: i64,
    pub service: String,
    pub at_ms: u64,
    pub trigger: Trigger,
    pub outcome: Outcome,
    pub obs: Observation,
    /// The consecutive probes that led to the round, read from its reason.
    pub streak: Option<u32>,
    pub policy: Option<Policy>,
    /// How many decided rounds this row is: 1, or for a spell's closing round the rounds it
    /// stands for (`store::spells`), all decided alike.
    pub stands_for: u32,
}

impl Recorded {
    pub fn from_round(r: &Round) -> Recorded {
        let n = &r.round;
        Recorded {
            id: r.id,
            service: n.service.clone(),
            at_ms: n.at_ms,
            trigger: n.trigger,
            outcome: n.outcome,
            obs: Observation {
                primary_up: n.primary_up,
                backup_up: n.backup_up,
                votes: VoteTally {
                    up: n.votes_up,
                    down: n.votes_down,
                    invalid: n.votes_invalid,
                    missing: n.votes_missing,
                },
            },
            streak: streak_of(&n.reason),
            policy: n.policy.clone(),
            stands_for: n.spell.map_or(1, |s| s.rounds.max(1)),
        }
    }
}

/// The streak a vote round's reason starts with: "primary down for N consecutive probes" or
/// "primary up for N consecutive probes" (the text `failover::step` writes).
pub fn streak_of(reason: &str) -> Option<u32> {
    let rest = reason
        .strip_prefix("primary down for ")
        .or_else(|| reason.strip_prefix("primary up for "))?;
    let (n, tail) = rest.split_once(' ')?;
    tail.starts_with("consecutive probes")
        .then(|| n.parse().ok())
        .flatten()
}

/// What the proposed policy makes of one recorded round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// Decided as recorded.
    Same,
    /// Decided otherwise: `None` when no round would have been held yet (the streak is below
    /// the proposed threshold).
    Different { proposed: Option<Outcome> },
    /// Recorded while the service was on `recorded`; under the proposed policy it would have
    /// been on the other side, where this round's observations were not recorded.
    NotComparable { recorded: Side },
    /// An operator's override or failback: replayed as recorded, and the replay follows the
    /// record's side again from the next vote round.
    Operator,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub round: Recorded,
    pub replayed: Replayed,
}

/// The replay of one service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceReplay {
    pub service: String,
    /// The policy the last vote round was recorded under, if any.
    pub recorded_policy: Option<Policy>,
    pub proposed: Option<Policy>,
    pub lines: Vec<Line>,
    /// Caveats worth printing once (a lower threshold than recorded).
    pub notes: Vec<String>,
}

impl ServiceReplay {
    /// Decided rounds whose replay matches `f` (a spell's closing round counts for the
    /// rounds it stands for).
    pub fn count(&self, f: impl Fn(&Replayed) -> bool) -> usize {
        self.lines
            .iter()
            .filter(|l| f(&l.replayed))
            .map(|l| l.round.stands_for as usize)
            .sum()
    }

    /// Decided rounds replayed.
    pub fn rounds(&self) -> usize {
        self.count(|_| true)
    }

    pub fn differences(&self) -> usize {
        self.count(|r| matches!(r, Replayed::Different { .. }))
    }

    pub fn not_comparable(&self) -> usize {
        self.count(|r| matches!(r, Replayed::NotComparable { .. }))
    }
}

/// The side a vote round of `trigger` was recorded on.
fn side_of(trigger: Trigger) -> Option<Side> {
    match trigger {
        Trigger::PrimaryDown => Some(Side::Primary),
        Trigger::PrimaryUp => Some(Side::Backup),
        Trigger::Override | Trigger::ManualFailback => None,
    }
}

/// Replays one service's rounds (oldest first) under `proposed`.
pub fn replay_service(service: &str, proposed: &Policy, rounds: &[Recorded]) -> ServiceReplay {
    let mut out = ServiceReplay {
        service: service.to_string(),
        proposed: Some(proposed.clone()),
        ..Default::default()
    };
    // The side under the proposed policy; `None` = follow the record.
    let mut side: Option<Side> = None;
    // Automatic switches the replay decided, for flap damping.
    let mut flips: Vec<u64> = Vec::new();
    let (mut lowest_fail, mut lowest_recover) = (u32::MAX, u32::MAX);
    for r in rounds {
        let Some(recorded_side) = side_of(r.trigger) else {
            side = None;
            out.lines.push(Line {
                round: r.clone(),
                replayed: Replayed::Operator,
            });
            continue;
        };
        if let Some(p) = &r.policy {
            out.recorded_policy = Some(p.clone());
            lowest_fail = lowest_fail.min(p.fail_after);
            lowest_recover = lowest_recover.min(p.recover_after);
        }
        let here = side.unwrap_or(recorded_side);
        if here != recorded_side {
            out.lines.push(Line {
                round: r.clone(),
                replayed: Replayed::NotComparable {
                    recorded: recorded_side,
                },
            });
            continue;
        }
        let threshold = match r.trigger {
            Trigger::PrimaryDown => proposed.fail_after,
            _ => proposed.recover_after,
        };
        let proposed_outcome = if r.streak.is_some_and(|n| n < threshold) {
            None
        } else {
            decide_round(proposed, r.trigger, &r.obs).map(|o| hold(proposed, r, o, &mut flips))
        };
        let now = match proposed_outcome {
            Some(Outcome::Failover) => Side::Backup,
            Some(Outcome::Failback) => Side::Primary,
            _ => recorded_side,
        };
        side = Some(now);
        let replayed = if proposed_outcome == Some(r.outcome) {
            Replayed::Same
        } else {
            Replayed::Different {
                proposed: proposed_outcome,
            }
        };
        out.lines.push(Line {
            round: r.clone(),
            replayed,
        });
    }
    if lowest_fail != u32::MAX && proposed.fail_after < lowest_fail {
        out.notes.push(format!(
            "fail_after {} is below the recorded {lowest_fail}: probes before each episode's first round were not recorded, so the replay cannot show a round coming up to {} probe(s) sooner",
            proposed.fail_after,
            lowest_fail - proposed.fail_after
        ));
    }
    if lowest_recover != u32::MAX && proposed.recover_after < lowest_recover {
        out.notes.push(format!(
            "recover_after {} is below the recorded {lowest_recover}: probes before each hold-down's first round were not recorded, so the replay cannot show a failback coming up to {} probe(s) sooner",
            proposed.recover_after,
            lowest_recover - proposed.recover_after
        ));
    }
    out
}

/// A switch decided for `r` after the holds the policy alone cannot undo: a recorded start-up
/// hold or block stands, and flap damping counts the replay's own switches.
fn hold(p: &Policy, r: &Recorded, decided: Outcome, flips: &mut Vec<u64>) -> Outcome {
    if !matches!(decided, Outcome::Failover | Outcome::Failback) {
        return decided;
    }
    if matches!(r.outcome, Outcome::StartupHold | Outcome::Blocked) {
        return r.outcome;
    }
    flips.retain(|&t| r.at_ms.saturating_sub(t) < p.flap_window_ms);
    if flips.len() >= usize::try_from(p.max_flips).unwrap_or(usize::MAX) {
        return Outcome::Damped;
    }
    flips.push(r.at_ms);
    decided
}

/// Replays every service of `rounds` (oldest first) that `proposed` has a policy for; the
/// services without one are returned by name.
pub fn replay(
    proposed: &BTreeMap<String, Policy>,
    rounds: &[Recorded],
) -> (Vec<ServiceReplay>, Vec<String>) {
    let mut by_service: BTreeMap<&str, Vec<Recorded>> = BTreeMap::new();
    for r in rounds {
        by_service.entry(&r.service).or_default().push(r.clone());
    }
    let mut done = Vec::new();
    let mut unknown = Vec::new();
    for (service, rs) in by_service {
        match proposed.get(service) {
            Some(p) => done.push(replay_service(service, p, &rs)),
            None => unknown.push(service.to_string()),
        }
    }
    (done, unknown)
}

/// The policy's knobs in one line, as the report prints them.
pub fn describe(p: &Policy) -> String {
    format!(
        "quorum {} of {}, veto {}, fail_after {}, recover_after {}, failback {}{}, max_flips {} in {}s",
        p.quorum,
        p.witnesses,
        match p.veto {
            crate::failover::VetoRule::Any => "any",
            crate::failover::VetoRule::Majority => "majority",
        },
        p.fail_after,
        p.recover_after,
        match p.failback {
            crate::failover::FailbackMode::Auto => "auto",
            crate::failover::FailbackMode::Manual => "manual",
        },
        if p.failback_needs_quorum {
            " (needs quorum)"
        } else {
            ""
        },
        p.max_flips,
        p.flap_window_ms / 1000
    )
}

#[cfg(test)]
mod tests;
