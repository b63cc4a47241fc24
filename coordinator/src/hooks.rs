//! Operator hooks: commands run before and after a failover or failback, with the change as
//! JSON on stdin and in `QUORATE_*` environment variables, under a timeout, and killed when
//! they outlive the shutdown grace. `pre_failback` is a gate: the failback happens only once
//! it exits 0 (the DNS worker retries it with backoff until then). Stderr is kept up to 4 KiB
//! as it is read; stdout is not read at all.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::subprocess::{self, Keep, Stop};

/// Bytes of a hook's stderr kept for the history and logs; the rest is read and dropped.
const STDERR_KEEP: usize = 4096;

/// The outcome of one hook run, for history and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Ok,
    Failed(String),
}

/// Runs `command` (argv form: no shell) with `payload` on stdin. Stdout is discarded, stderr
/// beyond 4 KiB too; the process is killed at the timeout, or `grace` after `shutdown`.
pub async fn run(
    command: &[String],
    payload: &serde_json::Value,
    env: &[(&str, String)],
    timeout: Duration,
    shutdown: &CancellationToken,
    grace: Duration,
) -> HookOutcome {
    let keep = Keep {
        stdout: None,
        stderr: STDERR_KEEP,
    };
    let input = payload.to_string();
    let stop = Stop {
        token: shutdown,
        grace,
    };
    match subprocess::run_until(command, input.as_bytes(), env, timeout, keep, Some(stop)).await {
        Ok(out) if out.status.success() => HookOutcome::Ok,
        Ok(out) => HookOutcome::Failed(format!(
            "{} exited with {}: {}",
            command.first().map_or("", String::as_str),
            out.status,
            out.stderr_text()
        )),
        Err(e) => HookOutcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

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
            &CancellationToken::new(),
            GRACE,
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
            &CancellationToken::new(),
            GRACE,
        )
        .await;
        assert!(
            matches!(&r, HookOutcome::Failed(m) if m.contains("nope")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn hook_stderr_is_bounded() {
        // 1 MB of stderr: the message keeps 4 KiB of it, and the hook is not blocked.
        let r = run(
            &sh("head -c 1000000 /dev/zero | tr '\\0' x >&2; exit 1"),
            &serde_json::json!({}),
            &[],
            Duration::from_secs(30),
            &CancellationToken::new(),
            GRACE,
        )
        .await;
        let HookOutcome::Failed(m) = r else {
            panic!("{r:?}")
        };
        assert!(m.contains("xxxx"), "{m}");
        assert!(m.len() < STDERR_KEEP + 200, "{}", m.len());
    }

    #[tokio::test]
    async fn hook_is_killed_at_its_timeout() {
        let r = run(
            &sh("sleep 30"),
            &serde_json::json!({}),
            &[],
            Duration::from_millis(200),
            &CancellationToken::new(),
            GRACE,
        )
        .await;
        assert!(
            matches!(&r, HookOutcome::Failed(m) if m.contains("killed")),
            "{r:?}"
        );
    }
}
