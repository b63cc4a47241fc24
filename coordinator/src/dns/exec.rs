//! The exec backend: runs an operator's command (argument array, no shell) with the change as
//! JSON on stdin and in environment variables. Exit 0 = applied, 75 (EX_TEMPFAIL) = try again
//! later, anything else = rejected. A command that outlives the timeout is killed.
//!
//! Reading back (`current`) needs an optional `current_command`: it gets the wanted RRsets as
//! JSON on stdin and prints the served ones as JSON on stdout. Without it `current` returns a
//! `Rejected` error saying so, and no conflict check is done before `apply` (the coordinator's
//! DNS verification still sees what is served).
//!
//! The readiness check (`DnsBackend::check`) needs an optional `check_command`: it proves,
//! changing nothing, that the command's credentials work and the zone can be written. It runs
//! like the others (argument array, no shell, the same timeout) with the expected RRsets as
//! JSON on stdin and in `QUORATE_EXPECTED_JSON`, their addresses in `QUORATE_EXPECTED_ADDRS`
//! and the zone in `QUORATE_ZONE`; exit 0 = proven, 75 = try again later, anything else =
//! rejected (stderr quoted). With a `current_command` the served records are then compared
//! with the expected ones (a hand edit is a `Conflict`). Without a `check_command` the check
//! answers Ok with a line starting `unproven:`, so readiness shows a warning rather than a pass.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    Change, Checked, DnsBackend, DnsError, RecordSet, SettingError, UNPROVEN, check_expected,
};
use crate::subprocess::{self, Finished, Keep, RunError};

/// Exit status meaning "temporary failure, retry" (sysexits.h EX_TEMPFAIL).
pub const EX_TEMPFAIL: i32 = 75;
/// Bytes of stderr kept for an error message.
const STDERR_KEEP: usize = 2048;
/// Bytes of stdout accepted from `current_command`.
const STDOUT_KEEP: usize = 1 << 20;

/// `[dns] type = "exec"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `["/usr/local/bin/update-dns", "--zone", "example.com"]`: a path (absolute, or relative
    /// to the config file's folder, e.g. `"./update-dns"`), then arguments.
    pub command: Vec<String>,
    /// Optional reader: prints the served RRsets as JSON.
    #[serde(default)]
    pub current_command: Option<Vec<String>>,
    /// Optional readiness check: exits 0 when the credentials work and the zone can be
    /// written, changing nothing (e.g. an API call that lists the zone).
    #[serde(default)]
    pub check_command: Option<Vec<String>>,
    /// Time allowed per run, e.g. `"30s"` (default).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// With a `current_command`: skip the conflict check before applying.
    #[serde(default)]
    pub force: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Clone)]
pub struct Exec {
    command: Vec<String>,
    current_command: Option<Vec<String>>,
    check_command: Option<Vec<String>>,
    timeout: Duration,
    force: bool,
}

impl fmt::Debug for Exec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exec")
            .field("command", &self.command)
            .field("current_command", &self.current_command)
            .field("check_command", &self.check_command)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn check_command(key: &str, cmd: &[String]) -> Result<(), SettingError> {
    let Some(first) = cmd.first() else {
        return Err(SettingError::new(
            key,
            "expected a non-empty array like [\"/usr/local/bin/update-dns\", \"arg\"]",
        ));
    };
    let path = Path::new(first);
    if !path.is_absolute() {
        return Err(SettingError::new(
            key,
            format!("expected an absolute path as the first element, got {first:?}"),
        ));
    }
    let meta =
        std::fs::metadata(path).map_err(|e| SettingError::new(key, format!("{first}: {e}")))?;
    use std::os::unix::fs::PermissionsExt as _;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(SettingError::new(
            key,
            format!("{first}: expected an executable file"),
        ));
    }
    Ok(())
}

pub fn build(config: &Config) -> Result<Exec, SettingError> {
    check_command("command", &config.command)?;
    if let Some(c) = &config.current_command {
        check_command("current_command", c)?;
    }
    if let Some(c) = &config.check_command {
        check_command("check_command", c)?;
    }
    Ok(Exec {
        command: config.command.clone(),
        current_command: config.current_command.clone(),
        check_command: config.check_command.clone(),
        timeout: config.timeout,
        force: config.force,
    })
}

/// The program of a command (checked non-empty at build).
fn program(cmd: &[String]) -> &str {
    cmd.first().map_or("", String::as_str)
}

fn addrs_text(sets: &[RecordSet]) -> String {
    let mut all: Vec<String> = Vec::new();
    for s in sets {
        for a in &s.addrs {
            let t = a.to_string();
            if !all.contains(&t) {
                all.push(t);
            }
        }
    }
    all.join(" ")
}

impl Exec {
    async fn run(
        &self,
        cmd: &[String],
        stdin: Vec<u8>,
        env: Vec<(&str, String)>,
    ) -> Result<Finished, DnsError> {
        let keep = Keep {
            stdout: Some(STDOUT_KEEP),
            stderr: STDERR_KEEP,
        };
        subprocess::run(cmd, &stdin, &env, self.timeout, keep)
            .await
            .map_err(|e| match e {
                RunError::Empty | RunError::Spawn { .. } => DnsError::Rejected(e.to_string()),
                RunError::Wait { .. } | RunError::Timeout { .. } | RunError::Stopped { .. } => {
                    DnsError::Transient(e.to_string())
                }
            })
    }

    fn judge(program: &str, f: &Finished) -> Result<(), DnsError> {
        let stderr = f.stderr_text();
        let detail = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        match f.status.code() {
            Some(0) => Ok(()),
            Some(EX_TEMPFAIL) => Err(DnsError::Transient(format!(
                "{program} exited with status 75 (temporary failure){detail}"
            ))),
            Some(c) => Err(DnsError::Rejected(format!(
                "{program} exited with status {c}{detail}"
            ))),
            None => Err(DnsError::Rejected(format!(
                "{program} was killed by a signal{detail}"
            ))),
        }
    }

    async fn read_current(
        &self,
        zone: &str,
        like: &[RecordSet],
    ) -> Result<Vec<RecordSet>, DnsError> {
        let Some(cmd) = &self.current_command else {
            return Err(DnsError::Rejected(
                "the exec backend has no current_command, so what is served cannot be read back"
                    .into(),
            ));
        };
        let input = serde_json::to_vec(like)
            .map_err(|e| DnsError::Rejected(format!("cannot encode the query: {e}")))?;
        let f = self
            .run(cmd, input, vec![("QUORATE_ZONE", zone.to_string())])
            .await?;
        Self::judge(program(cmd), &f)?;
        let served: Vec<RecordSet> = serde_json::from_slice(&f.stdout).map_err(|e| {
            DnsError::Rejected(format!(
                "{}: expected a JSON array of {{\"name\",\"rtype\",\"ttl\",\"addrs\"}} on stdout ({e})",
                program(cmd)
            ))
        })?;
        Ok(like
            .iter()
            .map(|l| {
                served
                    .iter()
                    .find(|s| s.same_key(l))
                    .map(|s| RecordSet::new(l.name.clone(), l.rtype, s.ttl, s.addrs.clone()))
                    .unwrap_or_else(|| RecordSet::new(l.name.clone(), l.rtype, 0, Vec::new()))
            })
            .collect())
    }

    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        let proven = match &self.check_command {
            Some(cmd) => {
                let json = serde_json::to_string(expected)
                    .map_err(|e| DnsError::Rejected(format!("cannot encode the records: {e}")))?;
                let env = vec![
                    ("QUORATE_ZONE", zone.to_string()),
                    ("QUORATE_EXPECTED_JSON", json.clone()),
                    ("QUORATE_EXPECTED_ADDRS", addrs_text(expected)),
                ];
                let f = self.run(cmd, json.into_bytes(), env).await?;
                Self::judge(program(cmd), &f)?;
                Some(format!(
                    "exec: check_command {} exited 0 for zone {zone}",
                    program(cmd)
                ))
            }
            None => None,
        };
        let compared = if self.current_command.is_some() {
            let found = self.read_current(zone, expected).await?;
            check_expected(expected, &found)?;
            format!(
                "; current_command reads {} record set(s) as expected",
                expected.len()
            )
        } else {
            String::new()
        };
        Ok(match proven {
            Some(line) => format!("{line}{compared}"),
            None => format!(
                "{UNPROVEN} the exec backend has no check_command, so its credentials and write access are not proven{compared}"
            ),
        })
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        change.validate()?;
        let steps = Checked {
            check_first: self.current_command.is_some() && !self.force,
            read_back: false,
        };
        steps.apply(self, change, self.write(change)).await
    }

    async fn write(&self, change: &Change) -> Result<(), DnsError> {
        let json = serde_json::to_string(change)
            .map_err(|e| DnsError::Rejected(format!("cannot encode the change: {e}")))?;
        let env = vec![
            ("QUORATE_ZONE", change.zone.clone()),
            ("QUORATE_CHANGE_JSON", json.clone()),
            ("QUORATE_FROM_ADDRS", addrs_text(&change.from)),
            ("QUORATE_TO_ADDRS", addrs_text(&change.to)),
            (
                "QUORATE_TTL",
                change
                    .to
                    .first()
                    .map(|s| s.ttl.to_string())
                    .unwrap_or_default(),
            ),
        ];
        let f = self.run(&self.command, json.into_bytes(), env).await?;
        Self::judge(program(&self.command), &f)
    }
}

impl DnsBackend for Exec {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn current<'a>(
        &'a self,
        zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(self.read_current(zone, like))
    }

    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.apply_change(change))
    }

    fn check<'a>(
        &'a self,
        zone: &'a str,
        expected: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<String, DnsError>> {
        Box::pin(self.check_zone(zone, expected))
    }
}
