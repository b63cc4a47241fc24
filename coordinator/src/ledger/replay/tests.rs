//! The replay as a table: recorded rounds in, per-round verdicts out.

use super::*;
use crate::failover::VetoRule;
use crate::ledger::fixtures::policy;

/// A vote round: `(down, up, missing)` votes, the streak, the recorded outcome.
fn round(
    id: i64,
    trigger: Trigger,
    votes: (u32, u32, u32),
    streak: u32,
    outcome: Outcome,
) -> Recorded {
    Recorded {
        id,
        service: "www".into(),
        at_ms: 1_000_000 + id as u64 * 1000,
        trigger,
        outcome,
        obs: Observation {
            primary_up: trigger == Trigger::PrimaryUp,
            backup_up: true,
            votes: VoteTally {
                down: votes.0,
                up: votes.1,
                invalid: 0,
                missing: votes.2,
            },
        },
        streak: Some(streak),
        policy: Some(policy()),
        stands_for: 1,
    }
}

use Outcome as O;
use Trigger::{PrimaryDown as Down, PrimaryUp as Up};

/// An outage: two rounds of one missing vote (insufficient, then failover on 2 of 3), the
/// hold-down's failback, then a second outage that fails over on 3 of 3.
fn history() -> Vec<Recorded> {
    vec![
        round(1, Down, (1, 0, 2), 2, O::InsufficientVotes),
        round(2, Down, (2, 0, 1), 3, O::Failover),
        round(3, Up, (0, 2, 1), 3, O::Failback),
        round(4, Down, (3, 0, 0), 2, O::Failover),
        round(5, Up, (0, 3, 0), 3, O::Failback),
    ]
}

fn verdicts(p: &Policy, rounds: &[Recorded]) -> Vec<(i64, Replayed)> {
    replay_service("www", p, rounds)
        .lines
        .into_iter()
        .map(|l| (l.round.id, l.replayed))
        .collect()
}

fn different(o: Option<Outcome>) -> Replayed {
    Replayed::Different { proposed: o }
}

#[test]
fn the_recorded_policy_decides_every_round_as_recorded() {
    let r = replay_service("www", &policy(), &history());
    assert_eq!(r.differences(), 0);
    assert_eq!(r.not_comparable(), 0);
    assert_eq!(r.lines.len(), 5);
    assert!(r.notes.is_empty());
}

#[test]
fn quorum_three_of_three_names_the_failover_that_would_not_have_happened() {
    let p = Policy {
        quorum: 3,
        ..policy()
    };
    assert_eq!(
        verdicts(&p, &history()),
        [
            (1, Replayed::Same),
            (2, different(Some(O::InsufficientVotes))),
            // Still primary-active under the proposal: the hold-down round was recorded on
            // the backup side, where nothing the proposal would have seen was recorded.
            (
                3,
                Replayed::NotComparable {
                    recorded: Side::Backup
                }
            ),
            (4, Replayed::Same),
            (5, Replayed::Same),
        ]
    );
}

#[test]
fn veto_majority_fails_over_where_one_up_vote_disputed() {
    let rounds = vec![
        round(1, Down, (2, 1, 0), 2, O::Disputed),
        round(2, Down, (2, 1, 0), 3, O::Disputed),
        round(3, Down, (3, 0, 0), 4, O::Failover),
    ];
    let p = Policy {
        veto: VetoRule::Majority,
        ..policy()
    };
    assert_eq!(
        verdicts(&p, &rounds),
        [
            (1, different(Some(O::Failover))),
            // Backup-active under the proposal from round 1 on.
            (
                2,
                Replayed::NotComparable {
                    recorded: Side::Primary
                }
            ),
            (
                3,
                Replayed::NotComparable {
                    recorded: Side::Primary
                }
            ),
        ]
    );
}

#[test]
fn a_higher_fail_after_holds_no_round_until_the_streak_reaches_it() {
    let p = Policy {
        fail_after: 3,
        ..policy()
    };
    assert_eq!(
        verdicts(&p, &history()),
        [
            (1, different(None)),
            (2, Replayed::Same),
            (3, Replayed::Same),
            (4, different(None)),
            (
                5,
                Replayed::NotComparable {
                    recorded: Side::Backup
                }
            ),
        ]
    );
}

#[test]
fn a_longer_hold_down_delays_the_failback() {
    let p = Policy {
        recover_after: 4,
        ..policy()
    };
    let v = verdicts(&p, &history());
    assert_eq!(v[2], (3, different(None)));
    assert_eq!(
        v[3],
        (
            4,
            Replayed::NotComparable {
                recorded: Side::Primary
            }
        )
    );
}

#[test]
fn flap_damping_counts_the_replays_own_switches() {
    let p = Policy {
        max_flips: 2,
        ..policy()
    };
    assert_eq!(
        verdicts(&p, &history()),
        [
            (1, Replayed::Same),
            (2, Replayed::Same),
            (3, Replayed::Same),
            (4, different(Some(O::Damped))),
            (
                5,
                Replayed::NotComparable {
                    recorded: Side::Backup
                }
            ),
        ]
    );
    // Outside the window the earlier switches no longer count.
    let p = Policy {
        max_flips: 2,
        flap_window_ms: 1500,
        ..policy()
    };
    assert!(
        verdicts(&p, &history())
            .iter()
            .all(|(_, v)| *v == Replayed::Same)
    );
}

#[test]
fn a_recorded_startup_hold_or_block_stands() {
    let rounds = vec![
        round(1, Down, (3, 0, 0), 2, O::StartupHold),
        round(2, Down, (3, 0, 0), 3, O::Blocked),
    ];
    assert!(
        verdicts(&policy(), &rounds)
            .iter()
            .all(|(_, v)| *v == Replayed::Same)
    );
}

#[test]
fn an_operator_round_resyncs_the_replay_with_the_record() {
    let p = Policy {
        quorum: 3,
        ..policy()
    };
    let mut op = round(3, Down, (0, 0, 0), 0, O::Override);
    op.trigger = Trigger::Override;
    op.streak = None;
    let rounds = vec![
        round(2, Down, (2, 0, 1), 3, O::Failover),
        op,
        round(4, Up, (0, 3, 0), 3, O::Failback),
    ];
    assert_eq!(
        verdicts(&p, &rounds),
        [
            (2, different(Some(O::InsufficientVotes))),
            (3, Replayed::Operator),
            (4, Replayed::Same),
        ]
    );
}

#[test]
fn a_lower_threshold_than_recorded_is_noted_not_guessed() {
    let p = Policy {
        fail_after: 1,
        recover_after: 2,
        ..policy()
    };
    let r = replay_service("www", &p, &history());
    assert_eq!(r.differences(), 0);
    assert_eq!(r.notes.len(), 2);
    assert!(
        r.notes[0].starts_with("fail_after 1 is below the recorded 2"),
        "{:?}",
        r.notes
    );
    assert!(
        r.notes[1].starts_with("recover_after 2 is below the recorded 3"),
        "{:?}",
        r.notes
    );
}

#[test]
fn the_streak_is_read_from_the_reason_step_writes() {
    assert_eq!(
        streak_of("primary down for 4 consecutive probes; votes: 3 down"),
        Some(4)
    );
    assert_eq!(
        streak_of("primary up for 12 consecutive probes (hold-down 10); votes: 0 down"),
        Some(12)
    );
    assert_eq!(streak_of("operator set override pin-backup"), None);
    assert_eq!(streak_of("primary down for many consecutive probes"), None);
    assert_eq!(streak_of("primary down for 4 probes"), None);
}

#[test]
fn services_without_a_proposed_policy_are_named() {
    let mut other = round(9, Down, (3, 0, 0), 2, O::Failover);
    other.service = "mail".into();
    let mut rounds = history();
    rounds.push(other);
    let proposed = BTreeMap::from([("www".to_string(), policy())]);
    let (done, unknown) = replay(&proposed, &rounds);
    assert_eq!(done.len(), 1);
    assert_eq!(unknown, ["mail"]);
}

#[test]
fn a_spells_closing_round_counts_for_the_rounds_it_stands_for() {
    // A spell of 40 disputed rounds: its first round and its closing round standing for 39.
    let mut closing = round(2, Down, (2, 1, 0), 40, O::Disputed);
    closing.stands_for = 39;
    let rounds = [round(1, Down, (2, 1, 0), 3, O::Disputed), closing];
    let r = replay_service("www", &policy(), &rounds);
    assert_eq!(
        (r.rounds(), r.differences(), r.not_comparable()),
        (40, 0, 0)
    );
}
