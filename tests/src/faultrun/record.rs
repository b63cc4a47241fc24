//! The record of one fault run: what was done to the lab (the fault log and the coordinator's
//! lifecycle), what the client saw (its DNS answers over time), and what the coordinator says
//! happened (its history read through the API, and `verify-history`'s verdict).
//!
//! Plain data, so the checker ([`super::check`]) is a pure function and its tests can doctor a
//! record by hand. Times are Unix milliseconds, the clock the coordinator stamps its history
//! with (the lab runs on one machine, so one clock). The `*_from_api` functions turn the API's
//! JSON (docs/api.md §8–§10) into these types and are pure too.

use std::fmt;
use std::net::IpAddr;

use serde_json::Value;

/// Unix time in milliseconds.
pub type Ms = u64;

/// Where packets are lost (a bad cable on that host's switch port, both directions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossOn {
    Primary,
    Backup,
    Witness(u8),
}

/// One kind of fault, with its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The primary's web server is killed (restored by starting it again).
    PrimaryWebDown,
    /// The primary's web server answers 500 to every request.
    PrimaryWeb500,
    /// The primary's web server accepts connections and never answers.
    PrimaryWebHang,
    /// The path between the backup and the primary is cut (both directions); the witnesses
    /// still reach the primary.
    BackupPrimaryCut,
    /// Witness `i`'s link is down.
    WitnessLinkDown(u8),
    /// Witness `i` is stopped with SIGSTOP (resumed with SIGCONT).
    WitnessPaused(u8),
    /// The coordinator is SIGKILLed (restarted at the fault's end).
    CoordinatorKilled,
    /// BIND is stopped (started again at the fault's end).
    BindStopped,
    /// `percent`% of the packets on a host's link are lost, each way.
    Loss { on: LossOn, percent: u8 },
}

impl FaultKind {
    /// A short name per kind (not per target), for counting faults by kind.
    pub fn family(self) -> &'static str {
        match self {
            FaultKind::PrimaryWebDown => "primary-web-down",
            FaultKind::PrimaryWeb500 => "primary-web-500",
            FaultKind::PrimaryWebHang => "primary-web-hang",
            FaultKind::BackupPrimaryCut => "backup-primary-cut",
            FaultKind::WitnessLinkDown(_) => "witness-link-down",
            FaultKind::WitnessPaused(_) => "witness-paused",
            FaultKind::CoordinatorKilled => "coordinator-killed",
            FaultKind::BindStopped => "bind-stopped",
            FaultKind::Loss { .. } => "loss",
        }
    }

    /// Whether, while this fault lasts, witness `w` may be unable to reach the primary's web
    /// server (probe it and get a 200). Loss counts: a lost packet can fail a probe.
    pub fn blocks_witness_reaching_primary(self, w: u8) -> bool {
        match self {
            FaultKind::PrimaryWebDown | FaultKind::PrimaryWeb500 | FaultKind::PrimaryWebHang => {
                true
            }
            FaultKind::WitnessLinkDown(i) => i == w,
            FaultKind::Loss { on, .. } => on == LossOn::Primary || on == LossOn::Witness(w),
            FaultKind::BackupPrimaryCut
            | FaultKind::WitnessPaused(_)
            | FaultKind::CoordinatorKilled
            | FaultKind::BindStopped => false,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::WitnessLinkDown(i) => write!(f, "witness-link-down(w{i})"),
            FaultKind::WitnessPaused(i) => write!(f, "witness-paused(w{i})"),
            FaultKind::Loss { on, percent } => {
                let on = match on {
                    LossOn::Primary => "primary".to_string(),
                    LossOn::Backup => "backup".to_string(),
                    LossOn::Witness(i) => format!("w{i}"),
                };
                write!(f, "loss({percent}% on {on})")
            }
            other => f.write_str(other.family()),
        }
    }
}

/// One fault as it was applied: `end_ms` is when it was repaired (`None`: never).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub start_ms: Ms,
    pub end_ms: Option<Ms>,
}

/// One DNS answer the client got (or the error instead of one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub at_ms: Ms,
    /// The addresses, sorted; `Err` when the query failed (timeout, BIND down).
    pub result: Result<Vec<IpAddr>, String>,
}

/// One thing that happened to the coordinator's process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// SIGKILLed by the run.
    Killed(Ms),
    /// Started (again) by the run.
    Started(Ms),
    /// Its API answered after a start.
    ApiUp(Ms),
}

impl Life {
    pub fn at(self) -> Ms {
        match self {
            Life::Killed(t) | Life::Started(t) | Life::ApiUp(t) => t,
        }
    }
}

/// One stored vote of a round, as `GET /v1/rounds/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRec {
    pub witness: String,
    pub valid: bool,
    /// `"up"` or `"down"` for a valid vote.
    pub verdict: Option<String>,
    /// The stored answer verified again (`"ok"`, `"no-answer"`, or a failure).
    pub reverified: String,
}

/// One round of the history (`GET /v1/rounds`), with its votes when they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoundRec {
    pub id: i64,
    pub at_ms: Ms,
    pub trigger: String,
    pub outcome: String,
    pub changed_dns: bool,
    /// The quorum of the round's stored policy.
    pub quorum: Option<u32>,
    /// Whether the stored policy wants a quorum of "up" votes to fail back.
    pub failback_needs_quorum: Option<bool>,
    /// On a spell's closing round: `(first_round, rounds)`.
    pub spell: Option<(i64, u32)>,
    /// `None` unless the round's votes were read (`GET /v1/rounds/{id}`).
    pub votes: Option<Vec<VoteRec>>,
}

/// One DNS change (`GET /v1/dns-changes`), reduced to the name the client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRec {
    pub id: i64,
    pub round_id: Option<i64>,
    pub to_side: String,
    pub status: String,
    pub created_ms: Ms,
    /// The A addresses the change expected (sorted).
    pub from: Vec<IpAddr>,
    /// The A addresses the change writes (sorted).
    pub to: Vec<IpAddr>,
}

/// One event (`GET /v1/events`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRec {
    pub id: i64,
    pub at_ms: Ms,
    pub kind: String,
    pub message: String,
}

/// The history as read through the API at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub at_ms: Ms,
    pub rounds: Vec<RoundRec>,
    pub changes: Vec<ChangeRec>,
    pub events: Vec<EventRec>,
}

/// `quorate-coordinator verify-history --db F --keys F`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// `None` when it was killed by a signal.
    pub exit_code: Option<i32>,
    pub report: String,
}

/// The numbers the invariants need from the lab's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interval_ms: Ms,
    /// `recover_after`: the hold-down, in probe intervals.
    pub hold_down: u32,
    pub witnesses: u8,
    /// The primary's and the backup's A addresses (sorted).
    pub primary: Vec<IpAddr>,
    pub backup: Vec<IpAddr>,
    /// What the zone served before the run (the primary).
    pub initial: Vec<IpAddr>,
    /// Tolerance for the harness's timestamps (a fault is logged just after it is applied,
    /// an answer just after it arrived).
    pub slack_ms: Ms,
    /// Longest a SIGKILLed coordinator may take from its restart to answering its API.
    pub restart_bound_ms: Ms,
}

/// Everything a run recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub settings: Settings,
    pub faults: Vec<Fault>,
    pub answers: Vec<Answer>,
    pub life: Vec<Life>,
    /// The history read just before each SIGKILL of the coordinator.
    pub before_kills: Vec<Snapshot>,
    /// The history read at the end.
    pub last: Snapshot,
    pub verified: Verified,
    /// The zone's SOA serial before the run and at the end (each UPDATE BIND applies adds
    /// one); `None` when it could not be read.
    pub serials: Option<(u32, u32)>,
}

// ---------- from the API's JSON ----------

fn int(v: &Value, key: &str, what: &str) -> Result<i64, String> {
    v[key]
        .as_i64()
        .ok_or_else(|| format!("{what}: `{key}` is not an integer: {}", v[key]))
}

fn ms(v: &Value, key: &str, what: &str) -> Result<Ms, String> {
    v[key]
        .as_u64()
        .ok_or_else(|| format!("{what}: `{key}` is not a time in ms: {}", v[key]))
}

fn text(v: &Value, key: &str, what: &str) -> Result<String, String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{what}: `{key}` is not a string: {}", v[key]))
}

/// A round object (docs/api.md §8). Its votes are left unread (`None`).
pub fn round_from_api(v: &Value) -> Result<RoundRec, String> {
    let what = format!("round {}", v["id"]);
    let spell = match &v["spell"] {
        Value::Null => None,
        s => Some((
            int(s, "first_round", &what)?,
            u32::try_from(int(s, "rounds", &what)?)
                .map_err(|_| format!("{what}: spell rounds out of range"))?,
        )),
    };
    Ok(RoundRec {
        id: int(v, "id", &what)?,
        at_ms: ms(v, "at_ms", &what)?,
        trigger: text(v, "trigger", &what)?,
        outcome: text(v, "outcome", &what)?,
        changed_dns: v["changed_dns"]
            .as_bool()
            .ok_or_else(|| format!("{what}: `changed_dns` is not a bool"))?,
        quorum: v["policy"]["quorum"]
            .as_u64()
            .and_then(|q| u32::try_from(q).ok()),
        failback_needs_quorum: v["policy"]["failback_needs_quorum"].as_bool(),
        spell,
        votes: None,
    })
}

/// The votes of `GET /v1/rounds/{id}` (its `votes` array).
pub fn votes_from_api(v: &Value) -> Result<Vec<VoteRec>, String> {
    let votes = v["votes"]
        .as_array()
        .ok_or_else(|| format!("round {}: no `votes` array", v["round"]["id"]))?;
    votes
        .iter()
        .map(|x| {
            let what = format!("vote of {}", x["witness"]);
            Ok(VoteRec {
                witness: text(x, "witness", &what)?,
                valid: x["valid"]
                    .as_bool()
                    .ok_or_else(|| format!("{what}: `valid` is not a bool"))?,
                verdict: x["verdict"].as_str().map(str::to_string),
                reverified: text(x, "reverified", &what)?,
            })
        })
        .collect()
}

/// The A addresses of `name` in a change's `from` or `to` list, sorted.
fn a_addrs(sets: &Value, name: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = sets
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["rtype"] == "A" && s["name"].as_str() == Some(name))
        .flat_map(|s| s["addrs"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().and_then(|a| a.parse().ok()))
        .collect();
    out.sort();
    out
}

/// A DNS change object (docs/api.md §10), reduced to `name`'s A records (fully qualified,
/// with the trailing dot).
pub fn change_from_api(v: &Value, name: &str) -> Result<ChangeRec, String> {
    let what = format!("DNS change {}", v["id"]);
    Ok(ChangeRec {
        id: int(v, "id", &what)?,
        round_id: v["round_id"].as_i64(),
        to_side: text(v, "to_side", &what)?,
        status: text(v, "status", &what)?,
        created_ms: ms(v, "created_ms", &what)?,
        from: a_addrs(&v["change"]["from"], name),
        to: a_addrs(&v["change"]["to"], name),
    })
}

/// An event object (docs/api.md §9).
pub fn event_from_api(v: &Value) -> Result<EventRec, String> {
    let what = format!("event {}", v["id"]);
    Ok(EventRec {
        id: int(v, "id", &what)?,
        at_ms: ms(v, "at_ms", &what)?,
        kind: text(v, "kind", &what)?,
        message: text(v, "message", &what)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_api_examples() {
        let r = round_from_api(&json!({
            "at_ms": 1795552154069u64, "backup_up": true, "changed_dns": true, "id": 1,
            "outcome": "failover", "primary_up": false, "reason": "…", "service": "www",
            "trigger": "primary-down", "votes_down": 3, "votes_invalid": 0, "votes_missing": 0,
            "votes_up": 0, "policy": {"quorum": 2, "failback_needs_quorum": true},
            "spell": {"first_round": 3, "rounds": 7}
        }))
        .expect("parses");
        assert_eq!(
            (r.id, r.at_ms, r.outcome.as_str(), r.quorum, r.spell),
            (1, 1795552154069, "failover", Some(2), Some((3, 7)))
        );
        let c = change_from_api(
            &json!({
                "attempts": 1, "backend": "rfc2136",
                "change": {
                    "from": [{"addrs": ["10.231.9.10"], "name": "www.lab.test.", "rtype": "A", "ttl": 5}],
                    "to": [{"addrs": ["10.231.9.20"], "name": "www.lab.test.", "rtype": "A", "ttl": 5},
                           {"addrs": ["fd31::20"], "name": "www.lab.test.", "rtype": "AAAA", "ttl": 5}],
                    "zone": "lab.test."
                },
                "created_ms": 5u64, "id": 1, "last_error": null, "round_id": 1, "service": "www",
                "status": "applied", "to_side": "backup", "updated_ms": 6u64, "verification": null
            }),
            "www.lab.test.",
        )
        .expect("parses");
        assert_eq!(
            c.from,
            vec!["10.231.9.10".parse::<IpAddr>().expect("parses")]
        );
        assert_eq!(c.to, vec!["10.231.9.20".parse::<IpAddr>().expect("parses")]);
        let votes = votes_from_api(&json!({"round": {"id": 1}, "votes": [
            {"witness": "w1", "valid": true, "verdict": "down", "reverified": "ok"},
            {"witness": "w2", "valid": false, "verdict": null, "reverified": "no-answer"}
        ]}))
        .expect("parses");
        assert_eq!(votes[1].verdict, None);
        assert!(round_from_api(&json!({"id": "x"})).is_err());
    }
}
