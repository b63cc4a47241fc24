//! The multi-host lab scenarios: separate hosts (network namespaces), the real
//! `quorate-witness` and `quorate-coordinator` binaries, a real BIND 9, a client asking it with
//! `dig`, and a network that breaks. Each test asserts what the client sees in DNS and what
//! the coordinator's history says. Needs root; build the binaries first (`cargo build --bins`).
//! See docs/testing.md.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

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
    check(lab, rounds.len() == 1, &format!("expected exactly one failover round, got {}", rounds.len()));
    let r = &rounds[0];
    check(lab, r.round.changed_dns, "the failover round did not change DNS");
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
        let raw = v.vote_envelope.as_ref().expect("a valid vote keeps its raw envelope");
        check(lab, !raw.is_empty() && !v.request_envelope.is_empty(), "vote stored without its bytes");
    }
    let out = lab.coordinator_cli(&["verify-history", "--service", "www"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    check(lab, out.status.success(), &format!("verify-history failed: {text}"));
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
    check(lab, got == want, &format!("DNS changes {got:?}, expected {want:?}"));
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
    check(&lab, st["active"] == "backup", &format!("status after failover: {st}"));
}
