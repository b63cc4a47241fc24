//! The confirmation rounds' rules as tables, and the trigger bounds as a property.

use proptest::prelude::*;

use super::*;
use crate::failover::{FailbackMode, Outcome, VetoRule, VoteTally};

fn policy(veto: VetoRule) -> Policy {
    Policy {
        fail_after: 1,
        recover_after: 3,
        quorum: 2,
        witnesses: 3,
        veto,
        failback: FailbackMode::Auto,
        failback_needs_quorum: false,
        max_flips: 4,
        flap_window_ms: 600_000,
    }
}

fn obs(primary_up: bool, backup_up: bool, up: u32, down: u32, invalid: u32) -> Observation {
    Observation {
        primary_up,
        backup_up,
        votes: VoteTally {
            up,
            down,
            invalid,
            missing: 3 - up - down - invalid,
        },
    }
}

#[test]
fn offsets_spread_the_vantage_points_evenly() {
    assert_eq!(vantage_offsets(3, 1_000), vec![0, 250, 500, 750]);
    assert_eq!(vantage_offsets(2, 1_000), vec![0, 333, 666]);
    assert_eq!(vantage_offsets(0, 1_000), vec![0]);
}

/// A row of [`settled_table`].
type Row = (
    &'static str,
    VetoRule,
    Observation,
    u32,
    bool,
    bool,
    Option<Outcome>,
);

/// When a confirmation round is over: (case, veto, observation so far, live outstanding,
/// decisive, settled?, the outcome it settles on).
#[test]
fn settled_table() {
    use Outcome::*;
    let any = VetoRule::Any;
    let maj = VetoRule::Majority;
    let rows: &[Row] = &[
        (
            "our own probe sees the primary up: nothing to decide (a lone witness's down)",
            any,
            obs(true, true, 0, 1, 0),
            2,
            true,
            true,
            None,
        ),
        (
            "not the round that reaches fail_after: the votes decide nothing",
            any,
            obs(false, true, 0, 0, 0),
            3,
            false,
            true,
            Some(CoordinatorIsolated),
        ),
        (
            "isolated coordinator: every witness known silent",
            any,
            obs(false, true, 0, 0, 0),
            0,
            true,
            true,
            Some(CoordinatorIsolated),
        ),
        (
            "isolated so far, but a witness may still answer",
            any,
            obs(false, true, 0, 0, 0),
            1,
            true,
            false,
            None,
        ),
        (
            "a veto (any): disputed whatever the others say",
            any,
            obs(false, true, 1, 0, 0),
            2,
            true,
            true,
            Some(Disputed),
        ),
        (
            "one up vote under the majority rule is not a veto yet",
            maj,
            obs(false, true, 1, 0, 0),
            2,
            true,
            false,
            None,
        ),
        (
            "majority rule, 2 up of 3: disputed whatever the third says",
            maj,
            obs(false, true, 2, 0, 0),
            1,
            true,
            true,
            Some(Disputed),
        ),
        (
            "quorum of down, one slow witness outstanding: it could veto, wait",
            any,
            obs(false, true, 0, 2, 0),
            1,
            true,
            false,
            None,
        ),
        (
            "quorum of down, the outstanding witness known silent: failover now",
            any,
            obs(false, true, 0, 2, 0),
            0,
            true,
            true,
            Some(Failover),
        ),
        (
            "quorum of down under the majority rule: one more up cannot veto 2 down",
            maj,
            obs(false, true, 0, 2, 0),
            1,
            true,
            true,
            Some(Failover),
        ),
        (
            "quorum of down but the backup down too: both-down whatever comes",
            maj,
            obs(false, false, 0, 2, 0),
            1,
            true,
            true,
            Some(BothDown),
        ),
        (
            "all answered: settled",
            any,
            obs(false, true, 0, 1, 2),
            0,
            true,
            true,
            Some(InsufficientVotes),
        ),
        (
            "one down, two silent: insufficient votes now",
            any,
            obs(false, true, 0, 1, 0),
            0,
            true,
            true,
            Some(InsufficientVotes),
        ),
    ];
    for (case, veto, o, live, decisive, want, outcome) in rows {
        let p = policy(*veto);
        assert_eq!(settled(&p, o, *live, *decisive), *want, "{case}");
        if *want && *decisive && !o.primary_up {
            assert_eq!(
                decide_round(&p, Trigger::PrimaryDown, o),
                *outcome,
                "{case}"
            );
        }
    }
}

#[test]
fn a_witness_alone_down_starts_one_round_until_it_sees_the_primary_up() {
    let mut t = Triggers::new(3, 1_000);
    // w1 (vantage 2) answers down every interval; the others up.
    let mut started = 0;
    for i in 0..20u64 {
        let base = i * 1_000;
        assert!(!t.observe(0, true, base, Armed::Yes));
        started += t.observe(2, false, base + 250, Armed::Yes) as u32;
        assert!(!t.observe(1, true, base + 500, Armed::Yes));
        assert!(!t.observe(3, true, base + 750, Armed::Yes));
    }
    assert_eq!(started, 1);
    // It sees the primary up once, then down again: one more.
    assert!(!t.observe(2, true, 20_250, Armed::Yes));
    assert!(t.observe(2, false, 21_250, Armed::Yes));
}

#[test]
fn a_flapping_witness_starts_at_most_one_round_per_interval() {
    let mut t = Triggers::new(3, 1_000);
    let mut starts = Vec::new();
    // Down, up, down, … every 250 ms (faster than its own phase would allow, on purpose).
    for i in 0..40u64 {
        let now = i * 250;
        if t.observe(1, i % 2 == 1, now, Armed::Yes) {
            starts.push(now);
        }
    }
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] >= 1_000),
        "{starts:?}"
    );
    assert_eq!(starts.len(), 10);
}

#[test]
fn the_coordinators_own_down_always_starts_and_busy_downs_are_remembered() {
    let mut t = Triggers::new(3, 1_000);
    assert!(t.observe(1, false, 0, Armed::Yes));
    // Its own probe is not bound by the witnesses' one-per-interval.
    assert!(t.observe(0, false, 100, Armed::Yes));
    assert!(!t.observe(0, true, 1_000, Armed::Yes));
    // A down while a round is in flight starts nothing now, but may when it ends.
    assert!(!t.observe(2, false, 1_300, Armed::Busy));
    assert!(t.take_missed(1_400, Armed::Yes));
    assert!(!t.take_missed(1_500, Armed::Yes), "taken once");
    // Backup-active (or pinned): never.
    assert!(!t.observe(3, false, 5_000, Armed::No));
    assert!(!t.take_missed(5_000, Armed::Yes));
}

#[test]
fn a_probe_is_overdue_after_twice_its_slowest_recent_answer() {
    assert_eq!(overdue_after(&[], 1_000), None, "nothing to judge by");
    assert_eq!(overdue_after(&[5, 6], 1_000), None, "too few answers");
    assert_eq!(
        overdue_after(&[5, 6, 4], 1_000),
        Some(100),
        "at least 100 ms"
    );
    assert_eq!(overdue_after(&[5, 300, 4], 1_000), Some(600));
    assert_eq!(
        overdue_after(&[5, 600, 4], 1_000),
        None,
        "not before its timeout"
    );
}

#[test]
fn an_overdue_probe_starts_a_round_once_within_the_bound() {
    let mut t = Triggers::new(3, 1_000);
    assert!(t.overdue(0, 100, Armed::Yes), "our own probe overdue");
    // Its "down" then adds nothing; a witness overdue within the same interval neither.
    assert!(!t.observe(0, false, 1_000, Armed::Yes));
    assert!(!t.overdue(2, 600, Armed::Yes));
    // A witness's real "down" is not held back by the suspicion's round.
    assert!(t.observe(3, false, 700, Armed::Yes));
    // Up again, then overdue again one interval later: one more.
    assert!(!t.observe(0, true, 2_000, Armed::Yes));
    assert!(t.overdue(0, 2_100, Armed::Yes));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the vantage points say and whenever: no round starts on a vantage point's
    /// second "down" in a row, none while busy; witnesses' downs start at most one per
    /// interval, overdue probes at most one more.
    #[test]
    fn triggers_stay_bounded(
        events in proptest::collection::vec((0usize..4, any::<bool>(), 0u64..600, 0u8..3, any::<bool>(), any::<bool>()), 0..300),
    ) {
        let mut t = Triggers::new(3, 1_000);
        let mut last = [None; 4];
        let mut now = 0;
        let mut witness_starts = Vec::new();
        let mut overdue_starts: Vec<u64> = Vec::new();
        for (v, up, dt, armed, end_round, overdue) in events {
            now += dt;
            let armed = [Armed::Yes, Armed::Busy, Armed::No][armed as usize];
            let started = t.observe(v, up, now, armed);
            if started {
                prop_assert!(!up && last[v] != Some(false) && armed == Armed::Yes);
                if v > 0 {
                    witness_starts.push(now);
                }
            }
            last[v] = Some(up);
            if overdue {
                let started = t.overdue(v, now, armed);
                if started {
                    prop_assert!(last[v] != Some(false) && armed == Armed::Yes);
                    overdue_starts.push(now);
                }
                last[v] = Some(false);
            }
            if end_round && t.take_missed(now, Armed::Yes) {
                witness_starts.push(now);
            }
        }
        prop_assert!(witness_starts.windows(2).all(|w| w[1] - w[0] >= 1_000), "{:?}", witness_starts);
        prop_assert!(overdue_starts.windows(2).all(|w| w[1] - w[0] >= 1_000), "{:?}", overdue_starts);
    }

    /// `settled` never ends a round whose outcome a live witness could still change.
    #[test]
    fn settled_means_no_answer_can_change_the_outcome(
        majority in any::<bool>(),
        backup_up in any::<bool>(),
        up in 0u32..=3,
        down in 0u32..=3,
        live in 0u32..=3,
    ) {
        prop_assume!(up + down <= 3);
        let p = policy(if majority { VetoRule::Majority } else { VetoRule::Any });
        let o = obs(false, backup_up, up, down, 0);
        let live = live.min(o.votes.missing);
        if settled(&p, &o, live, true) {
            let now = decide_round(&p, Trigger::PrimaryDown, &o);
            for extra_up in 0..=live {
                let mut x = o;
                x.votes.up += extra_up;
                x.votes.missing -= extra_up;
                prop_assert_eq!(decide_round(&p, Trigger::PrimaryDown, &x), now);
                let mut y = o;
                y.votes.down += extra_up;
                y.votes.missing -= extra_up;
                prop_assert_eq!(decide_round(&p, Trigger::PrimaryDown, &y), now);
            }
        }
    }
}

#[test]
fn overdue_budget_bounds_starts_per_second() {
    // (per_second, times in ms, expected answers)
    let cases: &[(u32, &[u64], &[bool])] = &[
        (2, &[0, 10, 20], &[true, true, false]),
        // A new window one second after the first start of the last one.
        (
            2,
            &[0, 10, 20, 999, 1000, 1001, 1002],
            &[true, true, false, false, true, true, false],
        ),
        // A quiet stretch: the next start opens a window of its own.
        (1, &[0, 5000, 5500, 6000], &[true, true, false, true]),
        // A clock that goes back (it cannot: times are monotonic) opens no extra window.
        (1, &[1000, 500], &[true, false]),
        (0, &[0, 2000], &[false, false]),
    ];
    for (per_second, times, want) in cases {
        let mut b = OverdueBudget::new(*per_second);
        let got: Vec<bool> = times.iter().map(|t| b.take(*t)).collect();
        assert_eq!(&got, want, "per_second {per_second}, times {times:?}");
    }
}

#[test]
fn overdue_budget_is_sized_by_the_steady_probe_rate() {
    for (probes_per_second, want) in [
        (0, OverdueBudget::MIN_PER_SECOND),
        (4, OverdueBudget::MIN_PER_SECOND),
        (640, 8),
        (641, 9),
        // 1,000 services, 3 witnesses, 1 s: 4,000 probes a second, 50 starts.
        (4000, 50),
        (u64::MAX, u32::MAX),
    ] {
        assert_eq!(
            OverdueBudget::for_services(probes_per_second).per_second(),
            want,
            "{probes_per_second} probes/s"
        );
    }
}

proptest! {
    /// However suspicions arrive, any one second holds at most two windows' worth of starts
    /// (the windows are fixed, so a second may straddle two of them).
    #[test]
    fn overdue_budget_never_exceeds_twice_the_rate_in_any_second(
        per_second in 0u32..6,
        gaps in proptest::collection::vec(0u64..400, 1..200),
    ) {
        let mut b = OverdueBudget::new(per_second);
        let mut now = 0;
        let mut started = Vec::new();
        for g in gaps {
            now += g;
            if b.take(now) {
                started.push(now);
            }
        }
        for (i, t) in started.iter().enumerate() {
            let within = started[i..].iter().take_while(|s| **s < t + 1000).count();
            prop_assert!(within as u32 <= 2 * per_second, "{within} starts in the second from {t}");
        }
    }
}
