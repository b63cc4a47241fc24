//! Readiness: would a failover work right now? Per service, a verdict (`ready`, or
//! `not-ready` with every reason), re-proven continuously, so a broken setup is found before
//! the outage it was bought for (SPEC §9, `docs/readiness.md`).
//!
//! - Every interval the service's witness answers are sorted into reasons ([`witness_reasons`]):
//!   silent, TLS pin, untrusted, allowlist, clock, wrong key, and the quorum they leave.
//! - Every `[readiness] interval` a separate task ([`checks`]) proves the DNS side with a
//!   harmless authenticated operation, compares what every authoritative server serves with the
//!   persisted side (drift), and asks the witnesses whether they can reach the backup.
//! - [`Alarm`] and [`Spells`] turn the live reasons into alerts with hysteresis: a reason must
//!   hold for `alert_after` before "not ready" is sent, and readiness must hold as long before
//!   "ready again".
//!
//! Everything here but [`checks`] is pure: `now` comes in as an argument.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::config::WitnessConfig;
use crate::witnesses::{Answer, Failure};

pub mod checks;

/// One reason a service is not ready: a stable `code` (a metric label, listed in
/// `docs/readiness.md`), what it is about, what is wrong and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub code: &'static str,
    /// `witness w2`, `dns 127.0.0.1:53`, `service www`, `coordinator`.
    pub subject: String,
    pub message: String,
    pub fix: String,
}

impl Reason {
    pub fn new(
        code: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Reason {
        Reason {
            code,
            subject: subject.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// What identifies a reason across evaluations: the same problem with the same thing.
    pub fn key(&self) -> String {
        format!("{} {}", self.code, self.subject)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.subject, self.message, self.fix)
    }
}

/// Every reason code, for documentation and for resetting the per-reason metric series.
pub const CODES: &[&str] = &[
    "witness-unreachable",
    "witness-tls",
    "witness-tls-pin",
    "witness-untrusted",
    "witness-target-not-allowed",
    "witness-clock",
    "coordinator-clock",
    "witness-wrong-key",
    "witness-busy",
    "witness-refused",
    "witness-invalid-vote",
    "quorum",
    "dns-credentials",
    "dns-unreachable",
    "dns-zone",
    "dns-rejected",
    "dns-drift",
    "dns-servers",
    "backup-unreachable",
    "backup-not-allowed",
];

/// What a witness was asked to probe: the primary (every interval) or the backup (the
/// readiness check's "is the backup reachable from outside?").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked<'a> {
    Primary(&'a str),
    Backup(&'a str),
}

fn human_ms(ms: i64) -> String {
    let a = ms.unsigned_abs();
    if a >= 120_000 {
        // Rounded to the second: a skew measured as 599,990 ms is "10 min 0 s".
        let s = (a + 500) / 1000;
        format!("{} min {} s", s / 60, s % 60)
    } else if a >= 1000 {
        format!("{:.1} s", a as f64 / 1000.0)
    } else {
        format!("{a} ms")
    }
}

/// The one witness failure as a reason, with its fix.
pub fn witness_reason(w: &WitnessConfig, asked: Asked<'_>, failure: &Failure) -> Reason {
    let subject = format!("witness {}", w.name);
    let url = &w.url;
    match failure {
        Failure::Unreachable(t) | Failure::Request(t) => Reason::new(
            "witness-unreachable",
            subject,
            format!("no answer from {url}: {t}"),
            format!(
                "start quorate-witness there (systemctl status quorate-witness), or open the path from this coordinator to {url}"
            ),
        ),
        Failure::TooLarge => Reason::new(
            "witness-invalid-vote",
            subject,
            format!("{url} answered with more than the protocol allows"),
            "check that the URL points at quorate-witness and not another server",
        ),
        Failure::Tls(t) if t.contains("pin mismatch") => {
            let presented = t
                .split("presents sha256 ")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .unwrap_or("?");
            Reason::new(
                "witness-tls-pin",
                subject,
                format!("TLS certificate of {url} does not match cert_sha256: {t}"),
                format!(
                    "if the witness's certificate was replaced on purpose, set cert_sha256 = \"{presented}\" in its [[witness]] table and reload; otherwise {url} is not that witness"
                ),
            )
        }
        Failure::Tls(t) => Reason::new(
            "witness-tls",
            subject,
            format!("TLS with {url} failed: {t}"),
            "a witness serves HTTPS only: check the URL's host and port",
        ),
        Failure::Refused {
            code,
            reason,
            skew_ms,
            ..
        } => match code.as_str() {
            "unknown_coordinator" => Reason::new(
                "witness-untrusted",
                subject,
                format!("the witness does not trust this coordinator: {reason}"),
                "add this coordinator's public key (`quorate-coordinator check --online` prints it) to the witness's trusted coordinators and restart it",
            ),
            "target_not_allowed" => {
                let (side, addr) = match asked {
                    Asked::Primary(a) => ("primary", a),
                    Asked::Backup(a) => ("backup", a),
                };
                Reason::new(
                    if side == "backup" {
                        "backup-not-allowed"
                    } else {
                        "witness-target-not-allowed"
                    },
                    subject,
                    format!("the witness refuses to probe the {side} ({addr}): {reason}"),
                    format!("add {addr} to the witness's allowlist and restart it"),
                )
            }
            "stale" => {
                let skew = skew_ms.map(|s| -s);
                Reason::new(
                    "witness-clock",
                    subject,
                    match skew {
                        Some(s) => format!(
                            "the witness refuses this coordinator's requests as stale: its clock is {} {} this coordinator's",
                            human_ms(s),
                            if s > 0 { "ahead of" } else { "behind" }
                        ),
                        None => format!("the witness refuses requests as stale: {reason}"),
                    },
                    "run NTP (chrony or systemd-timesyncd) on the witness and on this coordinator",
                )
            }
            "rate_limited" | "overloaded" => Reason::new(
                "witness-busy",
                subject,
                format!("the witness turns requests away: {reason}"),
                "raise the witness's per-coordinator rate limit, or ask it about fewer services",
            ),
            _ => Reason::new(
                "witness-refused",
                subject,
                format!("the witness refused the request ({code}): {reason}"),
                "read the witness's log for the request",
            ),
        },
        Failure::Invalid { code, message }
            if *code == "bad_signature" || *code == "wrong_witness" =>
        {
            Reason::new(
                "witness-wrong-key",
                subject,
                format!(
                    "votes from {url} do not verify with the configured public_key ({}): {message}",
                    w.key_id
                ),
                "if the witness's key was replaced on purpose, set public_key to the key its /v1/identity shows (`check --online` prints it) and reload; otherwise the URL points at another witness",
            )
        }
        Failure::Invalid { code, message } => Reason::new(
            "witness-invalid-vote",
            subject,
            format!("invalid vote ({code}): {message}"),
            "read the witness's log; a witness and coordinator of different versions may disagree",
        ),
    }
}

/// The reasons one interval's answers give: one per failing witness, the coordinator's own
/// clock when every witness that answered refuses it as stale (two or more, none valid), and
/// `quorum` when the valid votes are fewer than a failover needs.
pub fn witness_reasons(
    service: &str,
    witnesses: &[&WitnessConfig],
    answers: &[Answer],
    asked: Asked<'_>,
    quorum: u32,
) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let mut stale = Vec::new();
    let mut valid = 0u32;
    for a in answers {
        let Some(w) = witnesses.iter().find(|w| w.name == a.witness) else {
            continue;
        };
        match &a.failure {
            None => valid += 1,
            Some(f) => {
                let r = witness_reason(w, asked, f);
                if r.code == "witness-clock" {
                    stale.push((r, a.skew_ms()));
                } else {
                    reasons.push(r);
                }
            }
        }
    }
    if stale.len() >= 2 && valid == 0 {
        let skews: Vec<i64> = stale.iter().filter_map(|(_, s)| *s).collect();
        // The witnesses' clocks minus ours: all on one side means ours is the odd one.
        let ours = skews.first().map(|s| -s);
        let same_side = skews.iter().all(|s| s.signum() == skews[0].signum());
        if same_side && let Some(off) = ours {
            reasons.push(Reason::new(
                "coordinator-clock",
                "coordinator",
                format!(
                    "every witness refuses this coordinator's requests as stale: this coordinator's clock is {} {} theirs",
                    human_ms(off),
                    if off > 0 { "ahead of" } else { "behind" }
                ),
                "run NTP (chrony or systemd-timesyncd) on this coordinator: `timedatectl` shows whether it is synchronised",
            ));
            stale.clear();
        }
    }
    reasons.extend(stale.into_iter().map(|(r, _)| r));
    if matches!(asked, Asked::Primary(_)) && valid < quorum {
        reasons.push(Reason::new(
            "quorum",
            format!("service {service}"),
            format!(
                "{valid} of {} witnesses gave a valid vote; a failover needs {quorum}",
                witnesses.len()
            ),
            "fix the witness reasons listed with this one, or add witnesses",
        ));
    }
    reasons
}

/// Keyed spells of a condition: how long each has held, and which have held at least
/// `after_ms` (those are "confirmed": worth an alert).
#[derive(Debug, Clone, Default)]
pub struct Spells {
    after_ms: u64,
    open: BTreeMap<String, Spell>,
}

#[derive(Debug, Clone)]
struct Spell {
    since_ms: u64,
    confirmed: bool,
    reason: Reason,
}

/// What one update of [`Spells`] changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpellChanges {
    /// Reasons that have now held for `after_ms`.
    pub confirmed: Vec<Reason>,
    /// Confirmed reasons that are gone.
    pub ended: Vec<Reason>,
}

impl Spells {
    pub fn new(after_ms: u64) -> Spells {
        Spells {
            after_ms,
            open: BTreeMap::new(),
        }
    }

    /// Feeds the reasons present now; a reason absent from `present` ends its spell.
    pub fn update(&mut self, now_ms: u64, present: &[Reason]) -> SpellChanges {
        let mut ch = SpellChanges::default();
        let keys: Vec<String> = present.iter().map(Reason::key).collect();
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| !keys.contains(k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(s) = self.open.remove(&k)
                && s.confirmed
            {
                ch.ended.push(s.reason);
            }
        }
        for (r, k) in present.iter().zip(keys) {
            let s = self.open.entry(k).or_insert_with(|| Spell {
                since_ms: now_ms,
                confirmed: false,
                reason: r.clone(),
            });
            // The newest wording (a skew that grew, another server) is the one reported.
            s.reason = r.clone();
            if !s.confirmed && now_ms.saturating_sub(s.since_ms) >= self.after_ms {
                s.confirmed = true;
                ch.confirmed.push(r.clone());
            }
        }
        ch
    }

    pub fn after_ms(&self) -> u64 {
        self.after_ms
    }

    pub fn confirmed(&self) -> Vec<Reason> {
        self.open
            .values()
            .filter(|s| s.confirmed)
            .map(|s| s.reason.clone())
            .collect()
    }

    /// When the oldest open spell began.
    pub fn oldest(&self) -> Option<u64> {
        self.open.values().map(|s| s.since_ms).min()
    }
}

/// Which services have a "not ready" alert out, shared by every service task of the process
/// (a service restarted by a reload picks its alarm up again, and its fix gets a "ready
/// again").
#[derive(Clone, Debug, Default)]
pub struct AlertMemory(std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>);

impl AlertMemory {
    pub fn alerting(&self, service: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(service)
    }

    pub fn set(&self, service: &str, alerting: bool) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if alerting {
            m.insert(service.to_string());
        } else {
            m.remove(service);
        }
    }
}

/// A readiness alert to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Alert {
    /// Readiness lost (or, while lost, a further reason confirmed): the confirmed reasons.
    NotReady { reasons: Vec<Reason>, more: bool },
    /// Ready again after an alert, for `alert_after` without a reason.
    ReadyAgain,
}

/// The readiness alarm of one service: alerts once when a reason has held `alert_after`,
/// again for each further confirmed reason, and once "ready again" when no reason has been
/// seen for `alert_after` after an alert. A reason that comes and goes quicker never alerts.
#[derive(Debug, Clone)]
pub struct Alarm {
    spells: Spells,
    alerting: bool,
    clear_since: Option<u64>,
    after_ms: u64,
}

impl Alarm {
    pub fn new(after_ms: u64) -> Alarm {
        Alarm {
            spells: Spells::new(after_ms),
            alerting: false,
            clear_since: None,
            after_ms,
        }
    }

    pub fn alerting(&self) -> bool {
        self.alerting
    }

    /// An alarm whose "not ready" alert is already out (a service restarted by a reload):
    /// its reasons are not announced again, and readiness back sends "ready again".
    pub fn resumed(after_ms: u64) -> Alarm {
        Alarm {
            alerting: true,
            ..Alarm::new(after_ms)
        }
    }

    pub fn update(&mut self, now_ms: u64, reasons: &[Reason]) -> Option<Alert> {
        let ch = self.spells.update(now_ms, reasons);
        if !reasons.is_empty() {
            self.clear_since = None;
            if ch.confirmed.is_empty() {
                return None;
            }
            let more = self.alerting;
            self.alerting = true;
            return Some(Alert::NotReady {
                reasons: if more {
                    ch.confirmed
                } else {
                    self.spells.confirmed()
                },
                more,
            });
        }
        let since = *self.clear_since.get_or_insert(now_ms);
        if self.alerting && now_ms.saturating_sub(since) >= self.after_ms {
            self.alerting = false;
            return Some(Alert::ReadyAgain);
        }
        None
    }
}

/// A service's readiness as the API and `status` show it.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ReadinessStatus {
    /// `ready`, `not-ready`, or `unknown` before the first evaluation.
    pub verdict: &'static str,
    /// Since when the verdict holds (Unix ms).
    pub since_ms: u64,
    pub reasons: Vec<Reason>,
    /// Whether a "not ready" alert is out (and no "ready again" yet).
    pub alerting: bool,
    /// The last DNS-side proof (credentials, servers), if one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<checks::DnsReport>,
}

impl ReadinessStatus {
    pub fn unknown() -> ReadinessStatus {
        ReadinessStatus {
            verdict: "unknown",
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
