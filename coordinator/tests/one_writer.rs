//! One writer per history file, with the real `quorate-coordinator` binary: a second
//! coordinator on the same config (same `database`) exits at once, non-zero, naming the file
//! and the first one's PID, and the first runs on; once the first is SIGKILLed the kernel has
//! dropped its lock, and the second starts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Lab;
use testkit::DEADLINE;

/// How long a refused coordinator may take to exit: it stops before binding anything.
const QUICKLY: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_coordinator_on_the_same_history_refuses_until_the_first_is_killed() {
    let lab = Lab::new();
    let common::BinarySetup {
        primary: _primary,
        backup: _backup,
        witnesses,
        opts,
        api_port: port,
    } = common::binary_setup(&lab).await;
    lab.config(&opts.toml());
    let config = lab.path().join("coordinator.toml");
    let database = lab.path().join("history.sqlite");
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let answers = || async {
        common::api_get(&http, &api, &lab.token, "/v1/services/web")
            .await
            .is_some()
    };

    let mut first = common::run_binary(&config, lab.path().join("first.log"));
    first
        .wait_until("the first coordinator's API to answer", |_| answers())
        .await;
    let first_pid = first.child.id().unwrap();

    let mut second = common::run_binary(&config, lab.path().join("second.log"));
    let exit = tokio::time::timeout(QUICKLY, second.child.wait())
        .await
        .expect("the second coordinator did not exit")
        .unwrap();
    assert!(!exit.success(), "exit status {exit}");
    let log = second.log();
    let want = format!(
        "history file {} is in use by another coordinator (pid {first_pid}, lock {}.lock): stop it, or give this coordinator its own `database`",
        database.display(),
        database.display()
    );
    assert!(log.contains(&want), "expected {want:?} in:\n{log}");
    assert!(
        !log.contains("coordinator running"),
        "the second one started:\n{log}"
    );
    assert_eq!(
        coordinator::lock::lock_holder(&database),
        Some(first_pid),
        "lock_holder names the first coordinator"
    );

    // The first one runs on, untouched.
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first one exited"
    );
    assert!(answers().await, "the first coordinator's API still answers");

    // A crash releases the lock: SIGKILL, no clean-up code runs.
    first.signal("KILL");
    tokio::time::timeout(DEADLINE, first.child.wait())
        .await
        .expect("the first coordinator did not die")
        .unwrap();
    let mut third = common::run_binary(&config, lab.path().join("third.log"));
    third
        .wait_until(
            "a coordinator on the same history to start after the kill",
            |_| answers(),
        )
        .await;
    assert_eq!(coordinator::lock::lock_holder(&database), third.child.id());
    drop(witnesses);
}
