//! The multi-host lab scenarios: separate hosts (network namespaces), the real
//! `quorate-witness` and `quorate-coordinator` binaries, a real BIND 9, a client asking it with
//! `dig`, and a network that breaks. Each test asserts what the client sees in DNS and what
//! the coordinator's history says. Needs root; build the binaries first (`cargo build --bins`).
//! See docs/testing.md.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use tests::lab::{Host, Lab, LabOptions, Rtype};

/// Generous bound for "the client sees the change" (a failover needs `fail_after` probes at
/// 1 s plus the UPDATE; several labs share 2 cores).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);

fn a(lab: &Lab, h: Host) -> Vec<IpAddr> {
    lab.expect(h, Rtype::A)
}

/// Fails with the history's timeline attached.
#[track_caller]
fn check(lab: &Lab, cond: bool, msg: &str) {
    if !cond {
        panic!("{msg}\n--- history ---\n{}", lab.timeline());
    }
}

/// Waits until the client sees `h`'s A record, or fails with the timeline.
#[track_caller]
fn client_sees(lab: &Lab, h: Host, within: Duration) -> Duration {
    match lab.wait_client_sees(Rtype::A, &a(lab, h), within) {
        Ok(d) => d,
        Err(e) => panic!("{e}\n--- history ---\n{}", lab.timeline()),
    }
}

/// The single failover round; asserts it is backed by at least `quorum` valid signed "down"
/// votes stored byte for byte, and that `verify-history` re-verifies them offline.
fn assert_failover_round(lab: &Lab, quorum: usize) -> i64 {
    let h = lab.history();
    let rounds = h.rounds_with("failover");
    check(
        lab,
        rounds.len() == 1,
        &format!("expected exactly one failover round, got {}", rounds.len()),
    );
    let r = &rounds[0];
    check(
        lab,
        r.round.changed_dns,
        "the failover round did not change DNS",
    );
    let votes = h.votes(r.id);
    let valid_down: Vec<_> = votes
        .iter()
        .filter(|v| v.valid && v.verdict.as_deref() == Some("down"))
        .collect();
    check(
        lab,
        valid_down.len() >= quorum && r.round.votes_down as usize == valid_down.len(),
        &format!(
            "failover round {} has {} valid down votes stored (round says {}), quorum {quorum}",
            r.id,
            valid_down.len(),
            r.round.votes_down
        ),
    );
    for v in &valid_down {
        let raw = v
            .vote_envelope
            .as_ref()
            .expect("a valid vote keeps its raw envelope");
        check(
            lab,
            !raw.is_empty() && !v.request_envelope.is_empty(),
            "vote stored without its bytes",
        );
    }
    let out = lab.coordinator_cli(&["verify-history", "--service", "www"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    check(
        lab,
        out.status.success(),
        &format!("verify-history failed: {text}"),
    );
    r.id
}

/// The DNS changes: exactly the sides given, each applied once.
fn assert_dns_changes(lab: &Lab, sides: &[&str]) {
    let changes = lab.history().dns_changes();
    let got: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| (c.to_side.as_str(), c.status.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = sides.iter().map(|s| (*s, "applied")).collect();
    check(
        lab,
        got == want,
        &format!("DNS changes {got:?}, expected {want:?}"),
    );
}

#[test]
fn s01_primary_web_killed_fails_over() {
    let mut lab = Lab::start(LabOptions::new(1));
    lab.kill_web(Host::Primary);
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    assert_failover_round(&lab, 2);
    assert_dns_changes(&lab, &["backup"]);
    // The API tells the same story as the database.
    let st = lab.status().unwrap();
    check(
        &lab,
        st["active"] == "backup",
        &format!("status after failover: {st}"),
    );
}

#[test]
fn s02_primary_link_down_fails_over() {
    let lab = Lab::start(LabOptions::new(2));
    lab.link_down(Host::Primary);
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    assert_failover_round(&lab, 2);
    assert_dns_changes(&lab, &["backup"]);
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn s03_primary_back_fails_back_only_after_hold_down() {
    let opts = LabOptions::new(3);
    let (recover_after, interval) = (opts.coordinator.recover_after, opts.coordinator.interval);
    let mut lab = Lab::start(opts);
    lab.kill_web(Host::Primary);
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);

    let back_ms = now_ms();
    lab.start_web(Host::Primary);
    // The hold-down: `recover_after` consecutive up probes, the first of which can come at
    // once, so no failback before (recover_after - 1) intervals. Watch the client meanwhile.
    let hold = interval * (recover_after - 1);
    let watched = hold.saturating_sub(Duration::from_millis(500));
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Backup),
        watched,
        "failback before the hold-down",
    );
    client_sees(&lab, Host::Primary, FAILOVER_DEADLINE);

    let h = lab.history();
    let fb = h.rounds_with("failback");
    check(
        &lab,
        fb.len() == 1,
        &format!("expected one failback round, got {}", fb.len()),
    );
    let r = &fb[0].round;
    check(
        &lab,
        r.trigger == "primary-up" && r.changed_dns,
        &format!("failback round: {r:?}"),
    );
    let after = r.at_ms.saturating_sub(back_ms);
    check(
        &lab,
        after + 50 >= hold.as_millis() as u64,
        &format!("failback {after} ms after the primary came back; the hold-down is {hold:?}"),
    );
    check(
        &lab,
        r.reason.contains(&format!(
            "primary up for {recover_after} consecutive probes"
        )),
        &format!("failback reason: {}", r.reason),
    );
    assert_dns_changes(&lab, &["backup", "primary"]);
}

/// Polls the history until a round with `outcome` exists; returns it.
fn wait_round(lab: &Lab, outcome: &str, within: Duration) -> tests::lab::History {
    let r = tests::lab::poll_until(
        &format!("a {outcome} round in the history"),
        within,
        Duration::from_millis(200),
        |last| {
            let h = lab.history();
            let n = h.rounds_with(outcome).len();
            *last = format!("{} rounds, none {outcome}", h.rounds().len());
            (n > 0).then_some(h)
        },
    );
    match r {
        Ok(h) => h,
        Err(e) => panic!("{e}\n--- history ---\n{}", lab.timeline()),
    }
}

/// No failover round and no DNS change so far.
fn assert_no_change(lab: &Lab) {
    let h = lab.history();
    let switched: Vec<_> = h
        .rounds()
        .into_iter()
        .filter(|r| r.round.changed_dns)
        .collect();
    check(
        lab,
        switched.is_empty(),
        &format!("rounds that changed DNS: {switched:?}"),
    );
    let changes = h.dns_changes();
    check(
        lab,
        changes.is_empty(),
        &format!("DNS changes: {changes:?}"),
    );
}

#[test]
fn s04_backup_cut_off_but_dns_no_change_coordinator_isolated() {
    let lab = Lab::start(LabOptions::new(4));
    lab.isolate_except(Host::Backup, &[Host::Dns]);
    let h = wait_round(&lab, "coordinator-isolated", FAILOVER_DEADLINE);
    let r = &h.rounds_with("coordinator-isolated")[0];
    check(
        &lab,
        r.round.votes_up == 0
            && r.round.votes_down == 0
            && r.round.votes_missing == 3
            && !r.round.primary_up,
        &format!("isolated round: {:?}", r.round),
    );
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Primary),
        Duration::from_secs(6),
        "backup cut off",
    );
    assert_no_change(&lab);
    let outcomes: Vec<String> = lab
        .history()
        .rounds()
        .into_iter()
        .map(|r| r.round.outcome.to_string())
        .collect();
    check(
        &lab,
        outcomes.iter().all(|o| o == "coordinator-isolated"),
        &format!("every round should be coordinator-isolated: {outcomes:?}"),
    );
}

#[test]
fn s05_backup_primary_path_cut_no_change_disputed() {
    let lab = Lab::start(LabOptions::new(5));
    lab.cut_path(Host::Backup, Host::Primary);
    let h = wait_round(&lab, "disputed", FAILOVER_DEADLINE);
    let r = &h.rounds_with("disputed")[0];
    check(
        &lab,
        r.round.votes_up >= 1
            && r.round.votes_down == 0
            && !r.round.primary_up
            && r.round.backup_up,
        &format!("disputed round: {:?}", r.round),
    );
    let votes = h.votes(r.id);
    check(
        &lab,
        votes
            .iter()
            .filter(|v| v.valid && v.verdict.as_deref() == Some("up"))
            .count()
            == r.round.votes_up as usize,
        &format!("disputed round {} votes: {votes:?}", r.id),
    );
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Primary),
        Duration::from_secs(6),
        "only backup <-> primary cut",
    );
    assert_no_change(&lab);
}

#[test]
fn s06_one_witness_down_two_of_three_still_fail_over() {
    let mut lab = Lab::start(LabOptions::new(6));
    lab.link_down(Host::Witness(3));
    lab.kill_web(Host::Primary);
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    let id = assert_failover_round(&lab, 2);
    let r = lab
        .history()
        .rounds()
        .into_iter()
        .find(|r| r.id == id)
        .unwrap();
    check(
        &lab,
        r.round.votes_down == 2 && r.round.votes_missing == 1,
        &format!("failover round: {:?}", r.round),
    );
    let votes = lab.history().votes(id);
    let w3 = votes.iter().find(|v| v.witness == "w3").unwrap();
    check(
        &lab,
        !w3.valid && w3.vote_envelope.is_none(),
        &format!("w3's vote: {w3:?}"),
    );
    assert_dns_changes(&lab, &["backup"]);
}

#[test]
fn s07_rogue_witness_votes_stored_invalid_never_count() {
    let mut opts = LabOptions::new(7);
    opts.rogue_witness = Some(3);
    let mut lab = Lab::start(opts);
    // Only w1 and the rogue w3 can answer: if the rogue's vote counted, 2 "down" votes would
    // make quorum and fail over.
    lab.link_down(Host::Witness(2));
    lab.kill_web(Host::Primary);
    let r = tests::lab::poll_until(
        "two rounds where w1's down vote and the rogue's would have made quorum",
        FAILOVER_DEADLINE,
        Duration::from_millis(200),
        |last| {
            let all = lab.history().rounds();
            *last = format!("{} rounds", all.len());
            let tipping: Vec<_> = all
                .into_iter()
                .filter(|r| r.round.votes_down == 1 && r.round.votes_invalid == 1)
                .collect();
            (tipping.len() >= 2).then_some(tipping)
        },
    );
    let rounds = match r {
        Ok(v) => v,
        Err(e) => panic!("{e}\n--- history ---\n{}", lab.timeline()),
    };
    for r in &rounds {
        check(
            &lab,
            r.round.outcome == "insufficient-votes" && !r.round.changed_dns,
            &format!(
                "1 valid + 1 rogue down vote must not be quorum: {:?}",
                r.round
            ),
        );
    }
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Primary),
        Duration::from_secs(3),
        "rogue vote counted",
    );
    assert_no_change(&lab);

    lab.link_up(Host::Witness(2));
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    let id = assert_failover_round(&lab, 2);
    let h = lab.history();
    let r = h.rounds().into_iter().find(|r| r.id == id).unwrap();
    check(
        &lab,
        r.round.votes_down == 2 && r.round.votes_invalid == 1,
        &format!("failover round: {:?}", r.round),
    );
    let rogue = h.votes(id).into_iter().find(|v| v.witness == "w3").unwrap();
    check(
        &lab,
        !rogue.valid
            && rogue.verdict.is_none()
            && rogue.vote_envelope.as_ref().is_some_and(|e| !e.is_empty())
            && rogue
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("invalid")),
        &format!("the rogue's vote must be stored, as received, as invalid: {rogue:?}"),
    );
    // Offline re-verification agrees: the rogue's votes still fail, nothing else does.
    let out = lab.coordinator_cli(&["verify-history", "--service", "www"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let confirmed: u64 = text
        .split("invalid as recorded")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    check(
        &lab,
        out.status.success() && confirmed >= 3,
        &format!("verify-history: {text}"),
    );
}

#[test]
fn s08_primary_flapping_flips_limited_by_damping_alert() {
    let mut opts = LabOptions::new(8);
    opts.coordinator.recover_after = 2;
    opts.coordinator.max_flips = 3;
    opts.coordinator.flap_window = Duration::from_secs(600);
    let max_flips = opts.coordinator.max_flips as usize;
    let mut lab = Lab::start(opts);
    let (pri, bak) = (a(&lab, Host::Primary), a(&lab, Host::Backup));
    let mut seen = vec![pri.clone()];
    let sample = |lab: &Lab, seen: &mut Vec<Vec<IpAddr>>| {
        if let Ok(ans) = lab.client_query(Rtype::A) {
            assert!(ans == pri || ans == bak, "client sees {ans:?}");
            if seen.last() != Some(&ans) {
                seen.push(ans);
            }
        }
    };
    // Down 4 s, up 4 s, for a minute: undamped, that is a failover and a failback each cycle.
    let start = Instant::now();
    let mut down = false;
    while start.elapsed() < Duration::from_secs(60) {
        if down {
            lab.start_web(Host::Primary);
        } else {
            lab.kill_web(Host::Primary);
        }
        down = !down;
        let phase = Instant::now();
        while phase.elapsed() < Duration::from_secs(4) {
            sample(&lab, &mut seen);
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    if down {
        lab.start_web(Host::Primary);
    }
    let flips = seen.len() - 1;
    lab.log(&format!("client saw {flips} flips: {seen:?}"));
    check(
        &lab,
        (1..=max_flips).contains(&flips),
        &format!("client saw {flips} flips, at most {max_flips} allowed"),
    );

    let h = lab.history();
    let changes = h.dns_changes();
    check(
        &lab,
        changes.len() == max_flips && changes.iter().all(|c| c.status == "applied"),
        &format!("expected exactly {max_flips} applied DNS changes, got {changes:?}"),
    );
    let damped = h.rounds_with("damped");
    check(&lab, !damped.is_empty(), "no damped round while flapping");
    let alerts = h.alerts("damped");
    check(
        &lab,
        alerts.len() == 1,
        &format!("expected one damped alert (latched), got {alerts:?}"),
    );
}

#[test]
fn s09_bind_down_change_pending_retried_applied_when_back() {
    let mut lab = Lab::start(LabOptions::new(9));
    lab.stop_bind();
    lab.kill_web(Host::Primary);
    let pending = tests::lab::poll_until(
        "a pending DNS change retried at least twice",
        FAILOVER_DEADLINE,
        Duration::from_millis(200),
        |last| {
            let c = lab.history().dns_changes();
            *last = format!("{c:?}");
            c.into_iter()
                .find(|c| c.status == "pending" && c.attempts >= 2 && c.last_error.is_some())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- history ---\n{}", lab.timeline()));
    check(
        &lab,
        pending.to_side == "backup",
        &format!("pending change: {pending:?}"),
    );
    let st = lab.status().unwrap();
    check(
        &lab,
        st["dns_pending"] == true && st["active"] == "backup",
        &format!("status: {st}"),
    );
    lab.log(&format!(
        "change {} pending after {} attempts: {:?}",
        pending.id, pending.attempts, pending.last_error
    ));

    lab.start_bind();
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    let h = lab.history();
    let changes = h.dns_changes();
    check(
        &lab,
        changes.len() == 1
            && changes[0].id == pending.id
            && changes[0].status == "applied"
            && changes[0].attempts > pending.attempts,
        &format!(
            "expected change {} applied after more attempts, got {changes:?}",
            pending.id
        ),
    );
    let applied = h
        .events()
        .into_iter()
        .filter(|e| e.kind == "dns-applied")
        .count();
    check(&lab, applied == 1, &format!("{applied} dns-applied events"));
    assert_failover_round(&lab, 2);
    assert_eq!(
        lab.soa_serial().unwrap(),
        2,
        "exactly one UPDATE reached BIND"
    );
}

#[test]
fn s10_coordinator_sigkilled_after_decision_converges_once() {
    let mut lab = Lab::start(LabOptions::new(10));
    // Keep the decided change from reaching DNS, then kill the coordinator right after it is
    // recorded (pending, attempted once).
    lab.stop_bind();
    lab.kill_web(Host::Primary);
    let pending = tests::lab::poll_until(
        "the failover decision (a pending DNS change)",
        FAILOVER_DEADLINE,
        Duration::from_millis(50),
        |_| {
            lab.history()
                .dns_changes()
                .into_iter()
                .find(|c| c.status == "pending")
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n--- history ---\n{}", lab.timeline()));
    lab.kill_coordinator();
    lab.start_bind();
    assert_eq!(
        lab.soa_serial().unwrap(),
        1,
        "nothing applied while the coordinator was dead"
    );
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Primary),
        Duration::from_secs(1),
        "no coordinator running",
    );
    lab.start_coordinator();
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    // Let the restarted coordinator run a while: nothing more may happen.
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Backup),
        Duration::from_secs(4),
        "after the restart",
    );

    let h = lab.history();
    let changes = h.dns_changes();
    check(
        &lab,
        changes.len() == 1 && changes[0].id == pending.id && changes[0].status == "applied",
        &format!(
            "expected the one pending change {} applied, got {changes:?}",
            pending.id
        ),
    );
    assert_failover_round(&lab, 2);
    assert_eq!(
        lab.soa_serial().unwrap(),
        2,
        "the change reached BIND exactly once"
    );
    let st = lab.status().unwrap();
    check(
        &lab,
        st["active"] == "backup" && st["dns_pending"] == false,
        &format!("status: {st}"),
    );
}

#[test]
fn s11_primary_and_backup_both_down_no_change_alert() {
    let mut lab = Lab::start(LabOptions::new(11));
    lab.kill_web(Host::Backup);
    lab.kill_web(Host::Primary);
    let h = wait_round(&lab, "both-down", FAILOVER_DEADLINE);
    let r = &h.rounds_with("both-down")[0];
    check(
        &lab,
        r.round.votes_down >= 2 && !r.round.backup_up && !r.round.changed_dns,
        &format!("both-down round: {:?}", r.round),
    );
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Primary),
        Duration::from_secs(4),
        "both down",
    );
    let alerts = lab.history().alerts("both-down");
    check(
        &lab,
        alerts.len() == 1,
        &format!("expected one both-down alert, got {alerts:?}"),
    );
    assert_no_change(&lab);
}

#[test]
fn s12_backup_link_30pct_loss_60s_primary_healthy_no_failover() {
    let lab = Lab::start(LabOptions::new(12));
    lab.add_loss(Host::Backup, 30);
    lab.assert_client_stays(
        Rtype::A,
        &a(&lab, Host::Primary),
        Duration::from_secs(60),
        "30% loss on the backup's link",
    );
    lab.heal_filters(Host::Backup);
    assert_no_change(&lab);
    // The loss was real: the coordinator saw the primary "down" often enough to hold rounds,
    // and the witnesses' view kept them from switching.
    let rounds = lab.history().rounds();
    let mut outcomes: Vec<&str> = rounds.iter().map(|r| r.round.outcome.as_str()).collect();
    outcomes.dedup();
    lab.log(&format!("{} rounds under loss: {outcomes:?}", rounds.len()));
    check(
        &lab,
        !rounds.is_empty(),
        "30% loss never made the coordinator hold a round: was the loss applied?",
    );
}

#[test]
fn s13_ipv6_aaaa_fails_over_with_a() {
    let mut opts = LabOptions::new(13);
    opts.ipv6 = true;
    let mut lab = Lab::start(opts);
    lab.wait_client_sees(
        Rtype::Aaaa,
        &lab.expect(Host::Primary, Rtype::Aaaa),
        Duration::from_secs(10),
    )
    .unwrap();
    lab.kill_web(Host::Primary);
    client_sees(&lab, Host::Backup, FAILOVER_DEADLINE);
    lab.wait_client_sees(
        Rtype::Aaaa,
        &lab.expect(Host::Backup, Rtype::Aaaa),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("{e}\n--- history ---\n{}", lab.timeline()));
    assert_failover_round(&lab, 2);
    assert_dns_changes(&lab, &["backup"]);
    // One UPDATE switched both record types.
    assert_eq!(lab.soa_serial().unwrap(), 2);
    let change = &lab.history().dns_changes()[0];
    let text = change.change.to_string();
    check(
        &lab,
        text.contains("AAAA") && text.contains("fd31:13::20"),
        &format!("change: {text}"),
    );
}
