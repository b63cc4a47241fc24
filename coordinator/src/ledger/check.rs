//! The round check: one stored round and its stored votes against public keys only. Pure: no
//! SQL, no clock, no network; the store reads the rows, this says what is wrong with them.
//!
//! For each vote: the request it answered is signed by a coordinator key of the set (and was
//! for this round's service, issued before the round); the vote is signed by the witness key
//! it names, bound to that request's hash, service and round, its verdict agreeing with its
//! evidence; and what verification says now agrees with what was stored (`valid`). For the
//! round, when the policy it was decided under is recorded (schema 2 on): the recorded tally
//! equals the count of votes that verify and count (a witness once; not a key retired before
//! the request), and the recorded outcome is what `failover::decide_round` gives for that
//! tally under that policy. A failover backed by too few valid votes is named here.

use std::collections::BTreeMap;

use shared::protocol::{Envelope, Expected, Verdict, VoteRequest};

use super::keys::KeySet;
use crate::failover::{Observation, Outcome, Trigger, VoteTally, decide_round};
use crate::store::{Round, VoteRecord};

/// What the check found in one round.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundCheck {
    pub votes: u64,
    /// Votes stored as valid that verify now.
    pub valid_ok: u64,
    /// Votes stored as invalid that still fail (as they should).
    pub invalid_confirmed: u64,
    pub no_answer: u64,
    /// Votes that verify but do not count (a retired key, a witness's second vote).
    pub not_counted: u64,
    /// Requests whose coordinator signature verifies.
    pub requests_ok: u64,
    /// Whether the outcome was re-derived (a policy is recorded and the round has votes).
    pub outcome_checked: bool,
    /// Each names the round, and the witness where one is concerned.
    pub problems: Vec<String>,
}

/// What one stored vote is, checked now.
#[derive(Clone, Debug, PartialEq)]
pub enum VoteStatus {
    NoAnswer,
    /// Verifies; `counts` is false for a key retired before the request.
    Verified {
        witness: String,
        verdict: Verdict,
        counts: bool,
    },
    /// Does not verify: `<code>: <reason>`.
    Fails(String),
}

/// The request a vote answered, read back from its stored envelope (not yet trusted).
fn read_request(raw: &str) -> Result<(Envelope, VoteRequest), String> {
    let env = Envelope::from_json(raw.as_bytes()).map_err(|e| format!("{}: {e}", e.code()))?;
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .map_err(|e| format!("malformed: payload is not base64: {e}"))?;
    let req: VoteRequest = shared::protocol::from_json_object(&payload)
        .map_err(|e| format!("malformed: vote request: {e}"))?;
    Ok((env, req))
}

/// Checks one stored vote against `keys` (the request it answered is read, not verified
/// here: [`check_round`] verifies it).
pub fn check_vote(keys: &KeySet, v: &VoteRecord) -> VoteStatus {
    let Some(raw) = &v.vote_envelope else {
        return VoteStatus::NoAnswer;
    };
    let Some(key) = keys.witness(&v.witness_key_id) else {
        return VoteStatus::Fails(format!(
            "unknown-witness: no witness key with id {} in the keys",
            v.witness_key_id
        ));
    };
    let (request_env, request) = match read_request(&v.request_envelope) {
        Ok(r) => r,
        Err(e) => return VoteStatus::Fails(format!("stored request unreadable: {e}")),
    };
    let hash = match request_env.request_hash() {
        Ok(h) => h,
        Err(e) => return VoteStatus::Fails(format!("stored request unreadable: {e}")),
    };
    let opened = Envelope::from_json(raw).and_then(|env| {
        shared::protocol::open_vote(
            &env,
            &Expected {
                witness_key: &key.key,
                request_hash: &hash,
                service: &request.service,
                round: request.round,
            },
        )
    });
    match opened {
        Ok(vote) => VoteStatus::Verified {
            witness: key.name.clone(),
            verdict: vote.verdict,
            counts: key.counts_at(request.issued_at_ms),
        },
        Err(e) => VoteStatus::Fails(format!("{}: {e}", e.code())),
    }
}

/// Checks a spell's closing round (`store::spells`) against `prev`, the round of the same
/// service stored just before it: that must be the spell's first round (or a closing round
/// the spell ran on from), decided the same way: trigger, outcome, both probes, tally and
/// policy. A first round no longer stored (retention) is not a problem here: the chain check
/// tells deletion from pruning. `None`: consistent, or not a closing round.
pub fn check_spell(prev: Option<&Round>, round: &Round) -> Option<String> {
    let spell = round.round.spell?;
    let at = format!("round {} ({})", round.id, round.round.service);
    if spell.rounds == 0 || spell.first_round >= round.id {
        return Some(format!(
            "{at}: closes a spell of {} round(s) from round {}: expected at least one round after an earlier first round",
            spell.rounds, spell.first_round
        ));
    }
    let prev = prev.filter(|p| p.id >= spell.first_round)?;
    if prev.id != spell.first_round {
        return Some(format!(
            "{at}: closes a spell from round {}, but round {} of the service comes between: a spell's rounds are consecutive",
            spell.first_round, prev.id
        ));
    }
    let (a, b) = (&prev.round, &round.round);
    let same = a.trigger == b.trigger
        && a.outcome == b.outcome
        && a.primary_up == b.primary_up
        && a.backup_up == b.backup_up
        && (a.votes_up, a.votes_down, a.votes_invalid, a.votes_missing)
            == (b.votes_up, b.votes_down, b.votes_invalid, b.votes_missing)
        && a.policy == b.policy
        && !a.changed_dns
        && !b.changed_dns
        && a.at_ms <= b.at_ms;
    (!same).then(|| {
        format!(
            "{at}: closes a spell from round {}, which was decided differently ({} {} with {} down, {} up; this one {} {} with {} down, {} up): a spell is a run of identical rounds",
            prev.id,
            a.trigger,
            a.outcome,
            a.votes_down,
            a.votes_up,
            b.trigger,
            b.outcome,
            b.votes_down,
            b.votes_up
        )
    })
}

/// Checks one round and its votes; see the module doc for what is checked.
pub fn check_round(keys: &KeySet, round: &Round, votes: &[VoteRecord]) -> RoundCheck {
    let mut c = RoundCheck::default();
    let r = &round.round;
    let at = format!("round {} ({})", round.id, r.service);
    let problem = |c: &mut RoundCheck, text: String| c.problems.push(format!("{at}{text}"));

    // The requests: each witness answers its own (mesh-speed detection sends each witness
    // this interval's request at its own phase, a confirmation round a fresh one, or reuses
    // one in flight); each distinct request checked once.
    let mut requests: BTreeMap<&str, bool> = BTreeMap::new();
    for v in votes {
        if requests.contains_key(v.request_envelope.as_str()) {
            continue;
        }
        let ok = match check_request(keys, &v.request_envelope, &r.service, r.at_ms) {
            Ok(()) => true,
            Err(e) => {
                problem(
                    &mut c,
                    format!(", request sent to witness {}: {e}", v.witness),
                );
                false
            }
        };
        c.requests_ok += ok as u64;
        requests.insert(&v.request_envelope, ok);
    }

    // The votes.
    let mut tally = VoteTally::default();
    let mut counted: BTreeMap<String, Verdict> = BTreeMap::new();
    for v in votes {
        c.votes += 1;
        let now = check_vote(keys, v);
        match (&now, v.valid) {
            (VoteStatus::NoAnswer, stored_valid) => {
                c.no_answer += 1;
                tally.missing += 1;
                if stored_valid {
                    problem(
                        &mut c,
                        format!(", witness {}: stored as valid without a vote", v.witness),
                    );
                }
            }
            (
                VoteStatus::Verified {
                    witness,
                    verdict,
                    counts,
                },
                true,
            ) => {
                c.valid_ok += 1;
                let request_ok = requests
                    .get(v.request_envelope.as_str())
                    .copied()
                    .unwrap_or(false);
                if !*counts || !request_ok {
                    c.not_counted += 1;
                    tally.invalid += 1;
                    if !*counts {
                        problem(
                            &mut c,
                            format!(
                                ", witness {}: signed with key {} retired before the request: it verifies but does not count",
                                v.witness, v.witness_key_id
                            ),
                        );
                    }
                } else if counted.insert(witness.clone(), *verdict).is_some() {
                    c.not_counted += 1;
                    tally.invalid += 1;
                    problem(
                        &mut c,
                        format!(
                            ", witness {}: a second vote of witness {witness} in one round (counted once)",
                            v.witness
                        ),
                    );
                } else {
                    match verdict {
                        Verdict::Up => tally.up += 1,
                        Verdict::Down => tally.down += 1,
                    }
                }
            }
            (VoteStatus::Verified { .. }, false) => {
                tally.invalid += 1;
                problem(
                    &mut c,
                    format!(
                        ", witness {}: stored as invalid ({}) but verifies now",
                        v.witness,
                        v.error.as_deref().unwrap_or("")
                    ),
                );
            }
            (VoteStatus::Fails(_), false) => {
                c.invalid_confirmed += 1;
                tally.invalid += 1;
            }
            (VoteStatus::Fails(why), true) => {
                tally.invalid += 1;
                problem(
                    &mut c,
                    format!(
                        ", witness {}: stored as valid but now fails: {why}",
                        v.witness
                    ),
                );
            }
        }
    }

    // The round: tally and outcome under the recorded policy.
    let Some(policy) = &r.policy else {
        return c;
    };
    if !r.trigger.has_votes() {
        if !votes.is_empty() {
            problem(
                &mut c,
                format!(
                    ": a {} round carries {} vote(s); it has none",
                    r.trigger,
                    votes.len()
                ),
            );
        }
        let fits = match r.trigger {
            Trigger::Override => r.outcome == Outcome::Override,
            _ => matches!(r.outcome, Outcome::Failback | Outcome::FailbackRefused),
        };
        if !fits {
            problem(
                &mut c,
                format!(
                    ": outcome {} cannot follow from trigger {}",
                    r.outcome, r.trigger
                ),
            );
        }
        return c;
    }
    if let Err(e) = policy.validate() {
        problem(&mut c, format!(": the recorded policy is invalid ({e})"));
        return c;
    }
    c.outcome_checked = true;
    if (r.votes_up, r.votes_down) != (tally.up, tally.down) {
        problem(
            &mut c,
            format!(
                ": recorded tally {} up, {} down; its votes verify to {} up, {} down",
                r.votes_up, r.votes_down, tally.up, tally.down
            ),
        );
    }
    let obs = Observation {
        primary_up: r.primary_up,
        backup_up: r.backup_up,
        votes: tally,
    };
    let Some(due) = decide_round(policy, r.trigger, &obs) else {
        problem(
            &mut c,
            format!(
                ": a {} round with the primary {} cannot have been held",
                r.trigger,
                if r.primary_up { "up" } else { "down" }
            ),
        );
        return c;
    };
    // A switch that was due may have been held by state the round does not record.
    let held = matches!(
        r.outcome,
        Outcome::StartupHold | Outcome::Blocked | Outcome::Damped
    ) && matches!(due, Outcome::Failover | Outcome::Failback);
    if r.outcome != due && !held {
        let why = match r.outcome {
            Outcome::Failover => format!(
                ": failover backed by too few valid votes: {} valid down, {} valid up; the recorded policy (quorum {}, veto {}) gives {due}",
                tally.down,
                tally.up,
                policy.quorum,
                veto_name(policy)
            ),
            _ => format!(
                ": recorded outcome {} does not follow from its votes ({} valid down, {} valid up, quorum {}, veto {}): they give {due}",
                r.outcome,
                tally.down,
                tally.up,
                policy.quorum,
                veto_name(policy)
            ),
        };
        problem(&mut c, why);
    }
    c
}

fn veto_name(p: &crate::failover::Policy) -> &'static str {
    match p.veto {
        crate::failover::VetoRule::Any => "any",
        crate::failover::VetoRule::Majority => "majority",
    }
}

/// A stored request: signed by a coordinator key of the set that was in service when it was
/// issued, for `service`, issued no later than the round.
fn check_request(keys: &KeySet, raw: &str, service: &str, round_at_ms: u64) -> Result<(), String> {
    let env = Envelope::from_json(raw.as_bytes()).map_err(|e| format!("{}: {e}", e.code()))?;
    // Freshness was a property of the moment: any skew is accepted offline.
    let opened =
        shared::protocol::open_request(&env, |id| keys.coordinator(id).map(|k| k.key), 0, u64::MAX)
            .map_err(|e| format!("{}: {e}", e.code()))?;
    let req = opened.request;
    if let Some(k) = keys.coordinator(&req.coordinator)
        && !k.counts_at(req.issued_at_ms)
    {
        return Err(format!(
            "signed with coordinator key {} after it was retired",
            req.coordinator
        ));
    }
    if req.service != service {
        return Err(format!("the request is for service {:?}", req.service));
    }
    if req.issued_at_ms > round_at_ms {
        return Err(format!(
            "the request was issued at {} ms, after the round ({round_at_ms} ms)",
            req.issued_at_ms
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
