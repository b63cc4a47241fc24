//! Each invariant against a clean record (no violation) and against records doctored to
//! break it: the checker must name what broke.

use std::net::IpAddr;

use super::*;
use crate::faultrun::record::{
    Answer, ChangeRec, EventRec, Fault, FaultKind, Life, RoundRec, Settings, Snapshot, Verified,
    VoteRec,
};

fn ip(s: &str) -> Vec<IpAddr> {
    vec![s.parse().expect("test address")]
}

const PRIMARY: &str = "10.231.9.10";
const BACKUP: &str = "10.231.9.20";

fn votes(verdict: &str, n: usize) -> Option<Vec<VoteRec>> {
    Some(
        (1..=3)
            .map(|i| VoteRec {
                witness: format!("w{i}"),
                valid: i <= n,
                verdict: (i <= n).then(|| verdict.to_string()),
                reverified: if i <= n {
                    "ok".into()
                } else {
                    "no-answer".into()
                },
            })
            .collect(),
    )
}

fn round(id: i64, at_ms: Ms, trigger: &str, outcome: &str) -> RoundRec {
    RoundRec {
        id,
        at_ms,
        trigger: trigger.into(),
        outcome: outcome.into(),
        changed_dns: false,
        quorum: Some(2),
        failback_needs_quorum: Some(true),
        spell: None,
        votes: None,
    }
}

fn change(id: i64, round_id: i64, at: Ms, from: &str, to: &str) -> ChangeRec {
    ChangeRec {
        id,
        round_id: Some(round_id),
        to_side: if to == BACKUP { "backup" } else { "primary" }.into(),
        status: "applied".into(),
        created_ms: at,
        from: ip(from),
        to: ip(to),
    }
}

fn event(id: i64, at_ms: Ms, kind: &str) -> EventRec {
    EventRec {
        id,
        at_ms,
        kind: kind.into(),
        message: format!("{kind} {id}"),
    }
}

/// A run as it should go: the primary's web server down 10–30 s (failover at 12 s, failback
/// at 36 s after the hold-down), the coordinator SIGKILLed at 20 s and back at 23 s, a pure
/// backup-side cut 40–50 s (disputed, no switch); the client polls every 500 ms up to 60 s.
fn clean() -> Record {
    let mut failover = round(1, 12_000, "primary-down", "failover");
    failover.changed_dns = true;
    failover.votes = votes("down", 3);
    let mut failback = round(2, 36_000, "primary-up", "failback");
    failback.changed_dns = true;
    failback.votes = votes("up", 3);
    let disputed = round(3, 41_000, "primary-down", "disputed");
    let mut closing = round(4, 49_000, "primary-down", "disputed");
    closing.spell = Some((3, 8));
    let events: Vec<EventRec> = [
        (12_000, "transition"),
        (12_100, "dns-applied"),
        (36_000, "transition"),
        (36_100, "dns-applied"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (t, k))| event(i as i64 + 1, *t, k))
    .collect();
    let answers = (0..=120u64)
        .map(|i| {
            let t = i * 500;
            let a = if (12_500..36_500).contains(&t) {
                BACKUP
            } else {
                PRIMARY
            };
            Answer {
                at_ms: t,
                result: Ok(ip(a)),
            }
        })
        .collect();
    let first = Snapshot {
        at_ms: 20_000,
        rounds: vec![failover.clone()],
        changes: vec![change(1, 1, 12_000, PRIMARY, BACKUP)],
        events: events[..2].to_vec(),
    };
    Record {
        settings: Settings {
            interval_ms: 1_000,
            hold_down: 5,
            witnesses: 3,
            primary: ip(PRIMARY),
            backup: ip(BACKUP),
            initial: ip(PRIMARY),
            slack_ms: 200,
            restart_bound_ms: 5_000,
        },
        faults: vec![
            Fault {
                kind: FaultKind::PrimaryWebDown,
                start_ms: 10_000,
                end_ms: Some(30_000),
            },
            Fault {
                kind: FaultKind::CoordinatorKilled,
                start_ms: 20_000,
                end_ms: Some(23_000),
            },
            Fault {
                kind: FaultKind::BackupPrimaryCut,
                start_ms: 40_000,
                end_ms: Some(50_000),
            },
        ],
        answers,
        life: vec![
            Life::Started(0),
            Life::ApiUp(500),
            Life::Killed(20_000),
            Life::Started(22_000),
            Life::ApiUp(23_000),
        ],
        before_kills: vec![first],
        last: Snapshot {
            at_ms: 60_000,
            rounds: vec![failover, failback, disputed, closing],
            changes: vec![
                change(1, 1, 12_000, PRIMARY, BACKUP),
                change(2, 2, 36_000, BACKUP, PRIMARY),
            ],
            events,
        },
        verified: Verified {
            exit_code: Some(0),
            report: "ok".into(),
        },
        serials: Some((1, 3)),
    }
}

/// The violations of one invariant's checker, asserting each is tagged with it.
fn only(found: Vec<Violation>, inv: Invariant) -> Vec<String> {
    assert!(found.iter().all(|x| x.invariant == inv), "{found:#?}");
    found.iter().map(ToString::to_string).collect()
}

fn assert_one(found: Vec<Violation>, inv: Invariant, needle: &str) {
    let found = only(found, inv);
    assert!(
        found.len() == 1 && found[0].contains(needle),
        "expected one violation of {inv:?} containing {needle:?}, got {found:#?}"
    );
}

#[test]
fn a_clean_run_breaks_nothing() {
    assert_eq!(check(&clean()), vec![]);
}

#[test]
fn inv1_failover_during_a_pure_backup_side_cut_is_caught() {
    let mut r = clean();
    let mut bad = round(5, 45_000, "primary-down", "failover");
    bad.votes = votes("down", 2);
    r.last.rounds.push(bad);
    assert_one(
        no_failover_while_reachable(&r),
        Invariant::NoFailoverWhileReachable,
        "round 5 failed over while 3 of 3 witnesses could reach the primary (w1, w2, w3)",
    );
}

#[test]
fn inv1_a_minority_that_could_reach_is_no_violation_but_a_majority_is() {
    // Primary healthy, w1 and w2's links down: only w3 could reach, a failover is allowed.
    let mut r = clean();
    r.faults = vec![
        Fault {
            kind: FaultKind::WitnessLinkDown(1),
            start_ms: 0,
            end_ms: Some(60_000),
        },
        Fault {
            kind: FaultKind::WitnessLinkDown(2),
            start_ms: 11_500,
            end_ms: Some(60_000),
        },
    ];
    r.last.rounds[0].at_ms = 13_000;
    assert_eq!(no_failover_while_reachable(&r), vec![]);
    // w2's link went down only after the interval before the round: w2 and w3 could reach.
    r.faults[1].start_ms = 13_500;
    assert_one(
        no_failover_while_reachable(&r),
        Invariant::NoFailoverWhileReachable,
        "round 1 failed over while 2 of 3 witnesses could reach the primary (w2, w3)",
    );
}

#[test]
fn inv2_an_answer_change_before_any_recorded_change_is_caught() {
    let mut r = clean();
    r.answers[4].result = Ok(ip(BACKUP)); // at 2 s, then back to the primary
    let found = only(
        answer_changes_justified(&r),
        Invariant::AnswerChangesJustified,
    );
    assert!(
        found[0].contains("at 2000")
            && found[0].contains("no applied DNS change from the one to the other"),
        "{found:#?}"
    );
}

#[test]
fn inv2_a_switch_whose_votes_do_not_reverify_or_reach_quorum_is_caught() {
    let mut r = clean();
    r.last.rounds[0].votes.as_mut().expect("votes")[1].reverified =
        "bad_signature: signature does not verify".into();
    assert_one(
        answer_changes_justified(&r),
        Invariant::AnswerChangesJustified,
        "by DNS change 1, but round 1: w2's vote was counted but re-verifies as \"bad_signature",
    );
    let mut r = clean();
    r.last.rounds[0].votes = votes("down", 1);
    assert_one(
        answer_changes_justified(&r),
        Invariant::AnswerChangesJustified,
        "round 1 failed over with 1 re-verified down votes, quorum Some(2)",
    );
    let mut r = clean();
    r.last.rounds[1].votes = votes("up", 1);
    assert_one(
        answer_changes_justified(&r),
        Invariant::AnswerChangesJustified,
        "round 2 failed back with 1 re-verified up votes",
    );
}

#[test]
fn inv2_an_unapplied_change_or_a_failing_verifier_is_caught() {
    let mut r = clean();
    r.last.changes[1].status = "superseded".into();
    assert_one(
        answer_changes_justified(&r),
        Invariant::AnswerChangesJustified,
        "changed from [10.231.9.20] to [10.231.9.10] with no applied DNS change",
    );
    let mut r = clean();
    r.verified = Verified {
        exit_code: Some(1),
        report: "round 1: w2: bad_signature".into(),
    };
    assert_one(
        answer_changes_justified(&r),
        Invariant::AnswerChangesJustified,
        "verify-history exited with Some(1): round 1: w2: bad_signature",
    );
}

#[test]
fn inv3_a_gap_in_ids_is_caught() {
    let mut r = clean();
    r.last.rounds.remove(1);
    let found = only(nothing_lost(&r), Invariant::NothingLost);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("round ids jump from 1 to 3"),
        "{found:#?}"
    );
    let mut r = clean();
    r.last.events.remove(2);
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "event ids jump from 2 to 4",
    );
}

#[test]
fn inv3_a_row_lost_or_changed_across_a_sigkill_is_caught() {
    let mut r = clean();
    r.before_kills[0].events.push(event(3, 19_000, "alert"));
    // The final history has an event 3 too, but a different one.
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "event 3 changed across a SIGKILL",
    );
    let mut r = clean();
    r.before_kills[0]
        .changes
        .push(change(3, 2, 19_000, BACKUP, PRIMARY));
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "DNS change 3 was read before a SIGKILL and is gone after it",
    );
    let mut r = clean();
    r.last.rounds[0].outcome = "disputed".into();
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "round 1 changed across a SIGKILL: primary-down failover at 12000 became primary-down disputed",
    );
}

#[test]
fn inv3_a_broken_chain_of_applied_changes_or_a_stray_spell_is_caught() {
    let mut r = clean();
    r.last.changes[1].from = ip(PRIMARY);
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "applied DNS change 2 starts from [10.231.9.10], but the change applied before it ends at [10.231.9.20]",
    );
    let mut r = clean();
    r.last.rounds[3].spell = Some((7, 2));
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "round 4 closes a spell from round 7",
    );
}

#[test]
fn inv4_a_coordinator_stuck_on_the_backup_is_caught() {
    let mut r = clean();
    // Nothing fails back: the client sees the backup until the end.
    for a in r.answers.iter_mut().filter(|a| a.at_ms >= 12_500) {
        a.result = Ok(ip(BACKUP));
    }
    assert_one(
        liveness(&r),
        Invariant::Liveness,
        "never settled on the primary",
    );
}

#[test]
fn inv4_a_late_failback_or_an_unrepaired_fault_is_caught() {
    let mut r = clean();
    // The last repair at 50 s; the primary only from 58 s: 8 s > (5 + 2) × 1 s + slack.
    for a in r
        .answers
        .iter_mut()
        .filter(|a| (50_000..58_000).contains(&a.at_ms))
    {
        a.result = Ok(ip(BACKUP));
    }
    assert_one(
        liveness(&r),
        Invariant::Liveness,
        "DNS came back on the primary 8000 ms after the last repair; the bound is hold-down + 2 intervals = 7000 ms",
    );
    let mut r = clean();
    r.faults[2].end_ms = None;
    assert_one(
        liveness(&r),
        Invariant::Liveness,
        "fault backup-primary-cut was never repaired",
    );
}

#[test]
fn inv5_a_coordinator_left_down_or_slow_to_come_back_is_caught() {
    let mut r = clean();
    r.life.truncate(3);
    assert_one(
        coordinator_accountable(&r),
        Invariant::CoordinatorAccountable,
        "SIGKILLed and never started again",
    );
    let mut r = clean();
    r.life[4] = Life::ApiUp(28_000);
    assert_one(
        coordinator_accountable(&r),
        Invariant::CoordinatorAccountable,
        "did not answer its API within 5000 ms",
    );
}

#[test]
fn inv5_an_answer_no_recorded_change_wrote_is_caught() {
    let mut r = clean();
    r.answers[100].result = Ok(ip("10.231.9.99"));
    let found = only(
        coordinator_accountable(&r),
        Invariant::CoordinatorAccountable,
    );
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("at 50000")
            && found[0].contains("[10.231.9.99], which no recorded DNS change wrote"),
        "{found:#?}"
    );
}

#[test]
fn inv5_an_update_the_history_does_not_count_is_caught() {
    let mut r = clean();
    r.serials = Some((1, 4));
    assert_one(
        coordinator_accountable(&r),
        Invariant::CoordinatorAccountable,
        "SOA serial went from 1 to 4, but the history records 2 applied changes, 2 of which changed what was served",
    );
}

/// Seed 12870872499637913857's run: a failback recorded while BIND was stopped, superseded by
/// a failover before it ever applied; the failover then starts from the failback's target and
/// finds its own target already served (RFC 2136's prerequisite fails, nothing is written).
fn superseded_in_between() -> Record {
    let mut r = clean();
    let mut back = change(2, 2, 30_000, BACKUP, PRIMARY);
    back.status = "superseded".into();
    let again = change(3, 3, 33_000, PRIMARY, BACKUP);
    let mut last = r.last.changes[1].clone();
    last.id = 4;
    r.last.changes = vec![r.last.changes[0].clone(), back, again, last];
    r
}

#[test]
fn inv3_and_inv5_a_change_after_a_superseded_one_chains_and_writes_nothing() {
    let r = superseded_in_between();
    assert_eq!(nothing_lost(&r), vec![]);
    assert_eq!(coordinator_accountable(&r), vec![]);
    // The same history with the no-op counted as a write, or chained from an address no
    // change was meant to leave, is still caught.
    let mut r = superseded_in_between();
    r.serials = Some((1, 4));
    assert_one(
        coordinator_accountable(&r),
        Invariant::CoordinatorAccountable,
        "the history records 3 applied changes, 2 of which changed what was served",
    );
    let mut r = superseded_in_between();
    r.last.changes[2].from = ip("10.231.9.99");
    assert_one(
        nothing_lost(&r),
        Invariant::NothingLost,
        "applied DNS change 3 starts from [10.231.9.99], but the change applied before it ends at [10.231.9.20]",
    );
}

#[test]
fn failed_queries_are_not_answer_changes() {
    let mut r = clean();
    r.answers[10].result = Err("timed out".into());
    r.answers[30].result = Err("timed out".into());
    assert_eq!(check(&r), vec![]);
    assert_eq!(answer_changes(&r).len(), 2);
}
