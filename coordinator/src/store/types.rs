//! The values that cross the history boundary, typed: rows as read back, what a decision
//! writes, what the DNS worker writes, and how each enum is spelled in a column.
//!
//! Every enum is stored as exactly the text it was stored as before it was typed
//! (`ToSql` writes [`Side::as_str`] and friends), so no migration is needed. A stored spelling
//! this build does not know is an error naming table, row, column and value, never a default.

use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

use crate::dns::Change;
use crate::failover::{Outcome, Policy, Side, State, Trigger};

/// One vote as stored: the request we sent and the envelope exactly as received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VoteRecord {
    pub witness: String,
    pub witness_key_id: String,
    pub request_envelope: String,
    /// Raw bytes of the witness's answer; `None` when it did not answer.
    #[serde(with = "opt_bytes_as_string")]
    pub vote_envelope: Option<Vec<u8>>,
    pub valid: bool,
    pub verdict: Option<String>,
    /// Why the vote is invalid or missing.
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
}

mod opt_bytes_as_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(String::into_bytes))
    }
}

/// A decision round to record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewRound {
    pub service: String,
    pub at_ms: u64,
    pub trigger: Trigger,
    pub outcome: Outcome,
    pub reason: String,
    pub primary_up: bool,
    pub backup_up: bool,
    pub votes_up: u32,
    pub votes_down: u32,
    pub votes_invalid: u32,
    pub votes_missing: u32,
    pub changed_dns: bool,
    /// The policy the round was decided under; `None` for rounds written before schema 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// On the closing round of a spell of identical rounds: its first round and how many
    /// rounds this one stands for (`store::spells`). `None` on every other round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spell: Option<super::spells::Spell>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub id: i64,
    #[serde(flatten)]
    pub round: NewRound,
}

/// What an entry of the events log is about. Stored as [`EventKind::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A condition worth telling a human about (the message starts with its alert kind).
    Alert,
    /// A latched alert's condition ended.
    Resolved,
    /// The active side changed.
    Transition,
    /// An operator set an override.
    Override,
    /// A DNS change was applied.
    DnsApplied,
    /// A DNS change failed permanently (or its pre-failback hook refused it).
    DnsFailed,
    /// A pending change was found already served after a restart.
    DnsReconciled,
    /// An operator hook failed.
    HookFailed,
    /// One try of the pre-failback gate (failed, passed, or skipped by an operator).
    Gate,
    /// An operator announced or removed a scheduled maintenance (`store::maintenance`).
    Maintenance,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Alert,
        EventKind::Resolved,
        EventKind::Transition,
        EventKind::Override,
        EventKind::DnsApplied,
        EventKind::DnsFailed,
        EventKind::DnsReconciled,
        EventKind::HookFailed,
        EventKind::Gate,
        EventKind::Maintenance,
    ];

    /// The spelling stored in the history, sent in notifications and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Alert => "alert",
            EventKind::Resolved => "resolved",
            EventKind::Transition => "transition",
            EventKind::Override => "override",
            EventKind::DnsApplied => "dns-applied",
            EventKind::DnsFailed => "dns-failed",
            EventKind::DnsReconciled => "dns-reconciled",
            EventKind::HookFailed => "hook-failed",
            EventKind::Gate => "gate",
            EventKind::Maintenance => "maintenance",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A DNS change's life: `pending` before it is sent, then `applied`, `failed` or
/// `superseded` (a newer decision replaced it before it applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeStatus {
    Pending,
    Applied,
    Failed,
    Superseded,
}

impl ChangeStatus {
    pub const ALL: [ChangeStatus; 4] = [
        ChangeStatus::Pending,
        ChangeStatus::Applied,
        ChangeStatus::Failed,
        ChangeStatus::Superseded,
    ];

    /// The spelling stored in the history and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStatus::Pending => "pending",
            ChangeStatus::Applied => "applied",
            ChangeStatus::Failed => "failed",
            ChangeStatus::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeStatus> {
        ChangeStatus::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

crate::failover::spelled!(EventKind, ChangeStatus);

/// A stored spelling this build does not know (the column and row are added by the reader).
#[derive(Debug, thiserror::Error)]
#[error("unknown value {value:?} (expected one of: {expected})")]
pub struct UnknownValue {
    pub value: String,
    pub expected: String,
}

/// [`UnknownValue`] with where it was found.
#[derive(Debug, thiserror::Error)]
#[error(
    "history database: table {table}, row {row}, column {column}: unknown value {value:?} (expected one of: {expected}); the file was written by another build or edited by hand: restore a backup or correct the row"
)]
pub struct UnknownStored {
    pub table: &'static str,
    pub row: String,
    pub column: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! text_column {
    ($($t:ty => $all:expr),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }
        impl FromSql for $t {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    FromSqlError::Other(Box::new(UnknownValue {
                        value: s.to_string(),
                        expected: $all.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", "),
                    }))
                })
            }
        }
    )*};
}
text_column!(
    Side => [Side::Primary, Side::Backup],
    Trigger => [Trigger::PrimaryDown, Trigger::PrimaryUp, Trigger::Override, Trigger::ManualFailback],
    Outcome => Outcome::ALL,
    EventKind => EventKind::ALL,
    ChangeStatus => ChangeStatus::ALL
);

/// Stored as the same JSON text the driver wrote before it was typed.
fn json_sql<T: Serialize>(v: &T) -> rusqlite::Result<ToSqlOutput<'static>> {
    serde_json::to_string(v)
        .map(ToSqlOutput::from)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl ToSql for State {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        json_sql(self)
    }
}

impl ToSql for Policy {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        json_sql(self)
    }
}

impl ToSql for Change {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        json_sql(self)
    }
}

/// Reads column `idx` of `row`; an unknown spelling becomes [`UnknownStored`] naming
/// `table`, the row and `column`.
pub(super) fn typed<T: FromSql>(
    r: &rusqlite::Row<'_>,
    idx: usize,
    table: &'static str,
    column: &'static str,
    row: &dyn std::fmt::Display,
) -> rusqlite::Result<T> {
    r.get(idx).map_err(|e| match e {
        rusqlite::Error::FromSqlConversionFailure(i, ty, src) => {
            match src.downcast::<UnknownValue>() {
                Ok(u) => rusqlite::Error::FromSqlConversionFailure(
                    i,
                    ty,
                    Box::new(UnknownStored {
                        table,
                        row: row.to_string(),
                        column,
                        value: u.value,
                        expected: u.expected,
                    }),
                ),
                Err(src) => rusqlite::Error::FromSqlConversionFailure(i, ty, src),
            }
        }
        other => other,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub service: String,
    pub at_ms: u64,
    pub kind: EventKind,
    pub message: String,
}

/// A DNS change as stored. `change` and `verification` stay the JSON they were written as
/// (the API and CLI show them as they are); [`DnsChangeRow::parsed_change`] types the change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsChangeRow {
    pub id: i64,
    pub service: String,
    pub round_id: Option<i64>,
    pub to_side: Side,
    pub backend: String,
    pub change: serde_json::Value,
    pub status: ChangeStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub verification: Option<serde_json::Value>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl DnsChangeRow {
    /// The stored change as the DNS backend takes it.
    pub fn parsed_change(&self) -> Result<Change, super::StoreError> {
        serde_json::from_value(self.change.clone()).map_err(|e| super::StoreError::BadJson {
            table: "dns_changes",
            row: self.id.to_string(),
            column: "change_json",
            error: e.to_string(),
        })
    }
}

/// Filters for listing rounds; `before_id` pages backwards (newest first).
#[derive(Clone, Debug, Default)]
pub struct RoundFilter {
    pub service: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub outcome: Option<Outcome>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Filters for events and DNS changes.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub service: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// What one call to the decision function produced, to be written atomically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub service: String,
    pub at_ms: u64,
    /// The persisted state, when it changed.
    pub state: Option<State>,
    pub round: Option<NewRound>,
    pub votes: Vec<VoteRecord>,
    pub events: Vec<(EventKind, String)>,
    pub dns_change: Option<PendingChange>,
}

/// A DNS change recorded as `pending` with the decision that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingChange {
    pub to_side: Side,
    /// The backend's kind (`dryrun`, `rfc2136`, ...).
    pub backend: String,
    pub change: Change,
}

/// One entry of the events log to write.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub service: String,
    pub at_ms: u64,
    pub kind: EventKind,
    pub message: String,
}

/// A write after the decision: what the DNS worker, reconciliation and hooks record. Each is
/// one transaction, and each can be written again (the DNS worker keeps the ones that failed
/// and writes them later, so the history never lies about DNS).
#[derive(Clone, Debug, PartialEq)]
pub enum HistoryWrite {
    /// An entry of the events log on its own.
    Event(NewEvent),
    /// One attempt to apply change `id` (with its error, if it failed).
    DnsAttempt {
        id: i64,
        at_ms: u64,
        error: Option<String>,
    },
    /// Change `id` reached `status` (with the event that reports it).
    DnsFinish {
        id: i64,
        at_ms: u64,
        status: ChangeStatus,
        error: Option<String>,
        event: Option<NewEvent>,
    },
    /// What the authoritative servers answered after change `id` (with an alert when some lag).
    DnsVerified {
        id: i64,
        verification: serde_json::Value,
        alert: Option<NewEvent>,
    },
}

impl HistoryWrite {
    /// The `what` label of `quorate_history_write_failures_total`.
    pub fn what(&self) -> &'static str {
        match self {
            HistoryWrite::Event(_) => "event",
            HistoryWrite::DnsAttempt { .. } => "dns-attempt",
            HistoryWrite::DnsFinish { .. } => "dns-finish",
            HistoryWrite::DnsVerified { .. } => "dns-verified",
        }
    }
}
