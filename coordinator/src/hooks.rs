//! Operator hooks: commands run before and after a failover or failback, with the change as
//! JSON on stdin and in `QUORATE_*` environment variables, under a timeout. `pre_failback` is
//! a gate: the failback happens only if it exits 0.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

/// The outcome of one hook run, for history and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Ok,
    Failed(String),
}

/// Runs `command` (argv form: no shell) with `payload` on stdin. Output beyond 4 KiB is
/// discarded; the process is killed at the timeout.
pub async fn run(
    command: &[String],
    payload: &serde_json::Value,
    env: &[(&str, String)],
    timeout: Duration,
) -> HookOutcome {
    let Some((prog, args)) = command.split_first() else {
        return HookOutcome::Failed("empty command".into());
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return HookOutcome::Failed(format!("cannot start {prog}: {e}")),
    };
    let input = payload.to_string();
    let mut stdin = child.stdin.take();
    let fut = async move {
        if let Some(s) = stdin.as_mut() {
            // A hook that does not read its stdin is fine: ignore a broken pipe.
            let _ = s.write_all(input.as_bytes()).await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => HookOutcome::Failed(format!("{prog} did not finish within {timeout:?}; killed")),
        Ok(Err(e)) => HookOutcome::Failed(format!("{prog}: {e}")),
        Ok(Ok(out)) if out.status.success() => HookOutcome::Ok,
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(4096)]);
            HookOutcome::Failed(format!("{prog} exited with {}: {}", out.status, err.trim()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn hook_gets_json_and_env_and_its_exit_status_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("seen");
        let cmd = sh(&format!(
            "cat > {0} && echo \"$QUORATE_SERVICE\" >> {0}",
            out.display()
        ));
        let payload = serde_json::json!({"service": "www", "to": "backup"});
        let r = run(
            &cmd,
            &payload,
            &[("QUORATE_SERVICE", "www".into())],
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(r, HookOutcome::Ok);
        let seen = std::fs::read_to_string(&out).expect("hook wrote its input");
        assert!(
            seen.contains("\"to\":\"backup\"") && seen.ends_with("www\n"),
            "{seen}"
        );

        let r = run(
            &sh("echo nope >&2; exit 3"),
            &payload,
            &[],
            Duration::from_secs(5),
        )
        .await;
        assert!(
            matches!(&r, HookOutcome::Failed(m) if m.contains("nope")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn hook_is_killed_at_its_timeout() {
        let r = run(
            &sh("sleep 30"),
            &serde_json::json!({}),
            &[],
            Duration::from_millis(200),
        )
        .await;
        assert!(
            matches!(&r, HookOutcome::Failed(m) if m.contains("killed")),
            "{r:?}"
        );
    }
}
