//! The exec backend with real scripts written to a temp dir: the change arrives as JSON on
//! stdin and in the environment; exit 0 applies, 75 is transient, anything else is rejected
//! with stderr quoted (bounded); a script that outlives the timeout is killed; the optional
//! `current_command` reads back and guards against conflicts.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coordinator::dns::exec::{self, Config};
use coordinator::dns::{Change, DnsBackend, DnsError, RecordSet, RecordType};

fn set(ttl: u32, addrs: &[&str]) -> Vec<RecordSet> {
    vec![RecordSet::new(
        "www.example.test.",
        RecordType::A,
        ttl,
        addrs.iter().map(|a| a.parse::<IpAddr>().unwrap()).collect(),
    )]
}

fn the_change() -> Change {
    Change {
        zone: "example.test.".into(),
        from: set(300, &["192.0.2.10"]),
        to: set(60, &["198.51.100.10", "198.51.100.11"]),
    }
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn config(cmd: &Path, timeout: Duration) -> Config {
    Config {
        command: vec![cmd.display().to_string(), "first arg".into()],
        current_command: None,
        check_command: None,
        timeout,
        force: false,
    }
}

#[tokio::test]
async fn exit_zero_applies_with_the_change_on_stdin_and_in_env() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let cmd = script(
        dir.path(),
        "ok.sh",
        &format!(
            "cat > {d}/stdin.json\nprintf '%s\\n' \"$1\" \"$QUORATE_ZONE\" \"$QUORATE_TO_ADDRS\" \"$QUORATE_FROM_ADDRS\" \"$QUORATE_TTL\" > {d}/env.txt\nprintf '%s' \"$QUORATE_CHANGE_JSON\" > {d}/env.json\nexit 0"
        ),
    );
    let backend = exec::build(&config(&cmd, Duration::from_secs(10))).unwrap();
    backend.apply(&the_change()).await.unwrap();
    let stdin: Change =
        serde_json::from_slice(&std::fs::read(dir.path().join("stdin.json")).unwrap()).unwrap();
    assert_eq!(stdin, the_change());
    let env_json: Change =
        serde_json::from_slice(&std::fs::read(dir.path().join("env.json")).unwrap()).unwrap();
    assert_eq!(env_json, the_change());
    let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    assert_eq!(
        env,
        "first arg\nexample.test.\n198.51.100.10 198.51.100.11\n192.0.2.10\n60\n"
    );
    // Without a current_command there is nothing to read back, and it says so.
    let err = backend
        .current("example.test.", &the_change().from)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("current_command")),
        "{err:?}"
    );
}

#[tokio::test]
async fn exit_75_is_transient() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(
        dir.path(),
        "busy.sh",
        "echo 'server busy, try later' >&2\nexit 75",
    );
    let err = exec::build(&config(&cmd, Duration::from_secs(10)))
        .unwrap()
        .apply(&the_change())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Transient(t) if t.contains("server busy")),
        "{err:?}"
    );
}

#[tokio::test]
async fn other_exit_is_rejected_with_bounded_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = script(dir.path(), "no.sh", "echo 'record is locked' >&2\nexit 3");
    let err = exec::build(&config(&cmd, Duration::from_secs(10)))
        .unwrap()
        .apply(&the_change())
        .await
        .unwrap_err();
    match &err {
        DnsError::Rejected(t) => {
            assert!(t.contains("status 3"), "{t}");
            assert!(t.contains("record is locked"), "{t}");
        }
        other => panic!("{other:?}"),
    }
    // A flood of stderr is cut, and does not block the script.
    let cmd = script(
        dir.path(),
        "flood.sh",
        "head -c 1000000 /dev/zero | tr '\\0' x >&2\nexit 4",
    );
    let err = exec::build(&config(&cmd, Duration::from_secs(10)))
        .unwrap()
        .apply(&the_change())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("status 4") && t.len() < 4096),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_script_that_outlives_the_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let cmd = script(
        dir.path(),
        "slow.sh",
        &format!("echo $$ > {}\nexec sleep 30", pidfile.display()),
    );
    let backend = exec::build(&config(&cmd, Duration::from_millis(500))).unwrap();
    let start = Instant::now();
    let err = backend.apply(&the_change()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(&err, DnsError::Transient(t) if t.contains("killed")),
        "{err:?}"
    );
    // The process is gone (killed and reaped), not left sleeping.
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists"
    );
}

#[tokio::test]
async fn current_command_reads_back_and_guards_against_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // The "server" is a file; the apply script writes `to` into it, the reader prints it.
    std::fs::write(
        dir.path().join("served.json"),
        serde_json::to_string(&set(300, &["192.0.2.10"])).unwrap(),
    )
    .unwrap();
    let apply = script(
        dir.path(),
        "apply.sh",
        &format!(
            "cat > /dev/null\nl=''\nfor a in $QUORATE_TO_ADDRS; do l=\"$l${{l:+,}}\\\"$a\\\"\"; done\nprintf '[{{\"name\":\"www.example.test.\",\"rtype\":\"A\",\"ttl\":%s,\"addrs\":[%s]}}]' \"$QUORATE_TTL\" \"$l\" > {d}/served.json"
        ),
    );
    let read = script(
        dir.path(),
        "read.sh",
        &format!("cat > /dev/null\ncat {d}/served.json"),
    );
    let mut cfg = config(&apply, Duration::from_secs(10));
    cfg.current_command = Some(vec![read.display().to_string()]);
    let backend = exec::build(&cfg).unwrap();
    assert_eq!(
        backend
            .current("example.test.", &the_change().from)
            .await
            .unwrap(),
        set(300, &["192.0.2.10"])
    );
    backend.apply(&the_change()).await.unwrap();
    assert_eq!(
        backend
            .current("example.test.", &the_change().from)
            .await
            .unwrap(),
        the_change().to
    );
    // A change that starts from something else is a conflict and the script is not run.
    let stale = Change {
        zone: "example.test.".into(),
        from: set(300, &["203.0.113.9"]),
        to: set(60, &["192.0.2.77"]),
    };
    let err = backend.apply(&stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert_eq!(
        backend
            .current("example.test.", &the_change().from)
            .await
            .unwrap(),
        the_change().to
    );
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Path::new("relative.sh"), Duration::from_secs(1));
    assert!(
        exec::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("command:")
    );
    cfg.command = vec![];
    assert!(
        exec::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("command:")
    );
    let not_exec = dir.path().join("plain");
    std::fs::write(&not_exec, "x").unwrap();
    cfg.command = vec![not_exec.display().to_string()];
    assert!(
        exec::build(&cfg)
            .unwrap_err()
            .to_string()
            .contains("executable")
    );
}

#[tokio::test]
async fn check_runs_check_command_or_says_unproven() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let apply = script(dir.path(), "apply.sh", &format!("touch {d}/applied"));
    let expected = set(300, &["192.0.2.10"]);

    // No check_command: Ok, but marked unproven.
    let backend = exec::build(&config(&apply, Duration::from_secs(10))).unwrap();
    let line = backend.check("example.test.", &expected).await.unwrap();
    println!("no check_command: {line}");
    assert!(line.starts_with(coordinator::dns::UNPROVEN), "{line}");

    // A check_command that exits 0 gets the records on stdin and in the environment.
    let check = script(
        dir.path(),
        "check.sh",
        &format!(
            "cat > {d}/stdin.json\nprintf '%s\\n' \"$1\" \"$QUORATE_ZONE\" \"$QUORATE_EXPECTED_ADDRS\" > {d}/env.txt\nprintf '%s' \"$QUORATE_EXPECTED_JSON\" > {d}/env.json"
        ),
    );
    let mut cfg = config(&apply, Duration::from_secs(10));
    cfg.check_command = Some(vec![check.display().to_string(), "--zone-check".into()]);
    let line = exec::build(&cfg)
        .unwrap()
        .check("example.test.", &expected)
        .await
        .unwrap();
    println!("check_command: {line}");
    assert!(line.starts_with("exec: check_command"), "{line}");
    let stdin: Vec<RecordSet> =
        serde_json::from_slice(&std::fs::read(dir.path().join("stdin.json")).unwrap()).unwrap();
    assert_eq!(stdin, expected);
    let env_json: Vec<RecordSet> =
        serde_json::from_slice(&std::fs::read(dir.path().join("env.json")).unwrap()).unwrap();
    assert_eq!(env_json, expected);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("env.txt")).unwrap(),
        "--zone-check\nexample.test.\n192.0.2.10\n"
    );

    // A failing check_command is rejected with its stderr; 75 is transient.
    let no = script(dir.path(), "no.sh", "echo 'token expired' >&2\nexit 2");
    cfg.check_command = Some(vec![no.display().to_string()]);
    let err = exec::build(&cfg)
        .unwrap()
        .check("example.test.", &expected)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("token expired")),
        "{err:?}"
    );
    let busy = script(dir.path(), "busy.sh", "exit 75");
    cfg.check_command = Some(vec![busy.display().to_string()]);
    let err = exec::build(&cfg)
        .unwrap()
        .check("example.test.", &expected)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    // With a current_command, a hand edit is a conflict.
    std::fs::write(
        dir.path().join("served.json"),
        serde_json::to_string(&set(300, &["203.0.113.9"])).unwrap(),
    )
    .unwrap();
    let read = script(
        dir.path(),
        "read.sh",
        &format!("cat > /dev/null\ncat {d}/served.json"),
    );
    cfg.check_command = None;
    cfg.current_command = Some(vec![read.display().to_string()]);
    let err = exec::build(&cfg)
        .unwrap()
        .check("example.test.", &expected)
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert!(
        !dir.path().join("applied").exists(),
        "a check must not apply"
    );
}
