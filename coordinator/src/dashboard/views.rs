//! What the pages show, as plain strings: the templates (`coordinator/templates/`) only lay
//! them out. Built from the services' live status, the history and the witnesses' reliability.

use std::time::{Duration, Instant, UNIX_EPOCH};

use askama::Template;

use crate::api::Live;
use crate::failover::{Override, Side};
use crate::service::ServiceStatus;
use crate::store::{DnsChangeRow, Event, Round, VoteRecord};

/// Unix milliseconds as `2026-12-03T10:00:00Z`; `-` for 0 (never).
pub fn time(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn up(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "up",
        Some(false) => "down",
        None => "-",
    }
}

/// One witness's vote as the overview shows it: `up`, `down`, `invalid` or `missing`.
#[derive(Debug, Clone)]
pub struct VoteCell {
    pub witness: String,
    pub verdict: String,
}

/// What a stored vote says, in one word.
pub fn vote_word(v: &VoteRecord) -> String {
    if v.vote_envelope.is_none() {
        return "missing".into();
    }
    if !v.valid {
        return "invalid".into();
    }
    match v.verdict.as_deref() {
        Some(x) => x.to_string(),
        None => "invalid".into(),
    }
}

#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub name: String,
    pub active: &'static str,
    pub state: String,
    pub override_: &'static str,
    pub readiness: &'static str,
    pub reasons: String,
    pub primary_up: &'static str,
    pub backup_up: &'static str,
    pub tally: String,
    pub last_tick: String,
    pub dns_pending: bool,
    pub awaiting_manual_failback: bool,
    pub failed: Option<String>,
    /// Per witness, from the newest stored round; empty when none was stored yet.
    pub votes: Vec<VoteCell>,
    pub votes_round: Option<i64>,
}

impl ServiceRow {
    pub fn new(s: &ServiceStatus, last: Option<&(Round, Vec<VoteRecord>)>) -> ServiceRow {
        let votes = match last {
            Some((_, votes)) => s
                .witnesses
                .iter()
                .map(|w| VoteCell {
                    witness: w.clone(),
                    verdict: votes
                        .iter()
                        .find(|v| &v.witness == w)
                        .map(vote_word)
                        .unwrap_or_else(|| "missing".into()),
                })
                .collect(),
            None => Vec::new(),
        };
        ServiceRow {
            name: s.service.clone(),
            active: s.active.as_str(),
            state: s.state.clone(),
            override_: s.override_.as_str(),
            readiness: s.readiness.verdict,
            reasons: s
                .readiness
                .reasons
                .iter()
                .map(|r| r.code.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            primary_up: up(s.primary_up),
            backup_up: up(s.backup_up),
            tally: s.last_votes.to_string(),
            last_tick: time(s.last_tick_ms),
            dns_pending: s.dns_pending,
            awaiting_manual_failback: s.awaiting_manual_failback,
            failed: s.failed.clone(),
            votes,
            votes_round: last.map(|(r, _)| r.id),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WitnessRow {
    pub name: String,
    pub url: String,
    pub asked: usize,
    pub answer_rate: String,
    pub p50: String,
    pub p99: String,
    pub disagreement: String,
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0} ms"))
        .unwrap_or_else(|| "-".into())
}

pub fn witness_rows(live: &Live, now: Instant) -> Vec<WitnessRow> {
    live.witnesses
        .iter()
        .map(|w| {
            let s = live.reliability.summary(&w.name, now);
            WitnessRow {
                name: w.name.clone(),
                url: w.url.to_string(),
                asked: s.asked,
                answer_rate: pct(s.answer_rate),
                p50: ms(s.latency_p50_ms),
                p99: ms(s.latency_p99_ms),
                disagreement: pct(s.disagreement_rate),
            }
        })
        .collect()
}

/// The services table and the witnesses: the part of the overview that server-sent events
/// replace.
#[derive(Template)]
#[template(path = "services.html")]
pub struct ServicesFragment {
    pub services: Vec<ServiceRow>,
    pub witnesses: Vec<WitnessRow>,
    pub admin: bool,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct Overview {
    pub fragment: ServicesFragment,
    pub csrf: String,
    pub role: &'static str,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct Login {
    pub error: Option<String>,
}

/// A page with a title and a message (errors, refusals, an action's result).
#[derive(Template)]
#[template(path = "message.html")]
pub struct Message {
    pub title: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct RoundRow {
    pub id: i64,
    pub at: String,
    pub trigger: &'static str,
    pub outcome: &'static str,
    pub reason: String,
    pub primary_up: bool,
    pub votes: String,
    pub changed_dns: bool,
}

impl RoundRow {
    pub fn new(r: &Round) -> RoundRow {
        let n = &r.round;
        RoundRow {
            id: r.id,
            at: time(n.at_ms),
            trigger: n.trigger.as_str(),
            outcome: n.outcome.as_str(),
            reason: n.reason.clone(),
            primary_up: n.primary_up,
            votes: format!(
                "{} down, {} up, {} invalid, {} missing",
                n.votes_down, n.votes_up, n.votes_invalid, n.votes_missing
            ),
            changed_dns: n.changed_dns,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub at: String,
    pub kind: &'static str,
    pub message: String,
}

impl EventRow {
    pub fn new(e: &Event) -> EventRow {
        EventRow {
            at: time(e.at_ms),
            kind: e.kind.as_str(),
            message: e.message.clone(),
        }
    }
}

/// One server's answer after a change: what it was asked and whether it served the change.
#[derive(Debug, Clone)]
pub struct ServerCheck {
    pub server: String,
    pub result: String,
}

#[derive(Debug, Clone)]
pub struct ChangeRow {
    pub id: i64,
    pub created: String,
    pub to: &'static str,
    pub status: &'static str,
    pub attempts: u32,
    pub last_error: String,
    pub backend: String,
    pub checks: Vec<ServerCheck>,
    /// The verification as stored, when it has no per-server list this page knows.
    pub verification: String,
}

impl ChangeRow {
    pub fn new(c: &DnsChangeRow) -> ChangeRow {
        let mut checks = Vec::new();
        let mut rest = String::new();
        // Stored by the DNS worker as `[{server, ok, elapsed_ms, last_seen, error}, ..]`.
        match c.verification.as_ref().map(|v| (v, v.as_array())) {
            Some((_, Some(list))) => {
                for item in list {
                    let ok = item.get("ok").and_then(|o| o.as_bool()) == Some(true);
                    let elapsed = item.get("elapsed_ms").map(plain).unwrap_or_default();
                    let result = if ok {
                        format!("served the change after {elapsed} ms")
                    } else {
                        format!(
                            "lagging after {elapsed} ms: {}",
                            item.get("error").map(plain).unwrap_or_default()
                        )
                    };
                    checks.push(ServerCheck {
                        server: item.get("server").map(plain).unwrap_or_default(),
                        result,
                    });
                }
            }
            Some((v, None)) => rest = v.to_string(),
            None => {}
        }
        ChangeRow {
            id: c.id,
            created: time(c.created_ms),
            to: c.to_side.as_str(),
            status: c.status.as_str(),
            attempts: c.attempts,
            last_error: c.last_error.clone().unwrap_or_default(),
            backend: c.backend.clone(),
            checks,
            verification: rest,
        }
    }
}

/// A JSON value as text: strings without their quotes.
fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Template)]
#[template(path = "service.html")]
pub struct ServicePage {
    pub name: String,
    pub row: ServiceRow,
    pub rounds: Vec<RoundRow>,
    /// The query string of the next (older) page, if there is one.
    pub next: Option<String>,
    pub outcome: String,
    pub since: String,
    pub until: String,
    pub outcomes: Vec<&'static str>,
    pub events: Vec<EventRow>,
    pub changes: Vec<ChangeRow>,
    /// Announced maintenance not yet ended (`quorate-coordinator maintenance add`).
    pub maintenance: Vec<super::status::MaintenanceRow>,
    pub admin: bool,
    pub csrf: String,
}

#[derive(Debug, Clone)]
pub struct VoteRow {
    pub witness: String,
    pub verdict: String,
    pub latency: String,
    pub error: String,
    pub reverified: String,
    pub verified: bool,
    pub evidence: String,
}

#[derive(Template)]
#[template(path = "round.html")]
pub struct RoundPage {
    pub service: String,
    pub round: RoundRow,
    pub votes: Vec<VoteRow>,
    pub csrf: String,
}

/// What an admin is about to do, said in terms of DNS, with the form that does it.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct Confirm {
    pub service: String,
    pub action: &'static str,
    pub title: String,
    pub dns: String,
    pub csrf: String,
}

/// The actions a form may ask for.
pub const ACTIONS: [&str; 4] = ["pin-primary", "pin-backup", "auto", "failback"];

/// What `action` will do to DNS, given the service's status now.
pub fn dns_effect(action: &str, s: &ServiceStatus) -> Option<(String, String)> {
    let now = s.active;
    let moving = |to: Side| {
        if now == to {
            format!(
                "DNS already serves the {}: no record changes now. The service stays on the {} whatever the witnesses say, until the override is set back to auto.",
                to.as_str(),
                to.as_str()
            )
        } else {
            format!(
                "DNS is switched now from the {} to the {} addresses of every name of the service, and stays there whatever the witnesses say until the override is set back to auto.",
                now.as_str(),
                to.as_str()
            )
        }
    };
    Some(match action {
        "pin-primary" => ("Pin to the primary".into(), moving(Side::Primary)),
        "pin-backup" => ("Pin to the backup".into(), moving(Side::Backup)),
        "auto" => (
            "Back to automatic".into(),
            if s.override_ == Override::Auto {
                "The service is already automatic: nothing changes.".into()
            } else {
                format!(
                    "The pin ({}) is lifted. DNS stays on the {} for now; the next rounds decide, with the witnesses' quorum, whether it moves.",
                    s.override_.as_str(),
                    now.as_str()
                )
            },
        ),
        "failback" => (
            "Fail back now".into(),
            if now == Side::Backup {
                "DNS is switched from the backup back to the primary addresses now (a failing pre-failback gate is skipped).".into()
            } else {
                "DNS already serves the primary: the service refuses a failback and nothing changes.".into()
            },
        ),
        _ => return None,
    })
}
