//! The round check as a table: each row builds a round with real signatures, breaks one
//! thing (or nothing), and names the problem the check must report (or none).

#![allow(clippy::unwrap_used)]

use shared::protocol::Verdict::{Down, Up};

use super::*;
use crate::failover::Policy;
use crate::ledger::fixtures::{Keys, policy, round};
use crate::ledger::keys::PublicKey;
use shared::protocol::KeyId;

const T: u64 = 1_795_552_697_114;

struct Case {
    name: &'static str,
    /// Problems expected, each as a fragment; empty = clean.
    want: &'static [&'static str],
    build: fn(&Keys) -> (KeySet, Round, Vec<VoteRecord>),
}

fn plain(
    k: &Keys,
    outcome: Outcome,
    verdicts: &[Option<shared::protocol::Verdict>],
) -> (KeySet, Round, Vec<VoteRecord>) {
    let votes = k.votes("www", T, verdicts);
    let r = round("www", T + 10, outcome, &votes);
    (k.set(), Round { id: 7, round: r }, votes)
}

fn with_policy(
    mut c: (KeySet, Round, Vec<VoteRecord>),
    p: Policy,
) -> (KeySet, Round, Vec<VoteRecord>) {
    c.1.round.policy = Some(p);
    c
}

const CASES: &[Case] = &[
    Case {
        name: "a failover on a quorum of down votes is clean",
        want: &[],
        build: |k| plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]),
    },
    Case {
        name: "a failover on one down vote is named",
        want: &[
            "round 7 (www): failover backed by too few valid votes: 1 valid down, 0 valid up; the recorded policy (quorum 2, veto any) gives insufficient-votes",
        ],
        build: |k| plain(k, Outcome::Failover, &[Some(Down), None, None]),
    },
    Case {
        name: "a disputed round on one up vote is clean",
        want: &[],
        build: |k| plain(k, Outcome::Disputed, &[Some(Down), Some(Down), Some(Up)]),
    },
    Case {
        name: "a failover despite an up vote under veto any is named",
        want: &[
            "failover backed by too few valid votes: 2 valid down, 1 valid up",
            "gives disputed",
        ],
        build: |k| plain(k, Outcome::Failover, &[Some(Down), Some(Down), Some(Up)]),
    },
    Case {
        name: "the same failover under veto majority is clean",
        want: &[],
        build: |k| {
            let p = Policy {
                veto: crate::failover::VetoRule::Majority,
                ..policy()
            };
            with_policy(
                plain(k, Outcome::Failover, &[Some(Down), Some(Down), Some(Up)]),
                p,
            )
        },
    },
    Case {
        name: "a startup-hold where a failover was due is clean",
        want: &[],
        build: |k| {
            plain(
                k,
                Outcome::StartupHold,
                &[Some(Down), Some(Down), Some(Down)],
            )
        },
    },
    Case {
        name: "an insufficient-votes round that had a quorum is named",
        want: &[
            "recorded outcome insufficient-votes does not follow from its votes",
            "they give failover",
        ],
        build: |k| {
            plain(
                k,
                Outcome::InsufficientVotes,
                &[Some(Down), Some(Down), None],
            )
        },
    },
    Case {
        name: "a recorded tally that its votes do not give is named",
        want: &["recorded tally 0 up, 3 down; its votes verify to 0 up, 2 down"],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]);
            c.1.round.votes_down = 3;
            c
        },
    },
    Case {
        name: "a vote with one byte changed fails",
        want: &[
            "witness w2: stored as valid but now fails: ",
            "failover backed by too few valid votes: 1 valid down",
        ],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]);
            let env = c.2[1].vote_envelope.as_mut().unwrap();
            // One byte of the base64 payload: the signature no longer matches.
            let at = env.iter().position(|&b| b == b'"').unwrap() + 15;
            env[at] = if env[at] == b'A' { b'B' } else { b'A' };
            c
        },
    },
    Case {
        name: "a request not signed by a listed coordinator key is named and its votes do not count",
        want: &[
            "request sent to witness w1: unknown_coordinator",
            "failover backed by too few valid votes: 0 valid down",
        ],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]);
            c.0.coordinators[0].key = shared::keys::generate().verifying_key();
            c.0.coordinators[0].key_id = KeyId::of(&c.0.coordinators[0].key);
            c
        },
    },
    Case {
        name: "a vote by an unlisted witness key is named",
        want: &["witness w1: stored as valid but now fails: unknown-witness"],
        build: |k| {
            let mut c = plain(k, Outcome::Disputed, &[Some(Down), Some(Up), None]);
            c.0.witnesses.remove(0);
            c
        },
    },
    Case {
        name: "a vote moved to another service's round is named",
        want: &["request sent to witness w1: the request is for service \"www\""],
        build: |k| {
            let mut c = plain(k, Outcome::CoordinatorIsolated, &[Some(Up), None, None]);
            c.1.round.service = "api".into();
            c.1.round.votes_up = 0;
            c
        },
    },
    Case {
        name: "a vote signed with a key retired before the request verifies but does not count",
        want: &[
            "witness w1: signed with key",
            "retired before the request",
            "failover backed by too few valid votes: 1 valid down",
        ],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]);
            c.0.witnesses[0].retired_at_ms = Some(T - 1);
            c
        },
    },
    Case {
        name: "a vote signed before its key was retired still counts",
        want: &[],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]);
            c.0.witnesses[0].retired_at_ms = Some(T + 1);
            c
        },
    },
    Case {
        name: "two keys of one witness count once",
        want: &[
            "witness w2: a second vote of witness w1 in one round (counted once)",
            "failover backed by too few valid votes: 1 valid down",
        ],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), Some(Down), None]);
            c.0.witnesses[1].name = "w1".into();
            c
        },
    },
    Case {
        name: "a round written before policies were recorded has its votes checked, not its outcome",
        want: &[],
        build: |k| {
            let mut c = plain(k, Outcome::Failover, &[Some(Down), None, None]);
            c.1.round.policy = None;
            c
        },
    },
    Case {
        name: "an override round with votes is named",
        want: &["a override round carries 3 vote(s)"],
        build: |k| {
            let mut c = plain(k, Outcome::Override, &[Some(Down), None, None]);
            c.1.round.trigger = Trigger::Override;
            c
        },
    },
];

#[test]
fn round_check_table() {
    let keys = Keys::new();
    let mut failures = String::new();
    for case in CASES {
        let (set, round, votes) = (case.build)(&keys);
        let got = check_round(&set, &round, &votes);
        let all = got.problems.join("\n");
        let ok = if case.want.is_empty() {
            got.problems.is_empty()
        } else {
            case.want.iter().all(|w| all.contains(w))
        };
        if !ok {
            failures.push_str(&format!(
                "{}:\n  want {:?}\n  got  {all:?}\n",
                case.name, case.want
            ));
        }
    }
    assert!(failures.is_empty(), "{failures}");
}

#[test]
fn policy_less_rounds_are_not_outcome_checked_and_others_are() {
    let keys = Keys::new();
    let (set, mut r, votes) = plain(&keys, Outcome::Failover, &[Some(Down), Some(Down), None]);
    assert!(check_round(&set, &r, &votes).outcome_checked);
    r.round.policy = None;
    let c = check_round(&set, &r, &votes);
    assert!(!c.outcome_checked);
    assert_eq!(
        (c.votes, c.valid_ok, c.no_answer, c.requests_ok),
        (3, 2, 1, 1)
    );
    let _ = PublicKey::counts_at;
}
