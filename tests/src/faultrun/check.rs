//! The fault run's invariants (issue #19), each a pure function over a [`Record`] returning
//! the violations it found; each violation names the invariant, when, and the round, change
//! or fault that broke it.
//!
//! 1. [`no_failover_while_reachable`]: no failover while a majority of witnesses could reach
//!    the primary during the preceding interval ("could reach": from the fault log, no fault
//!    that may stop that witness probing the primary overlapped the interval).
//! 2. [`answer_changes_justified`]: every answer change the client saw matches an applied DNS
//!    change (from the answer before to the answer after, in order) recorded with a round
//!    whose signed votes re-verify and justify it; `verify-history` passes.
//! 3. [`nothing_lost`]: round, change and event ids without gaps; every row read before a
//!    SIGKILL still there, unchanged, at the end; applied changes chain end to start (or
//!    start from the target of a change superseded in between, before it applied).
//! 4. [`liveness`]: every fault repaired, and DNS back on the primary within hold-down + 2
//!    intervals of the last repair (and staying there).
//! 5. [`coordinator_accountable`]: every SIGKILL followed by a restart whose API answers
//!    within a bound; every answer the client got is the zone's initial one or a recorded
//!    change's target, and the zone's SOA serial went up by exactly the number of applied
//!    changes that changed what was served (nothing was written that the history does not
//!    know, nothing twice; a change that found its target already served writes nothing).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use super::record::{ChangeRec, Life, Ms, Record, RoundRec};

/// The five invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    NoFailoverWhileReachable = 1,
    AnswerChangesJustified = 2,
    NothingLost = 3,
    Liveness = 4,
    CoordinatorAccountable = 5,
}

impl Invariant {
    pub const ALL: [Invariant; 5] = [
        Invariant::NoFailoverWhileReachable,
        Invariant::AnswerChangesJustified,
        Invariant::NothingLost,
        Invariant::Liveness,
        Invariant::CoordinatorAccountable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoFailoverWhileReachable => {
                "no failover while a majority reaches the primary"
            }
            Invariant::AnswerChangesJustified => {
                "every answer change is a justified applied change"
            }
            Invariant::NothingLost => "nothing lost across SIGKILLs",
            Invariant::Liveness => "back on the primary after the last repair",
            Invariant::CoordinatorAccountable => {
                "coordinator never stayed down, wrote nothing unrecorded"
            }
        }
    }
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: Invariant,
    pub at_ms: Option<Ms>,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} ({})",
            self.invariant as u8,
            self.invariant.name()
        )?;
        if let Some(t) = self.at_ms {
            write!(f, " at {t}")?;
        }
        write!(f, ": {}", self.what)
    }
}

fn v(invariant: Invariant, at_ms: Option<Ms>, what: String) -> Violation {
    Violation {
        invariant,
        at_ms,
        what,
    }
}

/// Every invariant, in order.
pub fn check(r: &Record) -> Vec<Violation> {
    let mut out = no_failover_while_reachable(r);
    out.extend(answer_changes_justified(r));
    out.extend(nothing_lost(r));
    out.extend(liveness(r));
    out.extend(coordinator_accountable(r));
    out
}

/// Whether `[a1, a2]` and `[b1, b2]` overlap.
fn overlaps(a1: Ms, a2: Ms, b1: Ms, b2: Ms) -> bool {
    a1 <= b2 && b1 <= a2
}

/// Invariant 1.
pub fn no_failover_while_reachable(r: &Record) -> Vec<Violation> {
    let s = &r.settings;
    let mut out = Vec::new();
    for round in r.last.rounds.iter().filter(|x| x.outcome == "failover") {
        let end = round.at_ms;
        let start = end.saturating_sub(s.interval_ms + s.slack_ms);
        let reaching: Vec<String> = (1..=s.witnesses)
            .filter(|w| {
                !r.faults.iter().any(|f| {
                    f.kind.blocks_witness_reaching_primary(*w)
                        && overlaps(
                            f.start_ms,
                            f.end_ms.map_or(Ms::MAX, |e| e.saturating_add(s.slack_ms)),
                            start,
                            end,
                        )
                })
            })
            .map(|w| format!("w{w}"))
            .collect();
        if reaching.len() * 2 > usize::from(s.witnesses) {
            out.push(v(
                Invariant::NoFailoverWhileReachable,
                Some(round.at_ms),
                format!(
                    "round {} failed over while {} of {} witnesses could reach the primary ({}) in the interval before it",
                    round.id,
                    reaching.len(),
                    s.witnesses,
                    reaching.join(", ")
                ),
            ));
        }
    }
    out
}

/// The client's answer changes: `(time first seen, before, after)`, failed queries skipped.
pub fn answer_changes(r: &Record) -> Vec<(Ms, Vec<IpAddr>, Vec<IpAddr>)> {
    let mut prev = r.settings.initial.clone();
    let mut out = Vec::new();
    for a in &r.answers {
        if let Ok(addrs) = &a.result
            && *addrs != prev
        {
            out.push((a.at_ms, prev.clone(), addrs.clone()));
            prev = addrs.clone();
        }
    }
    out
}

/// Why `round`'s stored votes do not re-verify or do not justify its switch, if they do not.
fn unjustified(round: &RoundRec) -> Option<String> {
    let Some(votes) = &round.votes else {
        return Some(format!("round {}'s votes were not read", round.id));
    };
    if let Some(bad) = votes.iter().find(|x| x.valid && x.reverified != "ok") {
        return Some(format!(
            "round {}: {}'s vote was counted but re-verifies as {:?}",
            round.id, bad.witness, bad.reverified
        ));
    }
    let count = |verdict: &str| {
        votes
            .iter()
            .filter(|x| x.valid && x.reverified == "ok" && x.verdict.as_deref() == Some(verdict))
            .count()
    };
    let quorum = round.quorum.map_or(usize::MAX, |q| q as usize);
    match (round.outcome.as_str(), round.trigger.as_str()) {
        ("failover", _) if count("down") >= quorum => None,
        ("failover", _) => Some(format!(
            "round {} failed over with {} re-verified down votes, quorum {:?}",
            round.id,
            count("down"),
            round.quorum
        )),
        ("failback", "primary-up") if round.failback_needs_quorum == Some(false) => None,
        ("failback", "primary-up") if count("up") >= quorum => None,
        ("failback", "primary-up") => Some(format!(
            "round {} failed back with {} re-verified up votes, quorum {:?}",
            round.id,
            count("up"),
            round.quorum
        )),
        (outcome, trigger) => Some(format!(
            "round {} ({outcome}, trigger {trigger}) is not an automatic switch",
            round.id
        )),
    }
}

/// Invariant 2.
pub fn answer_changes_justified(r: &Record) -> Vec<Violation> {
    let s = &r.settings;
    let mut out = Vec::new();
    if r.verified.exit_code != Some(0) {
        out.push(v(
            Invariant::AnswerChangesJustified,
            None,
            format!(
                "verify-history exited with {:?}: {}",
                r.verified.exit_code,
                r.verified.report.trim()
            ),
        ));
    }
    let mut applied: Vec<&ChangeRec> = r
        .last
        .changes
        .iter()
        .filter(|c| c.status == "applied")
        .collect();
    applied.sort_by_key(|c| c.id);
    let rounds: BTreeMap<i64, &RoundRec> = r.last.rounds.iter().map(|x| (x.id, x)).collect();
    let mut next = 0;
    for (t, before, after) in answer_changes(r) {
        let found = applied.iter().enumerate().skip(next).find(|(_, c)| {
            c.from == before && c.to == after && c.created_ms <= t.saturating_add(s.slack_ms)
        });
        let Some((i, c)) = found else {
            out.push(v(
                Invariant::AnswerChangesJustified,
                Some(t),
                format!(
                    "the client's answer changed from {before:?} to {after:?} with no applied DNS change from the one to the other recorded before it"
                ),
            ));
            continue;
        };
        next = i + 1;
        let why = match c.round_id.and_then(|id| rounds.get(&id)) {
            None => Some(format!("its round {:?} is not in the history", c.round_id)),
            Some(round) => unjustified(round),
        };
        if let Some(why) = why {
            out.push(v(
                Invariant::AnswerChangesJustified,
                Some(t),
                format!(
                    "the client's answer changed to {after:?} by DNS change {}, but {why}",
                    c.id
                ),
            ));
        }
    }
    out
}

/// Gaps in a list of ids that should be exactly `1..=n`.
fn gaps(what: &str, ids: impl Iterator<Item = i64>) -> Vec<String> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    let mut expect = 1;
    for id in ids {
        if id != expect {
            out.push(format!(
                "{what} ids jump from {} to {id}",
                expect.saturating_sub(1)
            ));
        }
        expect = id + 1;
    }
    out
}

/// Invariant 3.
pub fn nothing_lost(r: &Record) -> Vec<Violation> {
    let last = &r.last;
    let mut out: Vec<Violation> = [
        gaps("round", last.rounds.iter().map(|x| x.id)),
        gaps("DNS change", last.changes.iter().map(|x| x.id)),
        gaps("event", last.events.iter().map(|x| x.id)),
    ]
    .concat()
    .into_iter()
    .map(|w| v(Invariant::NothingLost, None, w))
    .collect();
    let rounds: BTreeMap<i64, &RoundRec> = last.rounds.iter().map(|x| (x.id, x)).collect();
    for round in &last.rounds {
        if let Some((first, _)) = round.spell
            && (first >= round.id || !rounds.contains_key(&first))
        {
            out.push(v(
                Invariant::NothingLost,
                Some(round.at_ms),
                format!(
                    "round {} closes a spell from round {first}, which is not an earlier round of the history",
                    round.id
                ),
            ));
        }
    }
    let changes: BTreeMap<i64, &ChangeRec> = last.changes.iter().map(|x| (x.id, x)).collect();
    let events: BTreeMap<i64, _> = last.events.iter().map(|x| (x.id, x)).collect();
    for snap in &r.before_kills {
        let at = Some(snap.at_ms);
        for x in &snap.rounds {
            match rounds.get(&x.id) {
                None => out.push(v(
                    Invariant::NothingLost,
                    at,
                    format!(
                        "round {} was read before a SIGKILL and is gone after it",
                        x.id
                    ),
                )),
                Some(y)
                    if (y.at_ms, &y.outcome, &y.trigger) != (x.at_ms, &x.outcome, &x.trigger) =>
                {
                    out.push(v(
                        Invariant::NothingLost,
                        at,
                        format!(
                            "round {} changed across a SIGKILL: {} {} at {} became {} {} at {}",
                            x.id, x.trigger, x.outcome, x.at_ms, y.trigger, y.outcome, y.at_ms
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        for x in &snap.changes {
            match changes.get(&x.id) {
                None => out.push(v(
                    Invariant::NothingLost,
                    at,
                    format!(
                        "DNS change {} was read before a SIGKILL and is gone after it",
                        x.id
                    ),
                )),
                Some(y)
                    if (y.round_id, &y.to_side, &y.from, &y.to)
                        != (x.round_id, &x.to_side, &x.from, &x.to) =>
                {
                    out.push(v(
                        Invariant::NothingLost,
                        at,
                        format!("DNS change {} changed across a SIGKILL", x.id),
                    ))
                }
                Some(_) => {}
            }
        }
        for x in &snap.events {
            match events.get(&x.id) {
                None => out.push(v(
                    Invariant::NothingLost,
                    at,
                    format!(
                        "event {} was read before a SIGKILL and is gone after it",
                        x.id
                    ),
                )),
                Some(y) if (y.at_ms, &y.kind, &y.message) != (x.at_ms, &x.kind, &x.message) => out
                    .push(v(
                        Invariant::NothingLost,
                        at,
                        format!("event {} changed across a SIGKILL", x.id),
                    )),
                Some(_) => {}
            }
        }
    }
    for step in applied_steps(r) {
        if let Some(served) = step.broken_from {
            out.push(v(
                Invariant::NothingLost,
                Some(step.change.created_ms),
                format!(
                    "applied DNS change {} starts from {:?}, but the change applied before it ends at {served:?}",
                    step.change.id, step.change.from
                ),
            ));
        }
    }
    out
}

/// One applied change, walked in id order by [`applied_steps`].
struct Step<'a> {
    change: &'a ChangeRec,
    /// Whether it changed what was served (a change whose target was already served, like
    /// one following a superseded change that never applied, writes nothing: RFC 2136's
    /// prerequisite fails and the coordinator finds its target in place).
    wrote: bool,
    /// What was served before it, when its `from` is neither that nor the target of a change
    /// superseded since the previous applied one.
    broken_from: Option<Vec<IpAddr>>,
}

/// The applied changes in id order against what the zone served before each. A change
/// starts from the previous applied change's end, or from the target of a change that was
/// recorded after that and superseded before it applied (the coordinator's intent then).
fn applied_steps(r: &Record) -> Vec<Step<'_>> {
    let mut changes: Vec<&ChangeRec> = r.last.changes.iter().collect();
    changes.sort_by_key(|c| c.id);
    let mut served = r.settings.initial.clone();
    let mut intents: Vec<&Vec<IpAddr>> = Vec::new();
    let mut out = Vec::new();
    for c in changes {
        if c.status != "applied" {
            if c.status == "superseded" {
                intents.push(&c.to);
            }
            continue;
        }
        let broken_from = (c.from != served && !intents.contains(&&c.from)).then(|| served.clone());
        out.push(Step {
            change: c,
            wrote: c.to != served,
            broken_from,
        });
        served = c.to.clone();
        intents.clear();
    }
    out
}

/// Invariant 4.
pub fn liveness(r: &Record) -> Vec<Violation> {
    let s = &r.settings;
    let mut out = Vec::new();
    let mut repaired: Ms = 0;
    for f in &r.faults {
        match f.end_ms {
            None => out.push(v(
                Invariant::Liveness,
                Some(f.start_ms),
                format!("fault {} was never repaired", f.kind),
            )),
            Some(e) => repaired = repaired.max(e),
        }
    }
    if !out.is_empty() {
        return out;
    }
    let bound = (u64::from(s.hold_down) + 2) * s.interval_ms;
    // The first answer at or after the repair from which on every answer is the primary.
    let after: Vec<_> = r
        .answers
        .iter()
        .filter(|a| a.at_ms >= repaired)
        .filter_map(|a| a.result.as_ref().ok().map(|x| (a.at_ms, x)))
        .collect();
    let settled = after
        .iter()
        .rposition(|(_, x)| **x != s.primary)
        .map_or(0, |i| i + 1);
    match after.get(settled) {
        None => out.push(v(
            Invariant::Liveness,
            Some(repaired),
            format!(
                "after the last repair the client never settled on the primary {:?} (last answer {:?})",
                s.primary,
                after.last().map(|(_, x)| x)
            ),
        )),
        Some((t, _)) if t - repaired > bound.saturating_add(s.slack_ms) => out.push(v(
            Invariant::Liveness,
            Some(*t),
            format!(
                "DNS came back on the primary {} ms after the last repair; the bound is hold-down + 2 intervals = {bound} ms",
                t - repaired
            ),
        )),
        Some(_) => {}
    }
    out
}

/// Invariant 5.
pub fn coordinator_accountable(r: &Record) -> Vec<Violation> {
    let s = &r.settings;
    let mut out = Vec::new();
    let mut life = r.life.clone();
    life.sort_by_key(|l| l.at());
    for (i, l) in life.iter().enumerate() {
        let Life::Killed(t) = *l else { continue };
        let start = life[i + 1..].iter().find_map(|x| match x {
            Life::Started(s) => Some(*s),
            _ => None,
        });
        let Some(start) = start else {
            out.push(v(
                Invariant::CoordinatorAccountable,
                Some(t),
                "the coordinator was SIGKILLed and never started again".into(),
            ));
            continue;
        };
        let up = life
            .iter()
            .find_map(|x| match x {
                Life::ApiUp(u) if *u >= start => Some(*u),
                _ => None,
            })
            .filter(|u| u - start <= s.restart_bound_ms);
        if up.is_none() {
            out.push(v(
                Invariant::CoordinatorAccountable,
                Some(start),
                format!(
                    "the coordinator restarted after a SIGKILL did not answer its API within {} ms",
                    s.restart_bound_ms
                ),
            ));
        }
    }
    let steps = applied_steps(r);
    let applied = steps.len();
    let wrote = steps.iter().filter(|s| s.wrote).count() as u64;
    match r.serials {
        None => out.push(v(
            Invariant::CoordinatorAccountable,
            None,
            "the zone's SOA serial was not read before and after the run".into(),
        )),
        Some((before, after)) if u64::from(after.wrapping_sub(before)) != wrote => {
            out.push(v(
                Invariant::CoordinatorAccountable,
                None,
                format!(
                    "the zone's SOA serial went from {before} to {after}, but the history records {applied} applied changes, {wrote} of which changed what was served"
                ),
            ))
        }
        Some(_) => {}
    }
    let mut known = vec![s.initial.clone()];
    known.extend(r.last.changes.iter().map(|c| c.to.clone()));
    let mut reported: Vec<&Vec<IpAddr>> = Vec::new();
    for a in &r.answers {
        if let Ok(addrs) = &a.result
            && !known.contains(addrs)
            && !reported.contains(&addrs)
        {
            reported.push(addrs);
            out.push(v(
                Invariant::CoordinatorAccountable,
                Some(a.at_ms),
                format!("the client was served {addrs:?}, which no recorded DNS change wrote"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
