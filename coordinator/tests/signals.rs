//! Signals with the real `quorate-coordinator` binary: SIGHUP reloads the config file (here an
//! unchanged one: nothing is stopped, the process keeps running and answering its API), and
//! SIGTERM then stops it cleanly with exit status 0. What a reload changes is tested in
//! `reload.rs`.
//!
//! Before `shared::shutdown`, SIGHUP killed the coordinator with no log line (and systemd's
//! `Restart=on-failure` does not restart a process killed by SIGHUP).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Lab;
use testkit::DEADLINE;

const SIGHUP_LINE: &str = "SIGHUP received, reloading the config";
const NOTHING_CHANGED: &str = "config reloaded: nothing changed";

/// The service's status from the API, if it answers 200.
async fn api_status(http: &reqwest::Client, api: &str, token: &str) -> Option<serde_json::Value> {
    common::api_get(http, api, token, "/v1/services/web").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_an_unchanged_config_and_sigterm_exits_cleanly() {
    let lab = Lab::new();
    let common::BinarySetup {
        primary: _primary,
        backup: _backup,
        witnesses: _witnesses,
        opts,
        api_port: port,
    } = common::binary_setup(&lab).await;
    lab.config(&opts.toml()); // validates, and writes coordinator.toml
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    let mut daemon = common::run_binary(
        &lab.path().join("coordinator.toml"),
        lab.path().join("coordinator.log"),
    );
    daemon
        .wait_until("the coordinator's API to answer", |_| async {
            api_status(&http, &api, &lab.token).await.is_some()
        })
        .await;

    // Two SIGHUPs: each one logged and reloaded (nothing changed), neither fatal.
    for n in 1..=2 {
        daemon.signal("HUP");
        daemon
            .wait_until(&format!("reload number {n} in the log"), |log| async move {
                log.matches(SIGHUP_LINE).count() == n && log.matches(NOTHING_CHANGED).count() == n
            })
            .await;
    }
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains(NOTHING_CHANGED)).unwrap();
    assert!(line.contains("INFO"), "{line}");
    assert_eq!(
        log.matches("service starting").count(),
        1,
        "an unchanged service is not started again"
    );
    assert!(!log.contains("refused"), "{log}");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "still running after two SIGHUPs"
    );
    let status = api_status(&http, &api, &lab.token)
        .await
        .expect("the API still answers after SIGHUP");
    assert_eq!(status["active"], "primary", "{status}");

    // SIGTERM: a clean exit, within the grace period and then some.
    daemon.signal("TERM");
    let exit = tokio::time::timeout(DEADLINE, daemon.child.wait())
        .await
        .expect("the coordinator did not stop after SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    assert!(daemon.log().contains("SIGTERM received"), "no SIGTERM line");

    // After a clean stop the offline commands read the history it left.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
            .args(args)
            .arg("--config")
            .arg(lab.path().join("coordinator.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let status = cli(&["status"]);
    // The stored state, then readiness, which only the running daemon knows: it has stopped.
    let first = status.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("web ")
            && first.contains("primary-active")
            && first.ends_with("pending dns changes: 0")
            && status.contains("readiness: unknown: cannot reach the coordinator's API")
            && status.contains("(is the coordinator running?)"),
        "{status}"
    );
    let history = cli(&["history", "--service", "web"]);
    assert!(
        history.ends_with('\n') && !history.contains("dns change"),
        "{history}"
    );
}
