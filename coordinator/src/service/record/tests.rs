//! The effect-recording table: each row is what `step` returned for one event (actions, the
//! tick's observation, its raw votes) and the expected record, DNS job and notices, rendered
//! as text so a failing row reads like a history excerpt.

use std::fmt::Write as _;

use super::*;
use crate::dns::RecordType;
use crate::failover::{AlertKind, Outcome, Override, Trigger, VoteTally};

const NOW: u64 = 5_000;

fn target() -> Target {
    let rs = |ip: &str| {
        vec![RecordSet::new(
            "www.example.test.",
            RecordType::A,
            60,
            vec![ip.parse().unwrap()],
        )]
    };
    Target {
        service: "www".into(),
        zone: "example.test.".into(),
        backend: "dryrun".into(),
        primary: rs("192.0.2.1"),
        backup: rs("192.0.2.2"),
        policy: crate::failover::Policy {
            fail_after: 2,
            recover_after: 3,
            quorum: 2,
            witnesses: 3,
            veto: crate::failover::VetoRule::Any,
            failback: crate::failover::FailbackMode::Auto,
            failback_needs_quorum: false,
            max_flips: 4,
            flap_window_ms: 600_000,
        },
    }
}

fn obs(primary_up: bool, backup_up: bool, up: u32, down: u32, missing: u32) -> Observation {
    Observation {
        primary_up,
        backup_up,
        votes: VoteTally {
            up,
            down,
            invalid: 0,
            missing,
        },
    }
}

fn vote(witness: &str, verdict: Option<&str>) -> VoteRecord {
    VoteRecord {
        witness: witness.into(),
        witness_key_id: "0123456789abcdef".into(),
        request_envelope: "{}".into(),
        vote_envelope: verdict.map(|_| b"{}".to_vec()),
        valid: verdict.is_some(),
        verdict: verdict.map(str::to_string),
        error: verdict.is_none().then(|| "timeout".to_string()),
        latency_ms: Some(1.0),
    }
}

fn round(trigger: Trigger, outcome: Outcome, reason: &str) -> Action {
    Action::RecordRound {
        trigger,
        outcome,
        reason: reason.into(),
    }
}

fn backup_active() -> State {
    State::new(Side::Backup)
}

fn render(r: &Recorded) -> String {
    let mut out = String::new();
    let Some(d) = &r.decision else {
        return "nothing written\n".into();
    };
    match &d.state {
        Some(s) => writeln!(
            out,
            "state   {} override {}",
            s.label(),
            s.override_.as_str()
        ),
        None => writeln!(out, "state   unchanged"),
    }
    .unwrap();
    if let Some(x) = &d.round {
        writeln!(
            out,
            "round   {} -> {} ({}) votes {} up / {} down / {} missing, {} stored{}",
            x.trigger,
            x.outcome,
            x.reason,
            x.votes_up,
            x.votes_down,
            x.votes_missing,
            d.votes.len(),
            if x.changed_dns { ", changed dns" } else { "" }
        )
        .unwrap();
    }
    for (k, m) in &d.events {
        writeln!(out, "event   {k}: {m}").unwrap();
    }
    if let Some(c) = &d.dns_change {
        let to: Vec<String> = c
            .change
            .to
            .iter()
            .map(|r| format!("{:?}", r.addrs))
            .collect();
        writeln!(
            out,
            "pending to {} via {} in {} -> {}",
            c.to_side,
            c.backend,
            c.change.zone,
            to.join(" ")
        )
        .unwrap();
    }
    if let Some(j) = &r.switch {
        writeln!(out, "job     to {} ({})", j.to, j.reason).unwrap();
    }
    for n in &r.notices {
        let votes = crate::notify::render::votes(n)
            .map(|v| format!(" [votes {v}]"))
            .unwrap_or_default();
        let by =
            n.by.as_ref()
                .map(|b| format!(" [by {b}]"))
                .unwrap_or_default();
        writeln!(out, "notice  {}: {}{votes}{by}", n.title_event(), n.message).unwrap();
    }
    out
}

struct Row {
    name: &'static str,
    event: Event,
    persisted: Option<State>,
    next: State,
    actions: Vec<Action>,
    obs: Observation,
    votes: Option<Vec<VoteRecord>>,
    expect: &'static str,
}

#[test]
fn effects_of_each_kind_of_decision() {
    let primary = State::new(Side::Primary);
    let three = Some(vec![
        vote("w1", Some("down")),
        vote("w2", Some("down")),
        vote("w3", None),
    ]);
    let mut pinned = backup_active();
    pinned.override_ = Override::PinBackup;
    let mut alerted = primary.clone();
    alerted.alerts.insert(AlertKind::BothDown);
    let rows = vec![
        Row {
            name: "a healthy tick writes nothing",
            event: Event::Tick(obs(true, true, 3, 0, 0)),
            persisted: Some(primary.clone()),
            next: primary.clone(),
            actions: vec![],
            obs: obs(true, true, 3, 0, 0),
            votes: three.clone(),
            expect: "nothing written\n",
        },
        Row {
            name: "the first decision after a start writes the state",
            event: Event::Started,
            persisted: None,
            next: primary.clone(),
            actions: vec![],
            obs: Observation::default(),
            votes: None,
            expect: "state   primary-active override auto\n",
        },
        Row {
            name: "a failover: round with its votes, pending change, job, transition",
            event: Event::Tick(obs(false, true, 0, 2, 1)),
            persisted: Some(primary.clone()),
            next: backup_active(),
            actions: vec![
                round(Trigger::PrimaryDown, Outcome::Failover, "2 of 3 down"),
                Action::Transition {
                    from: Side::Primary,
                    to: Side::Backup,
                    reason: "quorum".into(),
                },
                Action::Switch {
                    to: Side::Backup,
                    reason: "quorum".into(),
                },
            ],
            obs: obs(false, true, 0, 2, 1),
            votes: three.clone(),
            expect: "\
state   backup-active override auto
round   primary-down -> failover (2 of 3 down) votes 0 up / 2 down / 1 missing, 3 stored, changed dns
event   transition: primary-active -> backup-active: quorum
pending to backup via dryrun in example.test. -> [192.0.2.2]
job     to backup (quorum)
notice  failover: primary-active -> backup-active: quorum [votes 2 down, 0 up, 0 invalid, 1 missing]
",
        },
        Row {
            name: "a disputed round keeps its votes and changes nothing else",
            event: Event::Tick(obs(false, true, 1, 2, 0)),
            persisted: Some(primary.clone()),
            next: primary.clone(),
            actions: vec![round(Trigger::PrimaryDown, Outcome::Disputed, "1 up")],
            obs: obs(false, true, 1, 2, 0),
            votes: three.clone(),
            expect: "\
state   unchanged
round   primary-down -> disputed (1 up) votes 1 up / 2 down / 0 missing, 3 stored
",
        },
        Row {
            name: "an override: no votes stored with its round, an override event and notice naming the token role",
            event: Event::SetOverride(Override::PinBackup),
            persisted: Some(primary.clone()),
            next: pinned.clone(),
            actions: vec![
                round(Trigger::Override, Outcome::Override, "pin-backup"),
                Action::Transition {
                    from: Side::Primary,
                    to: Side::Backup,
                    reason: "override".into(),
                },
                Action::Switch {
                    to: Side::Backup,
                    reason: "override".into(),
                },
            ],
            obs: obs(true, true, 3, 0, 0),
            votes: three.clone(),
            expect: "\
state   backup-active override pin-backup
round   override -> override (pin-backup) votes 3 up / 0 down / 0 missing, 0 stored, changed dns
event   transition: primary-active -> backup-active: override
event   override: operator set pin-backup
pending to backup via dryrun in example.test. -> [192.0.2.2]
job     to backup (override)
notice  override: operator set pin-backup [by admin]
notice  failover: primary-active -> backup-active: override [by admin]
",
        },
        Row {
            name: "alerts and resolutions are events and notices, in order",
            event: Event::Tick(obs(false, false, 0, 3, 0)),
            persisted: Some(primary.clone()),
            next: alerted,
            actions: vec![
                Action::Resolve {
                    kind: AlertKind::BackupDown,
                    message: "backup answers again".into(),
                },
                Action::Alert {
                    kind: AlertKind::BothDown,
                    message: "primary and backup down".into(),
                },
            ],
            obs: obs(false, false, 0, 3, 0),
            votes: None,
            expect: "\
state   primary-active override auto
event   resolved: backup-down: backup answers again
event   alert: both-down: primary and backup down
notice  backup-down resolved: backup answers again
notice  both-down: primary and backup down
",
        },
    ];
    let t = target();
    let mut failures = String::new();
    for row in rows {
        let got = render(&record(
            &t,
            Input {
                event: row.event,
                persisted: row.persisted.as_ref(),
                next: &row.next,
                actions: row.actions,
                obs: row.obs,
                votes: row.votes,
                by: Some("admin"),
                now_ms: NOW,
            },
        ));
        if got != row.expect {
            writeln!(
                failures,
                "--- {}\nexpected:\n{}got:\n{}",
                row.name, row.expect, got
            )
            .unwrap();
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn the_persisted_state_forgets_the_streaks() {
    let mut s = State::new(Side::Primary);
    s.primary_down_streak = 3;
    s.ticks_since_start = 9;
    let r = record(
        &target(),
        Input {
            event: Event::Tick(Observation::default()),
            persisted: Some(&State::new(Side::Primary)),
            next: &s,
            actions: vec![],
            obs: Observation::default(),
            votes: None,
            by: None,
            now_ms: NOW,
        },
    );
    assert!(r.decision.is_none(), "a streak alone is not worth a write");
    assert_eq!(r.persisted, State::new(Side::Primary));
}
