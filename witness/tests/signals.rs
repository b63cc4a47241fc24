//! Signals with the real `quorate-witness` binary: SIGHUP is logged as a warning (reload is not
//! implemented, the config is not re-read) and otherwise ignored — the process keeps running
//! and serving HTTPS — and SIGTERM then stops it cleanly with exit status 0.
//!
//! Before `shared::shutdown`, SIGHUP killed the witness with no log line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::printed;
use testkit::{DEADLINE, Daemon};

const BIN: &str = env!("CARGO_BIN_EXE_quorate-witness");
const SIGHUP_WARNING: &str = "reload is not implemented yet";

/// `GET /healthz` answers 200.
async fn healthy(client: &reqwest::Client, base: &str) -> bool {
    match client.get(format!("{base}/healthz")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// The real binary, run with `--config config`; its output goes to `log`.
fn start(config: &Path, log: PathBuf) -> Daemon {
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(["run", "--config"])
        .arg(config)
        .env("QUORATE_LOG", "info");
    Daemon::spawn("witness", command, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_logged_and_ignored_and_sigterm_exits_cleanly() {
    shared::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let coordinator = shared::keys::generate();
    let init = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir.path())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "127.0.0.1",
        ])
        .args(["--allow", "127.0.0.1/32=80"])
        .args([
            "--coordinator",
            &format!(
                "c1={}",
                shared::keys::format_public_key(&coordinator.verifying_key())
            ),
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let stdout = String::from_utf8(init.stdout).unwrap();
    let pin = shared::tls::parse_fingerprint(&printed(&stdout, "cert_sha256")).unwrap();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(shared::tls::pinned_client_config(Some(pin)))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");

    let mut w = start(
        &dir.path().join("witness.toml"),
        dir.path().join("witness.log"),
    );
    w.wait_until("the witness to serve /healthz", |_| async {
        healthy(&client, &base).await
    })
    .await;

    // Two SIGHUPs: each one logged, neither fatal.
    for n in 1..=2 {
        w.signal("HUP");
        w.wait_until(
            &format!("SIGHUP warning number {n} in the log"),
            |log| async move { log.matches(SIGHUP_WARNING).count() == n },
        )
        .await;
    }
    let log = w.log();
    let warning = log
        .lines()
        .find(|l| l.contains(SIGHUP_WARNING))
        .unwrap()
        .to_string();
    assert!(
        warning.contains("WARN") && warning.contains("NOT re-read") && warning.contains("restart"),
        "{warning}"
    );
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "still running after two SIGHUPs"
    );
    assert!(
        healthy(&client, &base).await,
        "still serving after two SIGHUPs"
    );

    // SIGTERM: a clean exit within the grace period.
    w.signal("TERM");
    let exit = tokio::time::timeout(DEADLINE, w.child.wait())
        .await
        .expect("the witness did not stop after SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    let log = w.log();
    assert!(
        log.contains("SIGTERM received") && log.contains("witness stopped"),
        "{log}"
    );
}
