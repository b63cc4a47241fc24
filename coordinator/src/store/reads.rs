//! Reading the history back: state, DNS changes, rounds with their votes, events. These block
//! on SQLite: the daemon runs them through [`Store::call`]; the CLI and offline checks, which
//! open the file read-only, call them directly.

use rusqlite::{Connection, OptionalExtension as _, params};

use super::types::{
    ChangeStatus, DnsChangeRow, Event, ListFilter, NewRound, Round, RoundFilter, VoteRecord, typed,
};
use super::{Store, StoreError};
use crate::failover::State;

/// `SELECT` of every column [`round_from_row`] reads, then `$rest` (`"WHERE id = ?1"`).
macro_rules! round_select {
    ($rest:literal) => {
        concat!(
            "SELECT id, service, at_ms, trigger, outcome, reason, primary_up, backup_up, votes_up,
                votes_down, votes_invalid, votes_missing, changed_dns, policy_json, spell_first,
                spell_rounds FROM rounds ",
            $rest
        )
    };
}
pub(super) use round_select;

impl Store {
    /// Rounds stored (a spell's uncounted rounds not included).
    pub fn count_rounds(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .query_row("SELECT COUNT(*) FROM rounds", [], |r| r.get(0))?)
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// The persisted state of `service`, `None` when it never ran. A row that does not parse is
    /// an error (refusing to guess where DNS points), never a default.
    pub fn load_state(&self, service: &str) -> Result<Option<State>, StoreError> {
        let json: Option<String> = self
            .lock()
            .query_row(
                "SELECT state_json FROM service_state WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| parse_state(service, &j)).transpose()
    }

    /// Every persisted state: (service, state, updated at), by service name.
    pub fn all_states(&self) -> Result<Vec<(String, State, u64)>, StoreError> {
        let rows: Vec<(String, String, u64)> = {
            let conn = self.lock();
            let mut st = conn.prepare(
                "SELECT service, state_json, updated_ms FROM service_state ORDER BY service",
            )?;
            st.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?
            .collect::<Result<_, _>>()?
        };
        rows.into_iter()
            .map(|(s, j, at)| Ok((s.clone(), parse_state(&s, &j)?, at)))
            .collect()
    }

    pub fn pending_dns_changes(&self, service: &str) -> Result<Vec<DnsChangeRow>, StoreError> {
        self.list_dns_changes_where(
            "service = ?1 AND status = ?2",
            params![service, ChangeStatus::Pending],
            1000,
        )
    }

    pub fn dns_change(&self, id: i64) -> Result<Option<DnsChangeRow>, StoreError> {
        Ok(self
            .list_dns_changes_where("id = ?1", params![id], 1)?
            .into_iter()
            .next())
    }

    pub fn list_dns_changes(&self, f: &ListFilter) -> Result<Vec<DnsChangeRow>, StoreError> {
        let (w, p) = list_where(f, "created_ms");
        self.list_dns_changes_where(&w, rusqlite::params_from_iter(p), f.limit)
    }

    fn list_dns_changes_where(
        &self,
        where_: &str,
        p: impl rusqlite::Params,
        limit: u32,
    ) -> Result<Vec<DnsChangeRow>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT id, service, round_id, to_side, backend, change_json, status, attempts, last_error,
                verification_json, created_ms, updated_ms FROM dns_changes WHERE {where_}
             ORDER BY id DESC LIMIT {limit}"
        ))?;
        let rows = st.query_map(p, |r| {
            let id: i64 = r.get(0)?;
            Ok((
                id,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                typed(r, 3, "dns_changes", "to_side", &id)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                typed(r, 6, "dns_changes", "status", &id)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                service,
                round_id,
                to_side,
                backend,
                change,
                status,
                attempts,
                last_error,
                ver,
                c,
                u,
            ) = row?;
            let json = |column, text: &str| {
                serde_json::from_str(text).map_err(|e| StoreError::BadJson {
                    table: "dns_changes",
                    row: id.to_string(),
                    column,
                    error: e.to_string(),
                })
            };
            out.push(DnsChangeRow {
                id,
                service,
                round_id,
                to_side,
                backend,
                change: json("change_json", &change)?,
                status,
                attempts: attempts as u32,
                last_error,
                verification: ver.map(|v| json("verification_json", &v)).transpose()?,
                created_ms: c as u64,
                updated_ms: u as u64,
            });
        }
        Ok(out)
    }

    pub fn list_rounds(&self, f: &RoundFilter) -> Result<Vec<Round>, StoreError> {
        let lf = ListFilter {
            service: f.service.clone(),
            since_ms: f.since_ms,
            until_ms: f.until_ms,
            before_id: f.before_id,
            limit: f.limit,
        };
        let (mut w, mut p) = list_where(&lf, "at_ms");
        if let Some(o) = f.outcome {
            p.push(rusqlite::types::Value::Text(o.as_str().to_string()));
            w.push_str(&format!(" AND outcome = ?{}", p.len()));
        }
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "{} WHERE {w} ORDER BY id DESC LIMIT {}",
            round_select!(""),
            f.limit
        ))?;
        let rows = st.query_map(rusqlite::params_from_iter(p), round_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn round(&self, id: i64) -> Result<Option<(Round, Vec<VoteRecord>)>, StoreError> {
        let conn = self.lock();
        let round = conn
            .query_row(round_select!("WHERE id = ?1"), [id], round_from_row)
            .optional()?;
        let Some(round) = round else { return Ok(None) };
        let votes = votes_of(&conn, id)?;
        Ok(Some((round, votes)))
    }

    /// Every stored round with its votes, oldest first, in pages of `page` rounds, for
    /// offline re-verification. `f` returns false to stop early.
    pub fn for_each_round_with_votes(
        &self,
        service: Option<&str>,
        mut f: impl FnMut(&Round, &[VoteRecord]) -> bool,
    ) -> Result<(), StoreError> {
        let mut after = 0i64;
        loop {
            let batch: Vec<(Round, Vec<VoteRecord>)> = {
                let conn = self.lock();
                let mut st = conn.prepare_cached(round_select!(
                    "WHERE id > ?1 AND (?2 IS NULL OR service = ?2) ORDER BY id LIMIT 500"
                ))?;
                let rounds: Vec<Round> = st
                    .query_map(params![after, service], round_from_row)?
                    .collect::<Result<_, _>>()?;
                let mut out = Vec::with_capacity(rounds.len());
                for r in rounds {
                    let v = votes_of(&conn, r.id)?;
                    out.push((r, v));
                }
                out
            };
            if batch.is_empty() {
                return Ok(());
            }
            for (r, v) in &batch {
                after = r.id;
                if !f(r, v) {
                    return Ok(());
                }
            }
        }
    }

    pub fn list_events(&self, f: &ListFilter) -> Result<Vec<Event>, StoreError> {
        let (w, p) = list_where(f, "at_ms");
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT id, service, at_ms, kind, message FROM events WHERE {w} ORDER BY id DESC LIMIT {}",
            f.limit
        ))?;
        let rows = st.query_map(rusqlite::params_from_iter(p), |r| {
            let id: i64 = r.get(0)?;
            Ok(Event {
                id,
                service: r.get(1)?,
                at_ms: r.get::<_, i64>(2)? as u64,
                kind: typed(r, 3, "events", "kind", &id)?,
                message: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn parse_state(service: &str, json: &str) -> Result<State, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::BadState {
        service: service.to_string(),
        error: e.to_string(),
    })
}

fn list_where(f: &ListFilter, time_col: &str) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut w = String::from("1 = 1");
    let mut p: Vec<Value> = Vec::new();
    if let Some(s) = &f.service {
        p.push(Value::Text(s.clone()));
        w.push_str(&format!(" AND service = ?{}", p.len()));
    }
    if let Some(t) = f.since_ms {
        p.push(Value::Integer(t as i64));
        w.push_str(&format!(" AND {time_col} >= ?{}", p.len()));
    }
    if let Some(t) = f.until_ms {
        p.push(Value::Integer(t as i64));
        w.push_str(&format!(" AND {time_col} < ?{}", p.len()));
    }
    if let Some(b) = f.before_id {
        p.push(Value::Integer(b));
        w.push_str(&format!(" AND id < ?{}", p.len()));
    }
    (w, p)
}

pub(super) fn round_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Round> {
    let id: i64 = r.get(0)?;
    Ok(Round {
        id,
        round: NewRound {
            service: r.get(1)?,
            at_ms: r.get::<_, i64>(2)? as u64,
            trigger: typed(r, 3, "rounds", "trigger", &id)?,
            outcome: typed(r, 4, "rounds", "outcome", &id)?,
            reason: r.get(5)?,
            primary_up: r.get(6)?,
            backup_up: r.get(7)?,
            votes_up: r.get(8)?,
            votes_down: r.get(9)?,
            votes_invalid: r.get(10)?,
            votes_missing: r.get(11)?,
            changed_dns: r.get(12)?,
            policy: r
                .get::<_, Option<String>>(13)?
                .map(|j| {
                    serde_json::from_str(&j).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            13,
                            rusqlite::types::Type::Text,
                            Box::new(BadPolicy {
                                row: id,
                                error: e.to_string(),
                            }),
                        )
                    })
                })
                .transpose()?,
            spell: match (r.get::<_, Option<i64>>(14)?, r.get::<_, Option<u32>>(15)?) {
                (Some(first_round), Some(rounds)) => Some(super::Spell {
                    first_round,
                    rounds,
                }),
                _ => None,
            },
        },
    })
}

/// A stored policy that does not parse (reported with its row).
#[derive(Debug, thiserror::Error)]
#[error(
    "history database: table rounds, row {row}, column policy_json: stored JSON is unreadable ({error}); restore a backup or correct the row"
)]
struct BadPolicy {
    row: i64,
    error: String,
}

pub(super) fn votes_of(conn: &Connection, round_id: i64) -> rusqlite::Result<Vec<VoteRecord>> {
    let mut st = conn.prepare_cached(
        "SELECT witness, witness_key_id, request_envelope, vote_envelope, valid, verdict, error, latency_ms
         FROM votes WHERE round_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([round_id], |r| {
        Ok(VoteRecord {
            witness: r.get(0)?,
            witness_key_id: r.get(1)?,
            request_envelope: r.get(2)?,
            vote_envelope: r.get(3)?,
            valid: r.get(4)?,
            verdict: r.get(5)?,
            error: r.get(6)?,
            latency_ms: r.get(7)?,
        })
    })?;
    rows.collect()
}

impl Store {
    /// The newest stored round of each service, with its votes, by service name (the
    /// dashboard's "last votes per witness"). One lock for the whole read.
    pub fn latest_rounds(&self) -> Result<Vec<(Round, Vec<VoteRecord>)>, StoreError> {
        let conn = self.lock();
        let ids: Vec<i64> = {
            let mut st = conn
                .prepare_cached("SELECT MAX(id) FROM rounds GROUP BY service ORDER BY service")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let round = conn.query_row(round_select!("WHERE id = ?1"), [id], round_from_row)?;
            out.push((round, votes_of(&conn, id)?));
        }
        Ok(out)
    }
}
