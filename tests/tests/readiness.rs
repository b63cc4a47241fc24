//! Issue 12's must-show, with the real binaries on loopback (`tests::rig`: real BIND with TSIG,
//! two real witnesses and the coordinator, each under libfaketime so a clock can be moved while
//! it runs, a webhook sink): each misconfiguration that used to pass `check` and start without a
//! word is named, with its fix, by `check --online`; injected into a running coordinator it raises
//! a `not-ready` notice within two readiness intervals, before any outage; fixing it sends one
//! `ready-again`. The messages are the table in `docs/readiness.md`.
//!
//! The rigs run one at a time (a lock): the "within two readiness intervals" bound is measured,
//! and two cores shared by several rigs would measure the machine, not the coordinator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tests::lab::poll_until;
use tests::rig::{PRIMARY, Proc, Rig, RigOptions, TSIG_KEY};

/// The readiness settings under test: checks every 3 s, alerts after 1 s (worst case to an
/// alert: one check interval, one `alert_after`, one service interval: 4.5 s < 2 × 3 s).
const READINESS: &str = "[readiness]\ninterval = \"3s\"\nalert_after = \"1s\"\nwitness_alert_after = \"3s\"\ndisputed_alert_after = \"10s\"\n";
const READINESS_INTERVAL: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(30);

static ONE_RIG_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_RIG_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn rig() -> Rig {
    Rig::start(RigOptions {
        extra_toml: READINESS.into(),
        ..Default::default()
    })
}

fn readiness(rig: &Rig) -> serde_json::Value {
    rig.try_api_get("/v1/services/www")
        .map(|s| s["readiness"].clone())
        .unwrap_or_default()
}

/// Waits until the service is `ready` with a DNS proof in hand (the first readiness check ran).
fn wait_ready(rig: &Rig) {
    poll_until(
        "the service to be ready",
        WAIT,
        Duration::from_millis(50),
        |last| {
            let r = readiness(rig);
            *last = r.to_string();
            (r["verdict"] == "ready" && r["dns"]["proof"].is_string()).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.coordinator_log()));
}

fn stdout(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn notices_of(rig: &Rig, kind: &str) -> Vec<serde_json::Value> {
    rig.notices()
        .into_iter()
        .filter(|n| n["kind"] == kind)
        .collect()
}

/// One misconfiguration, end to end:
/// - the rig starts healthy and `ready`;
/// - `inject` breaks it; a `not-ready` notice whose message has `alert_has` arrives within two
///   readiness intervals;
/// - `check --online` exits non-zero, printing `online_has` on a FAIL line with a fix;
/// - `fix` repairs it; exactly one `ready-again` follows, and the verdict is `ready`.
fn misconfiguration(
    inject: impl FnOnce(&mut Rig),
    alert_has: &[&str],
    online_has: &[&str],
    fix: impl FnOnce(&mut Rig),
) -> (String, String) {
    let _one = serial();
    let mut rig = rig();
    wait_ready(&rig);
    assert!(
        notices_of(&rig, "not-ready").is_empty(),
        "{:?}",
        rig.notices()
    );

    inject(&mut rig);
    let t0 = Instant::now();
    let alert = rig.wait_notice(
        |n| {
            n["kind"] == "not-ready"
                && alert_has
                    .iter()
                    .all(|h| n["message"].as_str().unwrap_or("").contains(h))
        },
        WAIT,
    );
    let took = t0.elapsed();
    let message = alert["message"].as_str().unwrap().to_string();
    assert!(
        took <= 2 * READINESS_INTERVAL,
        "the not-ready notice took {took:?}, more than two readiness intervals: {message}"
    );
    assert_eq!(alert["service"], "www");
    assert!(
        message.contains("fix: "),
        "every reason carries its fix: {message}"
    );

    let out = rig.check_online(&[]);
    let text = stdout(&out);
    assert!(!out.status.success(), "check --online passed:\n{text}");
    let fail_line = text
        .lines()
        .skip_while(|l| !(l.starts_with("FAIL") && online_has.iter().all(|h| l.contains(h))))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        fail_line.contains("fix: "),
        "no FAIL line with {online_has:?} and a fix:\n{text}"
    );

    fix(&mut rig);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rig.wait_notice(|n| n["kind"] == "ready-again", WAIT)
    }))
    .is_err()
    {
        panic!(
            "no ready-again; readiness now: {}\n{}",
            readiness(&rig),
            rig.coordinator_log()
        );
    }
    // One more readiness check after the notice: still exactly one "ready again".
    let after = readiness(&rig)["dns"]["checked_at_ms"]
        .as_u64()
        .unwrap_or(0);
    poll_until(
        "one more readiness check",
        WAIT,
        Duration::from_millis(50),
        |last| {
            let r = readiness(&rig);
            *last = r.to_string();
            (r["dns"]["checked_at_ms"].as_u64().unwrap_or(0) > after && r["verdict"] == "ready")
                .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        notices_of(&rig, "ready-again").len(),
        1,
        "{:?}",
        rig.notices()
    );
    println!("ALERT: {message}\nONLINE: {fail_line}");
    (message, fail_line)
}

// ---------------------------------------------------------------------------------------
// The DNS side

#[test]
fn a_wrong_tsig_secret() {
    let secret = std::cell::RefCell::new(String::new());
    misconfiguration(
        |rig| {
            *secret.borrow_mut() = rig.coordinator_tsig_secret().to_string();
            // Someone rotated the key on the server; the coordinator still has the old secret.
            rig.bind_set_secret("c2VjcmV0LXRoYXQtdGhlLWNvb3JkaW5hdG9yLWxhY2tzLTEyMzQ1Ng==");
        },
        &["BADSIG", "tsig_secret_file"],
        &["BADSIG"],
        |rig| rig.bind_set_secret(&secret.borrow()),
    );
}

#[test]
fn a_wrong_tsig_key_name() {
    misconfiguration(
        |rig| rig.bind_rename_key("renamed-on-the-server"),
        &["BADKEY", "tsig_key_name"],
        &["BADKEY"],
        |rig| rig.bind_rename_key(TSIG_KEY),
    );
}

#[test]
fn an_unreachable_dns_server() {
    misconfiguration(
        |rig| rig.bind_stop(),
        &["cannot reach the DNS server"],
        &["cannot reach the DNS server"],
        |rig| rig.bind_start(),
    );
}

#[test]
fn a_zone_the_server_does_not_serve() {
    misconfiguration(
        |rig| rig.bind_drop_zone(),
        &["does not serve zone example.test."],
        &["does not serve zone example.test."],
        |rig| rig.bind_restore_zone(),
    );
}

#[test]
fn a_record_changed_by_hand_while_the_primary_is_active() {
    let third: IpAddr = "203.0.113.99".parse().unwrap();
    misconfiguration(
        |rig| rig.hand_edit_www(third),
        &["203.0.113.99", "changed by hand"],
        &["203.0.113.99"],
        |rig| rig.hand_edit_www(IpAddr::V4(PRIMARY)),
    );
}

// ---------------------------------------------------------------------------------------
// The witnesses

#[test]
fn a_witness_whose_allowlist_lacks_the_primary() {
    let before = std::cell::RefCell::new(None);
    misconfiguration(
        |rig| {
            *before.borrow_mut() = Some(rig.witness_setup(1).clone());
            rig.restart_witness_with(1, |w| w.drop_primary_from_allowlist());
        },
        &["witness w1", "refuses to probe the primary", "allowlist"],
        &["witness w1", "refuses to probe the primary"],
        |rig| {
            let before = before.borrow_mut().take().unwrap();
            rig.restart_witness_with(1, |w| *w = before);
        },
    );
}

#[test]
fn a_witness_that_does_not_trust_this_coordinator() {
    let before = std::cell::RefCell::new(None);
    misconfiguration(
        |rig| {
            *before.borrow_mut() = Some(rig.witness_setup(1).clone());
            rig.restart_witness_with(1, |w| w.distrust_coordinator());
        },
        &["witness w1", "does not trust this coordinator"],
        &["witness w1", "does not trust this coordinator"],
        |rig| {
            let before = before.borrow_mut().take().unwrap();
            rig.restart_witness_with(1, |w| *w = before);
        },
    );
}

#[test]
fn a_witness_whose_clock_is_ten_minutes_off() {
    misconfiguration(
        |rig| rig.shift_clock(Proc::Witness(1), 600),
        &[
            "witness w1",
            "clock is 10 min",
            "ahead of this coordinator's",
        ],
        &["witness w1", "clock is 10 min"],
        |rig| rig.shift_clock(Proc::Witness(1), -600),
    );
}

#[test]
fn the_coordinators_own_clock_ten_minutes_off() {
    misconfiguration(
        |rig| rig.shift_clock(Proc::Coordinator, 600),
        &["this coordinator's clock is 10 min", "ahead of theirs"],
        &["coordinator clock", "ahead of"],
        |rig| rig.shift_clock(Proc::Coordinator, -600),
    );
}

#[test]
fn a_wrong_certificate_pin() {
    misconfiguration(
        // The witness got a new certificate; the coordinator still pins the old one.
        |rig| rig.restart_witness_with(1, |w| w.regenerate_tls_cert()),
        &["witness w1", "does not match cert_sha256"],
        &["witness w1", "certificate pin mismatch"],
        // The fix an operator makes: pin the new certificate and reload.
        |rig| {
            let pin = rig.witness(1).cert_sha256.clone();
            rig.rewrite_coordinator_config(|c| c.witnesses[0].cert_sha256 = Some(pin));
            rig.sighup_coordinator();
        },
    );
}

#[test]
fn a_wrong_witness_public_key() {
    misconfiguration(
        |rig| rig.restart_witness_with(1, |w| w.regenerate_signing_key()),
        &["witness w1", "do not verify with the configured public_key"],
        &["witness w1", "key"],
        |rig| {
            let key = rig.witness(1).public_key.clone();
            rig.rewrite_coordinator_config(|c| c.witnesses[0].public_key = key);
            rig.sighup_coordinator();
        },
    );
}

#[test]
fn a_witness_that_is_stopped() {
    misconfiguration(
        |rig| rig.stop_witness(1),
        &["witness w1", "no answer from"],
        &["witness w1", "no answer from"],
        |rig| rig.start_witness(1),
    );
}

// ---------------------------------------------------------------------------------------
// What `check` itself refuses now, and the one-writer lock

/// A witness given as `http://` never runs: `check` (and so `check --online`) names it, and a
/// running coordinator refuses it on reload with an alert, keeping the old config.
#[test]
fn a_witness_configured_with_an_http_url() {
    let _one = serial();
    let mut rig = rig();
    wait_ready(&rig);
    let good = rig.config().witnesses[0].url.clone();
    let plain = good.replace("https://", "http://");
    rig.rewrite_coordinator_config(|c| c.witnesses[0].url = plain.clone());
    let out = rig.check_online(&[]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("witness[0].url") && text.contains("plain HTTP") && text.contains("https://"),
        "{text}"
    );
    rig.sighup_coordinator();
    let n = rig.wait_notice(
        |n| {
            n["kind"] == "alert"
                && n["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("config reload refused")
        },
        WAIT,
    );
    let msg = n["message"].as_str().unwrap();
    assert!(msg.contains("plain HTTP"), "{msg}");
    // The old config runs on: still ready, both witnesses voting.
    assert_eq!(readiness(&rig)["verdict"], "ready");
    rig.wait_round(2, WAIT);
    println!("ALERT: {msg}");
}

#[test]
fn a_second_coordinator_on_the_same_history() {
    let _one = serial();
    let rig = rig();
    wait_ready(&rig);
    let lock = coordinator::lock::lock_path(&rig.database_path());
    let first_pid = std::fs::read_to_string(&lock).unwrap().trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut second = rig.start_second_coordinator_with(|c| {
        c.api = format!("listen = \"127.0.0.1:{port}\"\ntoken_file = \"api.token\"\n");
    });
    let status = second
        .wait_exit(WAIT)
        .expect("the second coordinator exits");
    assert!(!status.success());
    let log = second.log();
    let db = rig.database_path().display().to_string();
    assert!(
        log.contains(&db) && log.contains(&format!("pid {first_pid}")),
        "the refusal names the file and the holder: {log}"
    );
    // check --online names the holder (a warning: on a live system it is normally the own
    // daemon); the first coordinator keeps running and ready.
    let out = rig.check_online(&[]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "WARN history: {db} is in use by a running coordinator (pid {first_pid})"
        )),
        "{text}"
    );
    assert_eq!(readiness(&rig)["verdict"], "ready");
    println!("REFUSAL: {log}");
}

// ---------------------------------------------------------------------------------------
// Healthy, and what the running coordinator shows

#[test]
fn a_healthy_setup_passes_check_online_and_shows_ready_everywhere() {
    let _one = serial();
    let rig = rig();
    wait_ready(&rig);
    let out = rig.check_online(&[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for want in [
        "ok   witness w1",
        "ok   witness w2",
        "key matches",
        "TLS pin matches",
        "clock skew",
        "www: primary up",
        "www: backup up",
        "accepted a signed UPDATE",
        "ok   dns server ns1.example.test.",
        "online check passed",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // The API: verdict, the DNS proof, what each server serves.
    let r = readiness(&rig);
    assert_eq!(r["verdict"], "ready");
    assert!(r["reasons"].as_array().unwrap().is_empty());
    let servers = r["dns"]["servers"].as_array().unwrap();
    assert!(
        !servers.is_empty() && servers.iter().all(|s| s["agrees"] == true),
        "{r}"
    );
    // /metrics: ready, and the witnesses' reliability.
    poll_until(
        "reliability metrics",
        WAIT,
        Duration::from_millis(100),
        |last| {
            let m = rig.metrics().ok()?;
            *last = m.clone();
            (m.contains("quorate_ready{service=\"www\"} 1")
                && m.contains("quorate_witness_answer_ratio{witness=\"w1\"} 1")
                && m.contains("quorate_witness_latency_p99_seconds{witness=\"w2\"}"))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Per-witness reliability in the API.
    let w = rig.api_get("/v1/witnesses");
    let w1 = &w["witnesses"][0];
    assert_eq!(w1["name"], "w1", "{w}");
    assert!(w1["reliability"]["asked"].as_u64().unwrap() > 0, "{w}");
    assert_eq!(w1["reliability"]["answer_rate"], 1.0, "{w}");
    assert!(
        w1["reliability"]["latency_p99_ms"].as_f64().is_some(),
        "{w}"
    );
    // status, from the running daemon.
    let out = rig.coordinator_cli(&["status"]);
    let text = stdout(&out);
    assert!(
        text.contains("www") && text.contains("ready since"),
        "{text}"
    );
}
