//! The README's first command, as CI runs it: `quorate-coordinator demo --once` must see both
//! the failover and the failback in DNS answers and exit 0 (its own deadlines keep it under
//! 30 s: 5 s to see the healthy answer, 10 s for the failover, 12 s for the failback).

use std::process::Command;

#[test]
fn demo_once_sees_failover_and_failback_in_dns() {
    let out = Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(["demo", "--once"])
        .output()
        .expect("the coordinator binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo --once failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for want in [
        "healthy:",
        "round ",
        "signature verified",
        "failover:",
        "failback:",
        "drill passed",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}
