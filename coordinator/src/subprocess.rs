//! The one way the coordinator runs an operator's command (the exec DNS backend, hooks): argv
//! form (no shell), bytes on stdin, extra environment variables, a hard timeout after which the
//! process is killed and reaped, and output kept up to a bound.
//!
//! Output past the bound is still read (and thrown away), so a chatty command never blocks on a
//! full pipe and never makes the coordinator hold more than the bound in memory.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How much output to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// Bytes of stdout kept; `None`: stdout goes to /dev/null and is not read at all.
    pub stdout: Option<usize>,
    /// Bytes of stderr kept.
    pub stderr: usize,
}

/// What a command that finished in time left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub status: ExitStatus,
    /// At most [`Keep::stdout`] bytes.
    pub stdout: Vec<u8>,
    /// At most [`Keep::stderr`] bytes.
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Stderr as trimmed text (invalid UTF-8 replaced), for error messages.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why a command did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("empty command; expected [\"/path/to/program\", \"arg\", ...]")]
    Empty,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not finish within {timeout:?} and was killed")]
    Timeout { program: String, timeout: Duration },
    #[error("{program} was still running {grace:?} after shutdown began and was killed")]
    Stopped { program: String, grace: Duration },
}

/// When to give up on a command besides its timeout: `grace` after `token` is cancelled
/// (the daemon's shutdown), so a command cannot hold a stopping coordinator.
#[derive(Debug, Clone, Copy)]
pub struct Stop<'a> {
    pub token: &'a CancellationToken,
    pub grace: Duration,
}

/// Runs `command` (program, then arguments) with `stdin` written to its standard input (then
/// closed), `env` added to the environment, for at most `timeout`.
pub async fn run(
    command: &[String],
    stdin: &[u8],
    env: &[(&str, String)],
    timeout: Duration,
    keep: Keep,
) -> Result<Finished, RunError> {
    run_until(command, stdin, env, timeout, keep, None).await
}

/// [`run`], also killed `stop.grace` after `stop.token` is cancelled.
pub async fn run_until(
    command: &[String],
    stdin: &[u8],
    env: &[(&str, String)],
    timeout: Duration,
    keep: Keep,
    stop: Option<Stop<'_>>,
) -> Result<Finished, RunError> {
    let Some((program, args)) = command.split_first() else {
        return Err(RunError::Empty);
    };
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(if keep.stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        // Dropped before it was reaped (e.g. the caller's task was cancelled): killed.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
    let child_in = child.stdin.take();
    let out = child.stdout.take();
    let err = child.stderr.take();
    let work = async {
        let write = async {
            if let Some(mut w) = child_in {
                // A command that does not read its stdin closes the pipe: not an error.
                let _ = w.write_all(stdin).await;
                let _ = w.shutdown().await;
            }
        };
        let read_out = async {
            match (out, keep.stdout) {
                (Some(o), Some(n)) => read_bounded(o, n).await,
                _ => Vec::new(),
            }
        };
        let read_err = async {
            match err {
                Some(e) => read_bounded(e, keep.stderr).await,
                None => Vec::new(),
            }
        };
        let ((), stdout, stderr) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (status, stdout, stderr)
    };
    let stopped = async {
        match stop {
            Some(s) => {
                s.token.cancelled().await;
                tokio::time::sleep(s.grace).await;
            }
            None => std::future::pending().await,
        }
    };
    // `work` (which borrows the child) is dropped when the select ends, so the child can be
    // killed below.
    let finished = tokio::select! {
        r = work => Ok(r),
        _ = tokio::time::sleep(timeout) => Err(RunError::Timeout { program: program.clone(), timeout }),
        _ = stopped => Err(RunError::Stopped {
            program: program.clone(),
            grace: stop.map(|s| s.grace).unwrap_or_default(),
        }),
    };
    match finished {
        Ok((status, stdout, stderr)) => Ok(Finished {
            status: status.map_err(|source| RunError::Wait {
                program: program.clone(),
                source,
            })?,
            stdout,
            stderr,
        }),
        Err(e) => {
            // Kill it and reap it, so no zombie is left (kill_on_drop alone does not wait).
            let _ = child.kill().await;
            Err(e)
        }
    }
}

/// Reads to the end (so the child never blocks on a full pipe) but keeps only `keep` bytes.
async fn read_bounded<R: AsyncRead + Unpin>(mut r: R, keep: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = keep.saturating_sub(out.len());
                out.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    const KEEP_BOTH: Keep = Keep {
        stdout: Some(1000),
        stderr: 10,
    };

    #[tokio::test]
    async fn output_is_kept_up_to_the_bound_and_the_rest_is_drained() {
        // 4 MB on stdout and 1 MB on stderr: far more than a pipe holds, so the command only
        // finishes if both are read to the end.
        let f = run(
            &sh("head -c 4000000 /dev/zero; head -c 1000000 /dev/zero >&2; exit 3"),
            b"",
            &[],
            Duration::from_secs(30),
            KEEP_BOTH,
        )
        .await
        .unwrap();
        assert_eq!(f.status.code(), Some(3));
        assert_eq!(f.stdout.len(), 1000);
        assert_eq!(f.stderr.len(), 10);
    }

    #[tokio::test]
    async fn stdin_and_env_reach_the_command() {
        let f = run(
            &sh("cat; printf ' %s' \"$QUORATE_X\"; echo oops >&2"),
            b"{\"a\":1}",
            &[("QUORATE_X", "y z".into())],
            Duration::from_secs(10),
            KEEP_BOTH,
        )
        .await
        .unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout, b"{\"a\":1} y z");
        assert_eq!(f.stderr_text(), "oops");
        // Not captured: stdout goes nowhere, stderr still comes back.
        let f = run(
            &sh("echo out; echo err >&2"),
            b"",
            &[],
            Duration::from_secs(10),
            Keep {
                stdout: None,
                stderr: 100,
            },
        )
        .await
        .unwrap();
        assert!(f.stdout.is_empty());
        assert_eq!(f.stderr_text(), "err");
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let started = std::time::Instant::now();
        let e = run(&sh(&script), b"", &[], Duration::from_secs(1), KEEP_BOTH)
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Killed and reaped: the process is gone.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "process {pid} still exists"
        );
    }

    #[tokio::test]
    async fn a_command_outliving_the_shutdown_grace_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let token = CancellationToken::new();
        let stop = Stop {
            token: &token,
            grace: Duration::from_millis(300),
        };
        let cmd = sh(&script);
        let run = run_until(
            &cmd,
            b"",
            &[],
            Duration::from_secs(60),
            KEEP_BOTH,
            Some(stop),
        );
        let cancel = async {
            // Shutdown begins once the command is running (it wrote its pid).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !pid_file.exists() && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            token.cancel();
            std::time::Instant::now()
        };
        let (e, cancelled_at) = tokio::join!(run, cancel);
        let e = e.unwrap_err();
        assert!(matches!(e, RunError::Stopped { .. }), "{e}");
        let took = cancelled_at.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(10),
            "killed {took:?} after shutdown began"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        assert!(
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "process {pid} still exists"
        );
    }

    #[tokio::test]
    async fn start_failures_name_the_program() {
        assert!(matches!(
            run(&[], b"", &[], Duration::from_secs(1), KEEP_BOTH).await,
            Err(RunError::Empty)
        ));
        let e = run(
            &["/nonexistent/quorate-cmd".to_string()],
            b"",
            &[],
            Duration::from_secs(1),
            KEEP_BOTH,
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot start /nonexistent/quorate-cmd:"),
            "{e}"
        );
    }
}
