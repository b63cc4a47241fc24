//! The readiness rig (`tests::rig`) against today's binaries: everything starts and the
//! coordinator finishes rounds with both witnesses' up votes; the webhook sink records a
//! notice; `check`, a second coordinator, `nsupdate` by hand and the API work; libfaketime
//! really moves the wall clock of a *running* witness and coordinator (their `Date` headers,
//! the coordinator's tick times, the witnesses' skew refusals) and back; and the fault verbs
//! (witness key, certificate, allowlist and trust; BIND secret, key name, zone, stop/start;
//! a site down) take effect.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::lab::poll_until;
use tests::rig::{BACKUP, PRIMARY, Proc, Rig, RigOptions, SERVICE, Site, parse_http_date};

const WAIT: Duration = Duration::from_secs(30);

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until a round's tally satisfies `pred`; returns the status.
fn wait_tally(
    rig: &Rig,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    poll_until(what, WAIT, Duration::from_millis(50), |last| {
        let s = rig.try_api_get(&format!("/v1/services/{SERVICE}")).ok()?;
        *last = s.to_string();
        pred(&s).then_some(s)
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Unanswered plus invalid vote requests to `witness` so far (the coordinator's metrics:
/// a healthy service writes no rounds, so the history has none to look at).
fn bad_votes(rig: &Rig, witness: &str) -> f64 {
    let l = [("witness", witness)];
    rig.metric_sum("quorate_votes_missing_total", &l).unwrap()
        + rig.metric_sum("quorate_invalid_votes_total", &l).unwrap()
}

/// Waits until two more of `witness`'s votes are missing or invalid than `before`, and
/// the tally shows at most `up` up votes; returns the metrics lines about `witness`.
fn wait_failing(rig: &Rig, witness: &str, before: f64, up: u64) -> String {
    poll_until(
        &format!("{witness}'s votes to fail"),
        WAIT,
        Duration::from_millis(50),
        |last| {
            let bad = bad_votes(rig, witness);
            let s = rig.try_api_get(&format!("/v1/services/{SERVICE}")).ok()?;
            *last = format!("{bad} bad votes (before: {before}), status {s}");
            (bad >= before + 2.0 && s["last_votes"]["up"].as_u64()? <= up).then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    rig.metrics()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&format!("witness=\"{witness}\"")))
        .filter(|l| l.contains("missing") || l.contains("invalid"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn a_panicking_test_leaves_no_process_and_no_folder() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rig = Rig::start(RigOptions::default());
        seen = Some((
            rig.pids(),
            rig.dir().to_path_buf(),
            rig.bind().dir().to_path_buf(),
        ));
        panic!("a failing readiness test");
    }));
    assert!(result.is_err());
    let (pids, dir, bind_dir) = seen.unwrap();
    assert_eq!(pids.len(), 3, "coordinator and two witnesses");
    for pid in pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("quorate-"),
            "process {pid} still runs"
        );
    }
    assert!(!dir.exists(), "{} is left", dir.display());
    assert!(!bind_dir.exists(), "{} is left", bind_dir.display());
}

#[test]
fn http_dates_parse() {
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 CET"), None);
}

#[test]
fn rig_starts_everything_and_the_coordinator_rounds() {
    let t = Instant::now();
    let rig = Rig::start(RigOptions::default());
    let started = t.elapsed();
    let status = rig.wait_round(2, WAIT);
    eprintln!(
        "Rig::start took {:.2}s; first round with 2 up votes after {:.2}s",
        started.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(status["active"], "primary", "{status}");
    assert_eq!(status["primary_up"], true, "{status}");
    assert_eq!(status["backup_up"], true, "{status}");

    // The history through the API (a healthy service writes no rounds, the route answers).
    let rounds = rig.api_get(&format!("/v1/rounds?service={SERVICE}&limit=5"));
    assert!(rounds["items"].is_array(), "{rounds}");
    // BIND serves the primary.
    assert_eq!(rig.www_a(), vec![IpAddr::V4(PRIMARY)]);

    // The config validates offline.
    let out = rig.coordinator_cli(&["check"]);
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // `check --online` runs the binary (bounded); until the flag exists, clap refuses it.
    let out = rig.check_online(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || stderr.contains("--online"),
        "check --online: {}: {stderr}",
        out.status
    );

    // A notice reaches the sink, and the coordinator's TSIG key works with BIND: pinned to
    // the backup, it switches DNS and notifies the transition.
    let (code, body) = rig.api_post(
        &format!("/v1/services/{SERVICE}/override"),
        &serde_json::json!({"mode": "pin-backup"}),
    );
    assert_eq!(code, 200, "{body}");
    let n = rig.wait_notice(|n| n["kind"] == "transition", WAIT);
    for field in ["service", "kind", "message", "at_ms", "text"] {
        assert!(!n[field].is_null(), "notice without {field}: {n}");
    }
    assert_eq!(n["service"], SERVICE);
    rig.wait_notice(|n| n["kind"] == "dns-applied", WAIT);
    assert_eq!(rig.www_a(), vec![IpAddr::V4(BACKUP)]);
    let (code, body) = rig.api_post(
        &format!("/v1/services/{SERVICE}/override"),
        &serde_json::json!({"mode": "pin-primary"}),
    );
    assert_eq!(code, 200, "{body}");
    poll_until(
        "DNS back on the primary",
        WAIT,
        Duration::from_millis(50),
        |_| (rig.www_a() == vec![IpAddr::V4(PRIMARY)]).then_some(()),
    )
    .unwrap();
    let rounds = rig.api_get(&format!("/v1/rounds?service={SERVICE}&limit=5"));
    assert!(!rounds["items"].as_array().unwrap().is_empty(), "{rounds}");

    // A human edits DNS with the real key.
    rig.hand_edit_www(IpAddr::V4(BACKUP));
    assert_eq!(rig.www_a(), vec![IpAddr::V4(BACKUP)]);

    // A second coordinator on the same config does not run alongside (today: the API
    // address is taken).
    let mut second = rig.start_second_coordinator();
    let exit = second.wait_exit(WAIT).unwrap();
    assert!(!exit.success(), "{}", second.log());
    let mut rig = rig;
    assert!(rig.coordinator_process().unwrap().is_running());
}

#[test]
fn shifted_clocks_move_running_processes_and_back() {
    let mut rig = Rig::start(RigOptions::default());
    rig.wait_round(2, WAIT);

    // Witness 1: its HTTP Date moves by 600 s while it runs; the coordinator's requests
    // are then too old for it, so its vote goes missing.
    let before = rig.witness_clock(1).unwrap() - now_s();
    assert!(
        before.abs() <= 2,
        "w1 is off by {before} s before any shift"
    );
    rig.shift_clock(Proc::Witness(1), 600);
    let skew = poll_until("w1's clock to move", WAIT, Duration::from_millis(50), |l| {
        let d = rig.witness_clock(1).ok()? - now_s();
        *l = format!("{d} s");
        ((598..=602).contains(&d)).then_some(d)
    })
    .unwrap();
    eprintln!("w1's Date header is {skew} s ahead");
    // w2 is untouched.
    assert!((rig.witness_clock(2).unwrap() - now_s()).abs() <= 2);
    let before = bad_votes(&rig, "w1");
    let m = wait_failing(&rig, "w1", before, 1);
    eprintln!("w1 with its clock 600 s ahead: {m}");
    rig.shift_clock(Proc::Witness(1), -600);
    wait_tally(&rig, "both up votes again", |s| s["last_votes"]["up"] == 2);

    // The coordinator: its API's Date and its tick times move; both witnesses refuse.
    rig.shift_clock(Proc::Coordinator, 600);
    poll_until(
        "the coordinator's clock to move",
        WAIT,
        Duration::from_millis(50),
        |l| {
            let d = rig.coordinator_clock().ok()? - now_s();
            *l = format!("{d} s");
            ((598..=602).contains(&d)).then_some(())
        },
    )
    .unwrap();
    let s = wait_tally(&rig, "a tick 600 s ahead, without valid votes", |s| {
        let ahead = s["last_tick_ms"].as_i64().unwrap_or(0) - now_ms();
        (590_000..=610_000).contains(&ahead) && s["last_votes"]["up"] == 0
    });
    eprintln!("coordinator status with its clock 600 s ahead: {s}");
    // `check` runs under the coordinator's clock too.
    rig.shift_clock(Proc::Coordinator, -600);
    wait_tally(&rig, "both up votes again", |s| s["last_votes"]["up"] == 2);
    assert_eq!(rig.clock_offset(Proc::Coordinator), 0);
}

#[test]
fn fault_verbs_take_effect() {
    let mut rig = Rig::start(RigOptions::default());
    rig.wait_round(2, WAIT);

    // A new signing key on w1: its votes no longer verify against the pinned key.
    let pinned = rig.config().witnesses[0].public_key.clone();
    let before = bad_votes(&rig, "w1");
    rig.restart_witness_with(1, |w| w.regenerate_signing_key());
    assert_ne!(rig.witness(1).public_key, pinned);
    assert_eq!(
        rig.witness(1).addr,
        rig.config().witnesses[0].url[8..].parse().unwrap()
    );
    let m = wait_failing(&rig, "w1", before, 1);
    assert!(m.contains("invalid_votes"), "{m}");
    eprintln!("w1 with a new key: {m}");
    // A new certificate on w2: TLS fails the pin, no answer.
    let before = bad_votes(&rig, "w2");
    rig.restart_witness_with(2, |w| w.regenerate_tls_cert());
    let m = wait_failing(&rig, "w2", before, 0);
    eprintln!("w2 with a new certificate: {m}");

    // Pin the new identities, restart the coordinator: both vote up again.
    let (k1, c2) = (
        rig.witness(1).public_key.clone(),
        rig.witness(2).cert_sha256.clone(),
    );
    rig.rewrite_coordinator_config(|c| {
        c.witnesses[0].public_key = k1;
        c.witnesses[1].cert_sha256 = Some(c2);
    });
    rig.stop_coordinator();
    rig.start_coordinator();
    wait_tally(&rig, "both up votes with the new pins", |s| {
        s["last_votes"]["up"] == 2
    });

    // Allowlist without the primary, and a witness that no longer trusts the coordinator.
    let before = bad_votes(&rig, "w1");
    rig.restart_witness_with(1, |w| w.drop_primary_from_allowlist());
    let m = wait_failing(&rig, "w1", before, 1);
    eprintln!("w1 without the primary in its allowlist: {m}");
    let before = bad_votes(&rig, "w2");
    rig.restart_witness_with(2, |w| w.distrust_coordinator());
    let m = wait_failing(&rig, "w2", before, 0);
    eprintln!("w2 distrusting the coordinator: {m}");
    // Stopped and started.
    rig.stop_witness(2);
    assert!(!rig.witness_running(2));
    rig.start_witness(2);
    assert!(rig.witness_running(2));

    // A site down and up.
    rig.stop_site(Site::Primary);
    wait_tally(&rig, "the primary seen down", |s| s["primary_up"] == false);
    rig.start_site(Site::Primary);
    wait_tally(&rig, "the primary seen up", |s| s["primary_up"] == true);

    // BIND: new secret and new key name (hand edits follow the server's key), no zone,
    // stopped, started.
    let target: IpAddr = "127.0.0.9".parse().unwrap();
    rig.bind_set_secret(&tests::net::random_secret(32));
    assert_ne!(rig.bind().key().1, rig.coordinator_tsig_secret());
    rig.hand_edit_www(target);
    assert_eq!(rig.www_a(), vec![target]);
    rig.bind_rename_key("someone-else");
    rig.hand_edit_www(IpAddr::V4(PRIMARY));
    assert_eq!(rig.www_a(), vec![IpAddr::V4(PRIMARY)]);
    rig.bind_drop_zone();
    assert!(rig.www_a().is_empty());
    rig.bind_restore_zone();
    assert_eq!(rig.www_a(), vec![IpAddr::V4(PRIMARY)]);
    rig.bind_stop();
    assert!(rig.www_a().is_empty());
    rig.bind_start();
    assert_eq!(rig.www_a(), vec![IpAddr::V4(PRIMARY)]);

    // The config's parts render what tests add.
    rig.rewrite_coordinator_config(|c| c.extra.push_str("# a readiness table goes here\n"));
    let text = std::fs::read_to_string(rig.config_path()).unwrap();
    assert!(text.ends_with("# a readiness table goes here\n"), "{text}");
    rig.sighup_coordinator();
    let log_has_hup = poll_until(
        "the SIGHUP in the log",
        WAIT,
        Duration::from_millis(25),
        |_| rig.coordinator_log().contains("SIGHUP").then_some(()),
    );
    log_has_hup.unwrap();
}
