//! Test-only helpers shared by the coordinator's and the witness's integration tests (neither
//! crate can use the other's `tests/common`): a real daemon under test whose log is kept and
//! printed when the test fails, polling its log with a deadline, signals, the descriptor limit
//! the flood tests need, and a process's resident memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long [`Daemon::wait_until`] polls before it fails the test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A real binary under test: stdout and stderr go to `log`, it is killed on drop, and its log
/// is printed if the test panics.
pub struct Daemon {
    pub child: tokio::process::Child,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `command` (program, arguments and environment already set) as `name`.
    pub fn spawn(name: &'static str, mut command: tokio::process::Command, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Daemon { child, name, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `HUP`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the {} is still running", self.name));
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }

    /// Polls `done` (given the log so far) every 25 ms until it says yes; panics if the
    /// process exits meanwhile or after [`DEADLINE`].
    pub async fn wait_until<F, Fut>(&mut self, what: &str, mut done: F)
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the {} exited ({status}) while waiting for {what}",
                    self.name
                );
            }
            if done(self.log()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {DEADLINE:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} log ---\n{}", self.name, self.log());
        }
    }
}

/// Raises this process's soft descriptor limit to `want` with util-linux `prlimit` (no
/// unsafe code here), or fails saying how to run the test.
pub fn raise_nofile(want: u64) {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={want}:")])
        .status();
    let now = shared::listener::descriptor_limit().unwrap_or(0);
    assert!(
        now >= want,
        "this test needs {want} open descriptors but the soft limit is {now} and `prlimit` could not raise it: run it under `ulimit -n {want}` (the hard limit must allow it)"
    );
}

/// The resident memory of process `pid`, in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
