//! Table tests of the pure half of readiness: every witness failure gets its code and a fix
//! naming the thing; whose clock is off; the alarm's hysteresis.

use std::time::Duration;

use super::*;
use crate::store::VoteRecord;

fn witness(name: &str) -> WitnessConfig {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    WitnessConfig {
        name: name.into(),
        url: format!("https://{name}.test:8443"),
        key,
        key_id: shared::protocol::KeyId::of(&key),
        cert_sha256: None,
        timeout: Duration::from_secs(1),
        retired: Vec::new(),
    }
}

fn answer(name: &str, failure: Option<Failure>) -> Answer {
    Answer {
        witness: name.into(),
        invalid_code: None,
        vote: None,
        failure,
        record: VoteRecord {
            witness: name.into(),
            witness_key_id: String::new(),
            request_envelope: String::new(),
            vote_envelope: None,
            valid: false,
            verdict: None,
            error: None,
            latency_ms: None,
        },
        latency: Duration::from_millis(3),
        received_at_ms: 1_000_000,
    }
}

fn refused(code: &str, skew_ms: Option<i64>) -> Failure {
    Failure::Refused {
        status: 403,
        code: code.into(),
        reason: format!("because {code}"),
        skew_ms,
    }
}

#[test]
fn every_witness_failure_has_its_code_and_a_fix_naming_the_thing() {
    let w = witness("w2");
    let cases: Vec<(Failure, Asked, &str, &str)> = vec![
        (
            Failure::Unreachable("cannot connect: Connection refused".into()),
            Asked::Primary("192.0.2.10"),
            "witness-unreachable",
            "https://w2.test:8443",
        ),
        (
            Failure::Tls(
                "cannot connect: invalid peer certificate: certificate pin mismatch: the server presents sha256 abcd, the pin is 1234".into(),
            ),
            Asked::Primary("192.0.2.10"),
            "witness-tls-pin",
            "cert_sha256 = \"abcd\"",
        ),
        (
            Failure::Tls("cannot connect: received corrupt message".into()),
            Asked::Primary("192.0.2.10"),
            "witness-tls",
            "HTTPS",
        ),
        (
            refused("unknown_coordinator", None),
            Asked::Primary("192.0.2.10"),
            "witness-untrusted",
            "trusted coordinators",
        ),
        (
            refused("target_not_allowed", None),
            Asked::Primary("192.0.2.10"),
            "witness-target-not-allowed",
            "add 192.0.2.10 to the witness's allowlist",
        ),
        (
            refused("target_not_allowed", None),
            Asked::Backup("198.51.100.20"),
            "backup-not-allowed",
            "add 198.51.100.20",
        ),
        (
            refused("stale", Some(600_000)),
            Asked::Primary("192.0.2.10"),
            "witness-clock",
            "NTP",
        ),
        (
            refused("rate_limited", None),
            Asked::Primary("192.0.2.10"),
            "witness-busy",
            "rate limit",
        ),
        (
            refused("teapot", None),
            Asked::Primary("192.0.2.10"),
            "witness-refused",
            "log",
        ),
        (
            Failure::Invalid {
                code: "bad_signature",
                message: "signature does not verify".into(),
            },
            Asked::Primary("192.0.2.10"),
            "witness-wrong-key",
            "public_key",
        ),
        (
            Failure::Invalid {
                code: "wrong_round",
                message: "round 3, expected 4".into(),
            },
            Asked::Primary("192.0.2.10"),
            "witness-invalid-vote",
            "log",
        ),
    ];
    for (failure, asked, code, fix_has) in cases {
        let r = witness_reason(&w, asked, &failure);
        assert_eq!(r.code, code, "{failure:?}");
        assert_eq!(r.subject, "witness w2");
        assert!(r.fix.contains(fix_has), "{code}: fix {:?}", r.fix);
        assert!(CODES.contains(&r.code), "{code} is listed in CODES");
    }
    let stale = witness_reason(&w, Asked::Primary("x"), &refused("stale", Some(600_000)));
    // skew_ms is issued_at minus the witness's clock: +600 s means the witness is behind.
    assert!(
        stale.message.contains("10 min 0 s behind"),
        "{}",
        stale.message
    );
}

#[test]
fn whose_clock_is_off_and_what_quorum_is_left() {
    let (w1, w2, w3) = (witness("w1"), witness("w2"), witness("w3"));
    let all = [&w1, &w2, &w3];
    let codes = |answers: &[Answer]| -> Vec<(&'static str, String)> {
        witness_reasons("www", &all, answers, Asked::Primary("192.0.2.10"), 2)
            .into_iter()
            .map(|r| (r.code, r.subject))
            .collect()
    };
    // Every witness refuses as stale, the same way: the coordinator's clock is the odd one.
    let stale = |n| answer(n, Some(refused("stale", Some(-600_000))));
    let got = codes(&[stale("w1"), stale("w2"), stale("w3")]);
    assert_eq!(
        got,
        vec![
            ("coordinator-clock", "coordinator".to_string()),
            ("quorum", "service www".to_string())
        ]
    );
    let r = witness_reasons(
        "www",
        &all,
        &[stale("w1"), stale("w2")],
        Asked::Primary("x"),
        2,
    );
    // skew_ms -600 s: our requests were issued 10 min before the witnesses' now: we are behind.
    assert!(
        r[0].message.contains("10 min 0 s behind theirs"),
        "{}",
        r[0].message
    );
    // One stale witness among valid ones: that witness's clock.
    let got = codes(&[answer("w1", None), answer("w2", None), stale("w3")]);
    assert_eq!(got, vec![("witness-clock", "witness w3".to_string())]);
    // All fine: no reason. One silent, quorum still met: the witness's reason only.
    assert!(codes(&[answer("w1", None), answer("w2", None), answer("w3", None)]).is_empty());
    let silent = answer("w3", Some(Failure::Unreachable("timeout".into())));
    let got = codes(&[answer("w1", None), answer("w2", None), silent.clone()]);
    assert_eq!(got, vec![("witness-unreachable", "witness w3".to_string())]);
    let got = codes(&[answer("w1", None), silent.clone(), silent]);
    assert_eq!(got.last().unwrap().0, "quorum");
}

fn reason(code: &'static str, subject: &str) -> Reason {
    Reason::new(code, subject, "m", "f")
}

#[test]
fn the_alarm_waits_alert_after_both_ways_and_never_fires_on_a_blip() {
    let a = reason("witness-unreachable", "witness w2");
    let b = reason("dns-credentials", "dns 127.0.0.1:53");
    let mut alarm = Alarm::new(1000);
    // A blip shorter than alert_after: nothing.
    assert_eq!(alarm.update(0, std::slice::from_ref(&a)), None);
    assert_eq!(alarm.update(500, &[]), None);
    assert_eq!(alarm.update(1500, &[]), None);
    // Held for alert_after: one alert with the reason.
    assert_eq!(alarm.update(2000, std::slice::from_ref(&a)), None);
    assert_eq!(alarm.update(2999, std::slice::from_ref(&a)), None);
    assert_eq!(
        alarm.update(3000, std::slice::from_ref(&a)),
        Some(Alert::NotReady {
            reasons: vec![a.clone()],
            more: false
        })
    );
    assert!(alarm.alerting());
    assert_eq!(alarm.update(3500, std::slice::from_ref(&a)), None);
    // A second reason confirmed while alerting: one more alert with only the new one.
    assert_eq!(alarm.update(3600, &[a.clone(), b.clone()]), None);
    assert_eq!(
        alarm.update(4600, &[a.clone(), b.clone()]),
        Some(Alert::NotReady {
            reasons: vec![b.clone()],
            more: true
        })
    );
    // Fixed: "ready again" only after alert_after without a reason, once.
    assert_eq!(alarm.update(5000, &[]), None);
    assert_eq!(alarm.update(5500, std::slice::from_ref(&a)), None);
    assert_eq!(alarm.update(6000, &[]), None);
    assert_eq!(alarm.update(6999, &[]), None);
    assert_eq!(alarm.update(7000, &[]), Some(Alert::ReadyAgain));
    assert_eq!(alarm.update(9000, &[]), None);
    assert!(!alarm.alerting());
}

#[test]
fn spells_confirm_after_their_time_and_end_when_gone() {
    let a = reason("witness-unreachable", "witness w2");
    let mut s = Spells::new(120_000);
    assert_eq!(
        s.update(0, std::slice::from_ref(&a)),
        SpellChanges::default()
    );
    let ch = s.update(120_000, std::slice::from_ref(&a));
    assert_eq!(ch.confirmed, vec![a.clone()]);
    assert_eq!(s.oldest(), Some(0));
    let ch = s.update(130_000, &[]);
    assert_eq!(ch.ended, vec![a]);
    assert!(s.confirmed().is_empty());
}

#[test]
fn a_resumed_alarm_sends_ready_again_once_the_fix_holds() {
    // A service restarted by the reload that fixed it: its alert is out, no reason remains.
    let mut alarm = Alarm::resumed(1000);
    assert!(alarm.alerting());
    assert_eq!(alarm.update(0, &[]), None);
    assert_eq!(alarm.update(1000, &[]), Some(Alert::ReadyAgain));
    let memory = AlertMemory::default();
    memory.set("www", true);
    assert!(memory.alerting("www") && !memory.alerting("blog"));
    memory.set("www", false);
    assert!(!memory.alerting("www"));
}
