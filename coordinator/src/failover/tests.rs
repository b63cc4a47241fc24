//! Tests of the decision function: a scenario table that walks every row of SPEC.md §3 and
//! every extra rule (start-up, override, flap damping, both-down, DNS failure) by name, and a
//! property test that the state invariants hold for random event sequences.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;

/// Witnesses in the test policies: votes not given as up/down/invalid are "missing".
const W: u32 = 3;
/// Time of the first event of a scenario; each event advances the clock by [`STEP_MS`].
const T0: u64 = 1_000_000;
const STEP_MS: u64 = 1_000;

/// The default test policy: 3 witnesses, quorum 2, two down probes before a round, three up
/// probes of hold-down, veto any, automatic failback, at most 4 flips in 10 minutes.
fn policy() -> Policy {
    Policy {
        fail_after: 2,
        recover_after: 3,
        quorum: 2,
        witnesses: W,
        veto: VetoRule::Any,
        failback: FailbackMode::Auto,
        failback_needs_quorum: false,
        max_flips: 4,
        flap_window_ms: 600_000,
    }
}

/// One step of a scenario: an event, or time passing without events.
#[derive(Clone, Copy, Debug)]
enum In {
    E(Event),
    Wait(u64),
}

fn obs(primary_up: bool, backup_up: bool, up: u32, down: u32, invalid: u32) -> Observation {
    Observation {
        primary_up,
        backup_up,
        votes: VoteTally {
            up,
            down,
            invalid,
            missing: W.saturating_sub(up + down + invalid),
        },
    }
}

/// A probe interval: own probes of primary and backup, then valid up/down votes.
fn tick(primary_up: bool, backup_up: bool, up: u32, down: u32) -> In {
    In::E(Event::Tick(obs(primary_up, backup_up, up, down, 0)))
}

/// Everything healthy and every witness agrees.
fn healthy() -> In {
    tick(true, true, W, 0)
}

/// Primary down by our own probe, backup up, with these valid votes.
fn pdown(up: u32, down: u32) -> In {
    tick(false, true, up, down)
}

fn ev(e: Event) -> In {
    In::E(e)
}

fn pin(o: Override) -> In {
    In::E(Event::SetOverride(o))
}

fn render_event(e: &Event) -> String {
    match e {
        Event::Started => "started".into(),
        Event::Tick(o) => {
            let mut s = format!(
                "tick P{} B{} up{} down{}",
                if o.primary_up { '+' } else { '-' },
                if o.backup_up { '+' } else { '-' },
                o.votes.up,
                o.votes.down
            );
            if o.votes.invalid > 0 {
                let _ = write!(s, " invalid{}", o.votes.invalid);
            }
            s
        }
        Event::SetOverride(o) => format!("override {o}"),
        Event::ManualFailback => "manual-failback".into(),
        Event::SwitchFailed { to, permanent } => format!(
            "switch-failed {to} {}",
            if *permanent { "permanent" } else { "transient" }
        ),
    }
}

fn render_action(a: &Action) -> String {
    match a {
        Action::Switch { to, .. } => format!("switch:{to}"),
        Action::RecordRound { outcome, .. } => format!("round:{outcome}"),
        Action::Alert { kind, .. } => format!("alert:{kind}"),
        Action::Resolve { kind, .. } => format!("resolve:{kind}"),
        Action::Transition { from, to, .. } => format!("transition:{from}->{to}"),
    }
}

fn render_state(s: &State) -> String {
    let alerts: Vec<&str> = s.alerts.iter().map(|k| k.as_str()).collect();
    format!(
        "state: {} override={} flips={} damped={} blocked={} awaiting={} alerts=[{}]",
        s.label(),
        s.override_,
        s.flips.len(),
        s.damped,
        s.blocked.map_or("no".to_string(), |b| b.to.to_string()),
        s.awaiting_manual_failback,
        alerts.join(",")
    )
}

/// Runs a scenario: one line per event (`event => actions`) and a final state line. Checks
/// the invariants and the JSON round trip of the state after every step on the way.
fn run(policy: &Policy, initial: State, steps: &[In]) -> Result<String, String> {
    policy
        .validate()
        .map_err(|e| format!("test policy invalid: {e}"))?;
    let mut state = initial;
    let mut now = T0;
    let mut out = String::new();
    let mut tracker = Tracker::default();
    for step_ in steps {
        match *step_ {
            In::Wait(ms) => now += ms,
            In::E(event) => {
                let (next, actions) = step(policy, &state, event, now);
                check_invariants(policy, &state, &event, &next, &actions, now, &mut tracker)?;
                let rendered: Vec<String> = actions.iter().map(render_action).collect();
                let rendered = if rendered.is_empty() {
                    "-".to_string()
                } else {
                    rendered.join(" ")
                };
                let _ = writeln!(out, "{} => {rendered}", render_event(&event));
                state = next;
                now += STEP_MS;
            }
        }
    }
    out.push_str(&render_state(&state));
    Ok(out)
}

/// Trims the indentation of an expectation written inline and drops blank lines.
fn normalize(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

struct Scenario {
    name: &'static str,
    policy: Policy,
    initial: State,
    steps: Vec<In>,
    expect: &'static str,
}

/// Runs one scenario; on mismatch, returns a message naming it with expected and actual.
fn check(sc: &Scenario) -> Result<(), String> {
    let actual = run(&sc.policy, sc.initial.clone(), &sc.steps)
        .map_err(|e| format!("scenario {:?}: {e}", sc.name))?;
    let expect = normalize(sc.expect);
    if actual == expect {
        Ok(())
    } else {
        Err(format!(
            "scenario {:?} failed\n--- expected\n{expect}\n--- actual\n{actual}\n",
            sc.name
        ))
    }
}

fn primary_active() -> State {
    State::new(Side::Primary)
}

fn backup_active() -> State {
    State::new(Side::Backup)
}

fn scenarios() -> Vec<Scenario> {
    let p = policy();
    vec![
        // ---- SPEC §3 row: primary-active, primary up → nothing
        Scenario {
            name: "primary-active, primary up: nothing",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![healthy(), healthy(), healthy()],
            expect: "
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "primary down fewer than fail_after consecutive probes: nothing, no round",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![pdown(0, 3), healthy(), pdown(0, 3), healthy()],
            expect: "
                tick P- B+ up0 down3 => -
                tick P+ B+ up3 down0 => -
                tick P- B+ up0 down3 => -
                tick P+ B+ up3 down0 => -
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- SPEC §3 row: no witness reachable → coordinator-isolated
        Scenario {
            name: "primary down fail_after times, no vote: coordinator-isolated",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![pdown(0, 0), pdown(0, 0), pdown(0, 0)],
            expect: "
                tick P- B+ up0 down0 => -
                tick P- B+ up0 down0 => round:coordinator-isolated
                tick P- B+ up0 down0 => round:coordinator-isolated
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "only invalid votes count as no vote: coordinator-isolated",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                ev(Event::Tick(obs(false, true, 0, 0, 3))),
                ev(Event::Tick(obs(false, true, 0, 0, 3))),
            ],
            expect: "
                tick P- B+ up0 down0 invalid3 => -
                tick P- B+ up0 down0 invalid3 => round:coordinator-isolated
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- SPEC §3 row: at least one valid up vote → disputed (veto any)
        Scenario {
            name: "one witness says up (veto any): disputed",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![pdown(1, 2), pdown(1, 2), pdown(1, 2)],
            expect: "
                tick P- B+ up1 down2 => -
                tick P- B+ up1 down2 => round:disputed
                tick P- B+ up1 down2 => round:disputed
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- veto = majority
        Scenario {
            name: "veto majority: 1 up of 3 does not veto",
            policy: Policy {
                veto: VetoRule::Majority,
                ..p.clone()
            },
            initial: primary_active(),
            steps: vec![pdown(1, 2), pdown(1, 2)],
            expect: "
                tick P- B+ up1 down2 => -
                tick P- B+ up1 down2 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "veto majority: a tie or more up than down votes: disputed",
            policy: Policy {
                veto: VetoRule::Majority,
                witnesses: 5,
                quorum: 2,
                ..p.clone()
            },
            initial: primary_active(),
            steps: vec![pdown(2, 2), pdown(2, 2), pdown(3, 2), pdown(2, 3)],
            expect: "
                tick P- B+ up2 down2 => -
                tick P- B+ up2 down2 => round:disputed
                tick P- B+ up3 down2 => round:disputed
                tick P- B+ up2 down3 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- SPEC §3 row: quorum down and backup healthy → fail over
        Scenario {
            name: "quorum down, backup healthy: failover",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![healthy(), pdown(0, 2), pdown(0, 2), pdown(0, 3)],
            expect: "
                tick P+ B+ up3 down0 => -
                tick P- B+ up0 down2 => -
                tick P- B+ up0 down2 => round:failover switch:backup transition:primary->backup
                tick P- B+ up0 down3 => -
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- both-down policy: leave DNS, alert once per episode
        Scenario {
            name: "quorum down, backup dead: both-down, alert once, DNS left alone",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
                tick(false, true, 0, 3),
            ],
            expect: "
                tick P- B- up0 down3 => -
                tick P- B- up0 down3 => round:both-down alert:both-down
                tick P- B- up0 down3 => round:both-down
                tick P- B- up0 down3 => round:both-down
                tick P- B+ up0 down3 => resolve:both-down round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "backup-active, both down: alert once, DNS left alone",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
                tick(false, true, 0, 3),
            ],
            expect: "
                tick P- B- up0 down3 => -
                tick P- B- up0 down3 => alert:both-down
                tick P- B- up0 down3 => -
                tick P- B+ up0 down3 => resolve:both-down
                state: backup-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "primary up, backup down: alert backup-down once, no switch, resolved when back",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                tick(true, false, 3, 0),
                tick(true, false, 3, 0),
                tick(true, false, 3, 0),
                healthy(),
            ],
            expect: "
                tick P+ B- up3 down0 => -
                tick P+ B- up3 down0 => alert:backup-down
                tick P+ B- up3 down0 => -
                tick P+ B+ up3 down0 => resolve:backup-down
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- SPEC §3 row: otherwise (too few votes) → nothing, retry next interval
        Scenario {
            name: "too few votes: insufficient, retried next tick",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![pdown(0, 1), pdown(0, 1), pdown(0, 1), pdown(0, 2)],
            expect: "
                tick P- B+ up0 down1 => -
                tick P- B+ up0 down1 => round:insufficient-votes
                tick P- B+ up0 down1 => round:insufficient-votes
                tick P- B+ up0 down2 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- SPEC §3 row: backup-active, primary still down → nothing
        Scenario {
            name: "backup-active, primary still down: nothing",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![pdown(0, 3), pdown(0, 3), pdown(1, 2), pdown(0, 0)],
            expect: "
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => -
                tick P- B+ up1 down2 => -
                tick P- B+ up0 down0 => -
                state: backup-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- SPEC §3 row: backup-active, primary up for recover_after → fail back
        Scenario {
            name: "primary up recover_after ticks: failback only after hold-down",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![
                healthy(),
                healthy(),
                pdown(0, 3),
                healthy(),
                healthy(),
                healthy(),
                healthy(),
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P- B+ up0 down3 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => round:failback switch:primary transition:backup->primary
                tick P+ B+ up3 down0 => -
                state: primary-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "failback needs witness quorum: not agreed until quorum sees it up",
            policy: Policy {
                failback_needs_quorum: true,
                ..p.clone()
            },
            initial: backup_active(),
            steps: vec![
                tick(true, true, 1, 2),
                tick(true, true, 1, 2),
                tick(true, true, 1, 2),
                tick(true, true, 1, 0),
                tick(true, true, 2, 1),
            ],
            expect: "
                tick P+ B+ up1 down2 => -
                tick P+ B+ up1 down2 => -
                tick P+ B+ up1 down2 => round:failback-not-agreed
                tick P+ B+ up1 down0 => round:failback-not-agreed
                tick P+ B+ up2 down1 => round:failback switch:primary transition:backup->primary
                state: primary-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "failback without the quorum option ignores the votes",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![
                tick(true, true, 0, 0),
                tick(true, true, 0, 3),
                tick(true, true, 0, 3),
            ],
            expect: "
                tick P+ B+ up0 down0 => -
                tick P+ B+ up0 down3 => -
                tick P+ B+ up0 down3 => round:failback switch:primary transition:backup->primary
                state: primary-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "backup dies while the primary is back: backup-down alert, failback after hold-down",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![
                tick(true, false, 3, 0),
                tick(true, false, 3, 0),
                tick(true, false, 3, 0),
            ],
            expect: "
                tick P+ B- up3 down0 => -
                tick P+ B- up3 down0 => alert:backup-down
                tick P+ B- up3 down0 => round:failback switch:primary transition:backup->primary
                state: primary-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[backup-down]
            ",
        },
        // ---- failback = manual
        Scenario {
            name: "manual failback waits for operator",
            policy: Policy {
                failback: FailbackMode::Manual,
                ..p.clone()
            },
            initial: backup_active(),
            steps: vec![
                healthy(),
                healthy(),
                healthy(),
                healthy(),
                healthy(),
                ev(Event::ManualFailback),
                healthy(),
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => round:failback-awaiting-operator alert:failback-awaiting-operator
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                manual-failback => round:failback resolve:failback-awaiting-operator switch:primary transition:backup->primary
                tick P+ B+ up3 down0 => -
                state: primary-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "manual failback refused while the primary is down",
            policy: Policy {
                failback: FailbackMode::Manual,
                ..p.clone()
            },
            initial: backup_active(),
            steps: vec![
                healthy(),
                healthy(),
                healthy(),
                pdown(0, 3),
                ev(Event::ManualFailback),
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => round:failback-awaiting-operator alert:failback-awaiting-operator
                tick P- B+ up0 down3 => resolve:failback-awaiting-operator
                manual-failback => round:failback-refused alert:failback-refused
                state: backup-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "manual failback refused when already primary-active or pinned to backup",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                healthy(),
                ev(Event::ManualFailback),
                pin(Override::PinBackup),
                healthy(),
                ev(Event::ManualFailback),
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                manual-failback => round:failback-refused alert:failback-refused
                override pin-backup => round:override switch:backup transition:primary->backup
                tick P+ B+ up3 down0 => -
                manual-failback => round:failback-refused alert:failback-refused
                state: backup-active override=pin-backup flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- start-up: resume the persisted state, never flip on the first probe
        Scenario {
            name: "restart: never flips on first tick",
            policy: Policy {
                fail_after: 1,
                ..p.clone()
            },
            initial: primary_active(),
            steps: vec![ev(Event::Started), pdown(0, 3), pdown(0, 3)],
            expect: "
                started => -
                tick P- B+ up0 down3 => round:startup-hold
                tick P- B+ up0 down3 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "restart: never fails back on first tick",
            policy: Policy {
                recover_after: 1,
                ..p.clone()
            },
            initial: backup_active(),
            steps: vec![ev(Event::Started), healthy(), healthy()],
            expect: "
                started => -
                tick P+ B+ up3 down0 => round:startup-hold
                tick P+ B+ up3 down0 => round:failback switch:primary transition:backup->primary
                state: primary-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "restart: the streak counts only ticks since start",
            policy: p.clone(),
            initial: State {
                primary_down_streak: 7,
                ticks_since_start: 40,
                ..primary_active()
            },
            steps: vec![ev(Event::Started), pdown(0, 3), pdown(0, 3)],
            expect: "
                started => -
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "restart: resumes backup-active and keeps raised alerts latched",
            policy: p.clone(),
            initial: State {
                alerts: [AlertKind::BothDown].into_iter().collect(),
                ..backup_active()
            },
            steps: vec![
                ev(Event::Started),
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
                tick(false, true, 0, 3),
            ],
            expect: "
                started => -
                tick P- B- up0 down3 => -
                tick P- B- up0 down3 => -
                tick P- B+ up0 down3 => resolve:both-down
                state: backup-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        // ---- maintenance / override
        Scenario {
            name: "pin backup: switches at once, never flips while pinned",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                healthy(),
                pin(Override::PinBackup),
                healthy(),
                healthy(),
                healthy(),
                healthy(),
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                override pin-backup => round:override switch:backup transition:primary->backup
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                tick P+ B+ up3 down0 => -
                state: backup-active override=pin-backup flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "pin primary: switches back, never fails over while pinned",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![
                pin(Override::PinPrimary),
                pdown(0, 3),
                pdown(0, 3),
                pdown(0, 3),
            ],
            expect: "
                override pin-primary => round:override switch:primary transition:backup->primary
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => -
                state: primary-active override=pin-primary flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "auto resumes with fresh streaks; same override twice is a no-op",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                pin(Override::PinPrimary),
                pin(Override::PinPrimary),
                pdown(0, 3),
                pdown(0, 3),
                pdown(0, 3),
                pin(Override::Auto),
                pdown(0, 3),
                pdown(0, 3),
            ],
            expect: "
                override pin-primary => round:override
                override pin-primary => -
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => -
                override auto => round:override
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=1 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "pinned to the backup, both down: alert both-down",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                pin(Override::PinBackup),
                tick(false, false, 0, 3),
                tick(false, false, 0, 3),
            ],
            expect: "
                override pin-backup => round:override switch:backup transition:primary->backup
                tick P- B- up0 down3 => -
                tick P- B- up0 down3 => alert:both-down
                state: backup-active override=pin-backup flips=0 damped=false blocked=no awaiting=false alerts=[both-down]
            ",
        },
        // ---- flap damping
        Scenario {
            name: "flap damping holds after max flips, alert, releases after window",
            policy: Policy {
                fail_after: 1,
                recover_after: 1,
                max_flips: 2,
                flap_window_ms: 60_000,
                ..p.clone()
            },
            initial: primary_active(),
            steps: vec![
                healthy(), // t0
                pdown(0, 3), // t0+1s: flip 1
                healthy(), // t0+2s: flip 2
                pdown(0, 3), // t0+3s: damped
                pdown(0, 3), // t0+4s: still damped, no second alert
                In::Wait(55_000),
                pdown(0, 3), // t0+60s: flip 1 is 59 000 ms old, still in the window
                pdown(0, 3), // t0+61s: flip 1 is exactly 60 000 ms old: the window has passed
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                tick P- B+ up0 down3 => round:failover switch:backup transition:primary->backup
                tick P+ B+ up3 down0 => round:failback switch:primary transition:backup->primary
                tick P- B+ up0 down3 => round:damped alert:damped
                tick P- B+ up0 down3 => round:damped
                tick P- B+ up0 down3 => round:damped
                tick P- B+ up0 down3 => resolve:damped round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=2 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "flap damping counts automatic switches only, not the operator's",
            policy: Policy {
                fail_after: 1,
                recover_after: 1,
                max_flips: 1,
                ..p.clone()
            },
            initial: primary_active(),
            steps: vec![
                healthy(),
                pin(Override::PinBackup),
                pin(Override::Auto),
                healthy(),
                pdown(0, 3),
            ],
            expect: "
                tick P+ B+ up3 down0 => -
                override pin-backup => round:override switch:backup transition:primary->backup
                override auto => round:override
                tick P+ B+ up3 down0 => round:failback switch:primary transition:backup->primary
                tick P- B+ up0 down3 => round:damped alert:damped
                state: primary-active override=auto flips=1 damped=true blocked=no awaiting=false alerts=[damped]
            ",
        },
        // ---- DNS change failures
        Scenario {
            name: "permanent DNS failure reverts and blocks until override",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                pdown(0, 3),
                pdown(0, 3),
                ev(Event::SwitchFailed {
                    to: Side::Backup,
                    permanent: true,
                }),
                pdown(0, 3),
                pdown(0, 3),
                ev(Event::ManualFailback),
                pin(Override::Auto),
                pdown(0, 3),
                pdown(0, 3),
            ],
            expect: "
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => round:failover switch:backup transition:primary->backup
                switch-failed backup permanent => transition:backup->primary alert:switch-blocked
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => round:blocked
                manual-failback => round:failback-refused alert:failback-refused
                override auto => resolve:switch-blocked round:override
                tick P- B+ up0 down3 => -
                tick P- B+ up0 down3 => round:failover switch:backup transition:primary->backup
                state: backup-active override=auto flips=2 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "permanent failure of a pinned switch: retried by setting the pin again",
            policy: p.clone(),
            initial: primary_active(),
            steps: vec![
                pin(Override::PinBackup),
                ev(Event::SwitchFailed {
                    to: Side::Backup,
                    permanent: true,
                }),
                healthy(),
                pin(Override::PinBackup),
            ],
            expect: "
                override pin-backup => round:override switch:backup transition:primary->backup
                switch-failed backup permanent => transition:backup->primary alert:switch-blocked
                tick P+ B+ up3 down0 => -
                override pin-backup => resolve:switch-blocked round:override switch:backup transition:primary->backup
                state: backup-active override=pin-backup flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
        Scenario {
            name: "transient DNS failure: no-op, the driver retries",
            policy: p.clone(),
            initial: backup_active(),
            steps: vec![ev(Event::SwitchFailed {
                to: Side::Backup,
                permanent: false,
            })],
            expect: "
                switch-failed backup transient => -
                state: backup-active override=auto flips=0 damped=false blocked=no awaiting=false alerts=[]
            ",
        },
    ]
}

#[test]
fn failover_decision_table() {
    let all = scenarios();
    let mut names = std::collections::HashSet::new();
    for sc in &all {
        assert!(
            names.insert(sc.name),
            "duplicate scenario name {:?}",
            sc.name
        );
    }
    let failures: Vec<String> = all.iter().filter_map(|sc| check(sc).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

/// The reasons stored in the history carry the numbers an operator needs after an incident.
#[test]
fn failover_round_reasons_name_the_votes_and_thresholds() {
    let p = policy();
    let mut s = primary_active();
    let mut rounds = Vec::new();
    for (i, votes) in [(0, 1), (0, 1), (1, 2), (0, 0), (0, 2)]
        .into_iter()
        .enumerate()
    {
        let (next, actions) = step(
            &p,
            &s,
            Event::Tick(obs(false, true, votes.0, votes.1, 0)),
            T0 + i as u64,
        );
        s = next;
        rounds.extend(actions.into_iter().filter_map(|a| match a {
            Action::RecordRound {
                trigger,
                outcome,
                reason,
            } => Some((trigger, outcome, reason)),
            _ => None,
        }));
    }
    let expected = [
        (
            Outcome::InsufficientVotes,
            "primary down for 2 consecutive probes; votes: 1 down, 0 up, 0 invalid, 2 missing; 1 valid down votes, quorum is 2",
        ),
        (
            Outcome::Disputed,
            "2 down, 1 up, 0 invalid, 0 missing; veto any",
        ),
        (Outcome::CoordinatorIsolated, "no valid vote"),
        (Outcome::Failover, "switching to backup"),
    ];
    assert_eq!(rounds.len(), expected.len(), "rounds: {rounds:?}");
    for ((trigger, outcome, reason), (want, text)) in rounds.iter().zip(expected) {
        assert_eq!(*trigger, Trigger::PrimaryDown);
        assert!(trigger.has_votes());
        assert_eq!(*outcome, want, "reason: {reason}");
        assert!(reason.contains(text), "{reason:?} lacks {text:?}");
    }
}

#[test]
fn failover_policy_validation_names_the_field() {
    assert_eq!(policy().validate(), Ok(()));
    let cases: [(Policy, &str, &str); 6] = [
        (
            Policy {
                fail_after: 0,
                ..policy()
            },
            "fail_after",
            "at least 1",
        ),
        (
            Policy {
                recover_after: 0,
                ..policy()
            },
            "recover_after",
            "at least 1",
        ),
        (
            Policy {
                witnesses: 0,
                quorum: 0,
                ..policy()
            },
            "witnesses",
            "at least 1",
        ),
        (
            Policy {
                quorum: 4,
                ..policy()
            },
            "quorum",
            "between 1 and the number of witnesses (3), got 4",
        ),
        (
            Policy {
                max_flips: 0,
                ..policy()
            },
            "max_flips",
            "at least 1",
        ),
        (
            Policy {
                flap_window_ms: 0,
                ..policy()
            },
            "flap_window",
            "longer than 0",
        ),
    ];
    for (bad, field, text) in cases {
        let err = bad.validate().expect_err(field);
        assert_eq!(err.field, field);
        assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        assert!(err.message.contains(text), "{err}");
    }
    let zero_quorum = Policy {
        quorum: 0,
        ..policy()
    }
    .validate();
    assert_eq!(zero_quorum.map_err(|e| e.field), Err("quorum"));
}

#[test]
fn failover_names_match_serde_and_parse_back() {
    for o in Outcome::ALL {
        assert_eq!(
            serde_json::to_string(&o).unwrap(),
            format!("\"{}\"", o.as_str())
        );
        assert_eq!(Outcome::parse(o.as_str()), Some(o));
    }
    assert_eq!(Outcome::parse("nonsense"), None);
    assert_eq!(
        Outcome::CoordinatorIsolated.as_str(),
        "coordinator-isolated"
    );
    for side in [Side::Primary, Side::Backup] {
        assert_eq!(serde_json::to_string(&side).unwrap(), format!("\"{side}\""));
        assert_eq!(side.other().other(), side);
    }
    for o in [Override::Auto, Override::PinPrimary, Override::PinBackup] {
        assert_eq!(serde_json::to_string(&o).unwrap(), format!("\"{o}\""));
    }
    let kinds = [
        AlertKind::BackupDown,
        AlertKind::BothDown,
        AlertKind::Damped,
        AlertKind::SwitchBlocked,
        AlertKind::FailbackAwaitingOperator,
        AlertKind::FailbackRefused,
    ];
    for k in kinds {
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
    }
    let json = serde_json::to_value(State::new(Side::Primary)).unwrap();
    assert_eq!(json["override"], "auto");
    assert_eq!(json["active"], "primary");
}

/// What the property test remembers across steps to check rules that span several events.
#[derive(Default)]
struct Tracker {
    /// Ticks seen since the last `Started`, if one was seen.
    ticks_since_started: Option<u32>,
    /// Times of the automatic switches so far.
    automatic_switches: Vec<u64>,
}

/// The invariants every step must keep, whatever the events. Returns a description of the
/// first one broken.
fn check_invariants(
    p: &Policy,
    before: &State,
    event: &Event,
    after: &State,
    actions: &[Action],
    now: u64,
    tr: &mut Tracker,
) -> Result<(), String> {
    let fail = |what: &str| {
        Err(format!(
            "{what}\nevent: {event:?}\nbefore: {before:?}\nafter: {after:?}\nactions: {actions:?}"
        ))
    };
    // Persisted as JSON: must round-trip exactly.
    let json = serde_json::to_string(after).map_err(|e| e.to_string())?;
    let back: State = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    if &back != after {
        return fail("state does not round-trip through JSON");
    }
    if after.flips.len() > p.max_flips as usize {
        return fail("more remembered flips than max_flips");
    }
    if after.damped != after.alerts.contains(&AlertKind::Damped)
        || after.blocked.is_some() != after.alerts.contains(&AlertKind::SwitchBlocked)
        || after.awaiting_manual_failback
            != after.alerts.contains(&AlertKind::FailbackAwaitingOperator)
    {
        return fail("hold flags and latched alerts disagree");
    }
    if after.alerts.contains(&AlertKind::FailbackRefused) {
        return fail("a one-off alert was latched");
    }
    let switches: Vec<Side> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Switch { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    if switches.len() > 1 {
        return fail("more than one switch in one step");
    }
    // The driver stores one round per decision.
    let rounds = actions
        .iter()
        .filter(|a| matches!(a, Action::RecordRound { .. }))
        .count();
    if rounds > 1 {
        return fail("more than one round in one step");
    }
    for (i, a) in actions.iter().enumerate() {
        match a {
            Action::Switch { to, .. } => {
                let next = actions.get(i + 1);
                let ok = matches!(next, Some(Action::Transition { from, to: t, .. })
                    if *from == before.active && t == to);
                if !ok {
                    return fail("a switch is not followed by its transition");
                }
                if before.active == *to || after.active != *to {
                    return fail("a switch does not change the active side to its target");
                }
                if let Some(pinned) = after.override_.pinned()
                    && pinned != *to
                {
                    return fail("switch away from the pinned side");
                }
            }
            Action::Alert { kind, .. }
                if kind.is_latched()
                    && (before.alerts.contains(kind) || !after.alerts.contains(kind)) =>
            {
                return fail("latched alert sent twice in one episode");
            }
            Action::Resolve { kind, .. }
                if !before.alerts.contains(kind) || after.alerts.contains(kind) =>
            {
                return fail("resolved an alert that was not raised");
            }
            Action::Transition { from, to, .. } if from == to => {
                return fail("transition to the same side");
            }
            _ => {}
        }
    }
    if !actions
        .iter()
        .any(|a| matches!(a, Action::Transition { .. }))
        && before.active != after.active
    {
        return fail("active side changed without a transition");
    }
    match event {
        Event::Started => {
            if !actions.is_empty() || after.active != before.active {
                return fail("start-up did something besides resetting streaks");
            }
            tr.ticks_since_started = Some(0);
        }
        Event::Tick(o) => {
            let first_after_start = tr.ticks_since_started == Some(0);
            if let Some(n) = &mut tr.ticks_since_started {
                *n += 1;
            }
            if before.override_ != Override::Auto
                && actions
                    .iter()
                    .any(|a| matches!(a, Action::RecordRound { .. } | Action::Switch { .. }))
            {
                return fail("round or switch while pinned");
            }
            if let Some(to) = switches.first() {
                tr.automatic_switches.push(now);
                if first_after_start {
                    return fail("switch on the first tick after a restart");
                }
                if before.blocked.is_some() {
                    return fail("automatic switch while blocked");
                }
                match to {
                    Side::Backup => {
                        let vetoed = match p.veto {
                            VetoRule::Any => o.votes.up > 0,
                            VetoRule::Majority => o.votes.up >= o.votes.down,
                        };
                        if !o.backup_up {
                            return fail("failover to a backup that is down in this tick");
                        }
                        if o.primary_up || o.votes.down < p.quorum || vetoed {
                            return fail("failover without own probe down and a vote quorum");
                        }
                        if before.primary_down_streak + 1 < p.fail_after {
                            return fail("failover before fail_after probes");
                        }
                    }
                    Side::Primary => {
                        if !o.primary_up || before.primary_up_streak + 1 < p.recover_after {
                            return fail("failback before the hold-down");
                        }
                        if p.failback == FailbackMode::Manual {
                            return fail("automatic failback in manual mode");
                        }
                        if p.failback_needs_quorum && o.votes.up < p.quorum {
                            return fail("failback without the witness quorum");
                        }
                    }
                }
                let recent = tr
                    .automatic_switches
                    .iter()
                    .filter(|&&t| now - t < p.flap_window_ms)
                    .count();
                if recent > p.max_flips as usize {
                    return fail("more automatic switches in the window than max_flips");
                }
            }
        }
        Event::ManualFailback => {
            if let Some(to) = switches.first()
                && (*to != Side::Primary || before.primary_up_streak == 0)
            {
                return fail("manual failback to a primary not up at the last probe");
            }
        }
        Event::SetOverride(o) => {
            if let Some(to) = switches.first()
                && o.pinned() != Some(*to)
            {
                return fail("override switched to a side it does not pin");
            }
        }
        Event::SwitchFailed { .. } => {
            if !switches.is_empty() {
                return fail("a failed switch caused another switch");
            }
        }
    }
    Ok(())
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (1u32..=5).prop_flat_map(|witnesses| {
        (
            1u32..=3,
            1u32..=3,
            1..=witnesses,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1u32..=3,
            1u64..=20_000,
        )
            .prop_map(
                move |(fail_after, recover_after, quorum, majority, manual, nq, max_flips, w)| {
                    Policy {
                        fail_after,
                        recover_after,
                        quorum,
                        witnesses,
                        veto: if majority {
                            VetoRule::Majority
                        } else {
                            VetoRule::Any
                        },
                        failback: if manual {
                            FailbackMode::Manual
                        } else {
                            FailbackMode::Auto
                        },
                        failback_needs_quorum: nq,
                        max_flips,
                        flap_window_ms: w,
                    }
                },
            )
    })
}

fn arb_side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Primary), Just(Side::Backup)]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let tick = (any::<bool>(), any::<bool>(), 0u32..=5, 0u32..=5, 0u32..=2).prop_map(
        |(primary_up, backup_up, up, down, invalid)| {
            Event::Tick(Observation {
                primary_up,
                backup_up,
                votes: VoteTally {
                    up,
                    down,
                    invalid,
                    missing: 0,
                },
            })
        },
    );
    let over = prop_oneof![
        Just(Override::Auto),
        Just(Override::PinPrimary),
        Just(Override::PinBackup)
    ];
    prop_oneof![
        20 => tick,
        1 => Just(Event::Started),
        1 => over.prop_map(Event::SetOverride),
        1 => Just(Event::ManualFailback),
        1 => (arb_side(), any::<bool>())
            .prop_map(|(to, permanent)| Event::SwitchFailed { to, permanent }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn failover_invariants_hold_for_random_events(
        policy in arb_policy(),
        start in arb_side(),
        events in proptest::collection::vec((0u64..=6_000, arb_event()), 0..80),
    ) {
        let mut state = State::new(start);
        let mut now = T0;
        let mut tracker = Tracker::default();
        for (delta, event) in events {
            now += delta;
            let (next, actions) = step(&policy, &state, event, now);
            let checked = check_invariants(&policy, &state, &event, &next, &actions, now, &mut tracker);
            prop_assert!(checked.is_ok(), "{}", checked.err().unwrap_or_default());
            // Pure: the same inputs give the same outputs.
            prop_assert_eq!(step(&policy, &state, event, now), (next.clone(), actions));
            state = next;
        }
    }
}

/// `decide_round`, the outcome of one vote round on its own, row by row: the table the
/// auditor re-derives recorded outcomes with.
#[test]
fn decide_round_table() {
    let obs = |primary_up, backup_up, up, down| Observation {
        primary_up,
        backup_up,
        votes: VoteTally {
            up,
            down,
            invalid: 0,
            missing: W - up - down,
        },
    };
    let majority = Policy {
        veto: VetoRule::Majority,
        ..policy()
    };
    let gated = Policy {
        failback_needs_quorum: true,
        ..policy()
    };
    let manual = Policy {
        failback: FailbackMode::Manual,
        ..policy()
    };
    let strict = Policy {
        quorum: 3,
        ..policy()
    };
    let down = Trigger::PrimaryDown;
    let up = Trigger::PrimaryUp;
    let rows: &[(&str, &Policy, Trigger, Observation, Option<Outcome>)] = &[
        (
            "no valid vote",
            &policy(),
            down,
            obs(false, true, 0, 0),
            Some(Outcome::CoordinatorIsolated),
        ),
        (
            "one up vetoes (any)",
            &policy(),
            down,
            obs(false, true, 1, 2),
            Some(Outcome::Disputed),
        ),
        (
            "1 up vs 2 down (majority)",
            &majority,
            down,
            obs(false, true, 1, 2),
            Some(Outcome::Failover),
        ),
        (
            "one down vote",
            &policy(),
            down,
            obs(false, true, 0, 1),
            Some(Outcome::InsufficientVotes),
        ),
        (
            "quorum of downs",
            &policy(),
            down,
            obs(false, true, 0, 2),
            Some(Outcome::Failover),
        ),
        (
            "2 of 3 under quorum 3",
            &strict,
            down,
            obs(false, true, 0, 2),
            Some(Outcome::InsufficientVotes),
        ),
        (
            "quorum, backup down",
            &policy(),
            down,
            obs(false, false, 0, 3),
            Some(Outcome::BothDown),
        ),
        (
            "primary-down round with the primary up",
            &policy(),
            down,
            obs(true, true, 0, 3),
            None,
        ),
        (
            "failback",
            &policy(),
            up,
            obs(true, true, 0, 0),
            Some(Outcome::Failback),
        ),
        (
            "failback needs quorum, 1 up",
            &gated,
            up,
            obs(true, true, 1, 0),
            Some(Outcome::FailbackNotAgreed),
        ),
        (
            "failback needs quorum, 2 up",
            &gated,
            up,
            obs(true, true, 2, 0),
            Some(Outcome::Failback),
        ),
        (
            "manual failback",
            &manual,
            up,
            obs(true, true, 0, 0),
            Some(Outcome::FailbackAwaitingOperator),
        ),
        (
            "override has no vote round",
            &policy(),
            Trigger::Override,
            obs(false, true, 0, 3),
            None,
        ),
    ];
    for (name, p, trigger, o, want) in rows {
        assert_eq!(decide_round(p, *trigger, o), *want, "{name}");
    }
}
