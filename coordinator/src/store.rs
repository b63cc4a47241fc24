//! The history: every piece of SQL lives here. SQLite in WAL mode, schema version checked at
//! start, migrations applied in order. Rounds with their raw signed votes, events, DNS changes
//! (pending → applied / failed) and each service's persisted decision state.
//!
//! rusqlite blocks, so callers on the async runtime go through [`Store::call`], which runs
//! the closure on the blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

/// The schema this build writes. A database from a newer build is refused.
pub const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: &[&str] = &[
    // 1: the initial schema
    "CREATE TABLE service_state (
        service TEXT PRIMARY KEY,
        state_json TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE rounds (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT NOT NULL,
        primary_up INTEGER NOT NULL,
        backup_up INTEGER NOT NULL,
        votes_up INTEGER NOT NULL,
        votes_down INTEGER NOT NULL,
        votes_invalid INTEGER NOT NULL,
        votes_missing INTEGER NOT NULL,
        changed_dns INTEGER NOT NULL
    );
    CREATE INDEX rounds_by_service_time ON rounds(service, at_ms);
    CREATE INDEX rounds_by_time ON rounds(at_ms);
    CREATE TABLE votes (
        id INTEGER PRIMARY KEY,
        round_id INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
        witness TEXT NOT NULL,
        witness_key_id TEXT NOT NULL,
        request_envelope TEXT NOT NULL,
        vote_envelope BLOB,
        valid INTEGER NOT NULL,
        verdict TEXT,
        error TEXT,
        latency_ms REAL
    );
    CREATE INDEX votes_by_round ON votes(round_id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_service_time ON events(service, at_ms);
    CREATE TABLE dns_changes (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        round_id INTEGER REFERENCES rounds(id),
        to_side TEXT NOT NULL,
        backend TEXT NOT NULL,
        change_json TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        verification_json TEXT,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX dns_changes_by_service ON dns_changes(service, id);
    CREATE INDEX dns_changes_pending ON dns_changes(status);",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("history database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "history database {path} has schema version {found}, newer than this build understands ({SCHEMA_VERSION}); upgrade quorate-coordinator"
    )]
    TooNew { path: String, found: i64 },
    #[error("history database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("history database: stored JSON is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("history database: worker thread failed: {0}")]
    Join(String),
}

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
    pub trigger: String,
    pub outcome: String,
    pub reason: String,
    pub primary_up: bool,
    pub backup_up: bool,
    pub votes_up: u32,
    pub votes_down: u32,
    pub votes_invalid: u32,
    pub votes_missing: u32,
    pub changed_dns: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    pub id: i64,
    #[serde(flatten)]
    pub round: NewRound,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: i64,
    pub service: String,
    pub at_ms: u64,
    pub kind: String,
    pub message: String,
}

/// A DNS change's life: `pending` before it is sent, then `applied`, `failed` or
/// `superseded` (a newer decision replaced it before it applied).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsChangeRow {
    pub id: i64,
    pub service: String,
    pub round_id: Option<i64>,
    pub to_side: String,
    pub backend: String,
    pub change: serde_json::Value,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub verification: Option<serde_json::Value>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// Filters for listing rounds; `before_id` pages backwards (newest first).
#[derive(Clone, Debug, Default)]
pub struct RoundFilter {
    pub service: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub outcome: Option<String>,
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

/// A handle to the history database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: p.clone(),
            source,
        })?;
        Self::init(conn, &p)
    }

    /// Opens an existing database read-only (for the CLI while the daemon runs).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: p.clone(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: p, found });
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn init(mut conn: Connection, path: &str) -> Result<Store, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // auto_vacuum must be chosen before the first table exists.
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
        )?;
        let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_string(),
                found,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the blocking pool, off the async workers.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))?
    }

    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    // ---- service state ----

    pub fn load_state(&self, service: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT state_json FROM service_state WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn all_states(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare(
            "SELECT service, state_json, updated_ms FROM service_state ORDER BY service",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn save_state(
        &self,
        service: &str,
        state_json: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO service_state (service, state_json, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(service) DO UPDATE SET state_json = excluded.state_json, updated_ms = excluded.updated_ms",
            params![service, state_json, now_ms as i64],
        )?;
        Ok(())
    }

    // ---- one decision, written atomically ----

    /// Writes, in one transaction: the new state (if any), the round with its votes (if
    /// any), events, and a pending DNS change (if any). Returns (round id, change id).
    /// Everything a decision produced lands together or not at all, so a crash can never
    /// leave a DNS change without the round that justified it.
    pub fn record_decision(&self, d: &Decision) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if let Some(state) = &d.state_json {
            tx.execute(
                "INSERT INTO service_state (service, state_json, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(service) DO UPDATE SET state_json = excluded.state_json, updated_ms = excluded.updated_ms",
                params![d.service, state, d.at_ms as i64],
            )?;
        }
        let mut round_id = None;
        if let Some(r) = &d.round {
            tx.execute(
                "INSERT INTO rounds (service, at_ms, trigger, outcome, reason, primary_up, backup_up,
                    votes_up, votes_down, votes_invalid, votes_missing, changed_dns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    r.service,
                    r.at_ms as i64,
                    r.trigger,
                    r.outcome,
                    r.reason,
                    r.primary_up,
                    r.backup_up,
                    r.votes_up,
                    r.votes_down,
                    r.votes_invalid,
                    r.votes_missing,
                    r.changed_dns
                ],
            )?;
            let id = tx.last_insert_rowid();
            round_id = Some(id);
            let mut ins = tx.prepare_cached(
                "INSERT INTO votes (round_id, witness, witness_key_id, request_envelope, vote_envelope,
                    valid, verdict, error, latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for v in &d.votes {
                ins.execute(params![
                    id,
                    v.witness,
                    v.witness_key_id,
                    v.request_envelope,
                    v.vote_envelope,
                    v.valid,
                    v.verdict,
                    v.error,
                    v.latency_ms
                ])?;
            }
        }
        for (kind, message) in &d.events {
            tx.execute(
                "INSERT INTO events (service, at_ms, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![d.service, d.at_ms as i64, kind, message],
            )?;
        }
        let mut change_id = None;
        if let Some(c) = &d.dns_change {
            // A newer decision supersedes any change still pending for this service.
            tx.execute(
                "UPDATE dns_changes SET status = 'superseded', updated_ms = ?2
                 WHERE service = ?1 AND status = 'pending'",
                params![d.service, d.at_ms as i64],
            )?;
            tx.execute(
                "INSERT INTO dns_changes (service, round_id, to_side, backend, change_json, status,
                    attempts, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
                params![
                    d.service,
                    round_id,
                    c.to_side,
                    c.backend,
                    c.change_json,
                    d.at_ms as i64
                ],
            )?;
            change_id = Some(tx.last_insert_rowid());
        }
        tx.commit()?;
        Ok((round_id, change_id))
    }

    pub fn add_event(
        &self,
        service: &str,
        at_ms: u64,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO events (service, at_ms, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![service, at_ms as i64, kind, message],
        )?;
        Ok(())
    }

    // ---- DNS changes ----

    pub fn dns_change_attempt(
        &self,
        id: i64,
        now_ms: u64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE dns_changes SET attempts = attempts + 1, last_error = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, error, now_ms as i64],
        )?;
        Ok(())
    }

    pub fn dns_change_finish(
        &self,
        id: i64,
        status: &str,
        now_ms: u64,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE dns_changes SET status = ?2, last_error = COALESCE(?3, last_error), updated_ms = ?4
             WHERE id = ?1",
            params![id, status, error, now_ms as i64],
        )?;
        Ok(())
    }

    pub fn dns_change_verified(
        &self,
        id: i64,
        verification: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE dns_changes SET verification_json = ?2 WHERE id = ?1",
            params![id, verification.to_string()],
        )?;
        Ok(())
    }

    pub fn pending_dns_changes(&self, service: &str) -> Result<Vec<DnsChangeRow>, StoreError> {
        self.list_dns_changes_where(
            "service = ?1 AND status = 'pending'",
            params![service],
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
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
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
            out.push(DnsChangeRow {
                id,
                service,
                round_id,
                to_side,
                backend,
                change: serde_json::from_str(&change)?,
                status,
                attempts: attempts as u32,
                last_error,
                verification: ver.map(|v| serde_json::from_str(&v)).transpose()?,
                created_ms: c as u64,
                updated_ms: u as u64,
            });
        }
        Ok(out)
    }

    // ---- reading history ----

    pub fn list_rounds(&self, f: &RoundFilter) -> Result<Vec<Round>, StoreError> {
        let lf = ListFilter {
            service: f.service.clone(),
            since_ms: f.since_ms,
            until_ms: f.until_ms,
            before_id: f.before_id,
            limit: f.limit,
        };
        let (mut w, mut p) = list_where(&lf, "at_ms");
        if let Some(o) = &f.outcome {
            p.push(rusqlite::types::Value::Text(o.clone()));
            w.push_str(&format!(" AND outcome = ?{}", p.len()));
        }
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT id, service, at_ms, trigger, outcome, reason, primary_up, backup_up, votes_up,
                votes_down, votes_invalid, votes_missing, changed_dns
             FROM rounds WHERE {w} ORDER BY id DESC LIMIT {}",
            f.limit
        ))?;
        let rows = st.query_map(rusqlite::params_from_iter(p), round_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn round(&self, id: i64) -> Result<Option<(Round, Vec<VoteRecord>)>, StoreError> {
        let conn = self.lock();
        let round = conn
            .query_row(
                "SELECT id, service, at_ms, trigger, outcome, reason, primary_up, backup_up, votes_up,
                    votes_down, votes_invalid, votes_missing, changed_dns FROM rounds WHERE id = ?1",
                [id],
                round_from_row,
            )
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
                let mut st = conn.prepare_cached(
                    "SELECT id, service, at_ms, trigger, outcome, reason, primary_up, backup_up, votes_up,
                        votes_down, votes_invalid, votes_missing, changed_dns FROM rounds
                     WHERE id > ?1 AND (?2 IS NULL OR service = ?2) ORDER BY id LIMIT 500",
                )?;
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
            Ok(Event {
                id: r.get(0)?,
                service: r.get(1)?,
                at_ms: r.get::<_, i64>(2)? as u64,
                kind: r.get(3)?,
                message: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- retention ----

    /// Deletes rounds older than `keep_ms` that changed nothing (their votes go with them),
    /// and events older than that; rounds that changed DNS and all DNS changes are kept.
    /// Then returns freed pages to the file system and truncates the WAL, so the file stays
    /// bounded under a long run. Returns the number of rounds deleted.
    pub fn apply_retention(&self, now_ms: u64, keep_ms: u64) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(keep_ms) as i64;
        let conn = self.lock();
        let mut total = 0;
        // In slices, so the writer lock is never held for long.
        loop {
            let n = conn.execute(
                "DELETE FROM rounds WHERE id IN (
                    SELECT id FROM rounds WHERE at_ms < ?1 AND changed_dns = 0 LIMIT 5000)",
                [cutoff],
            )?;
            total += n;
            if n == 0 {
                break;
            }
        }
        conn.execute(
            "DELETE FROM events WHERE at_ms < ?1 AND kind NOT IN ('transition', 'override')",
            [cutoff],
        )?;
        conn.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(total)
    }
}

/// What one call to the decision function produced, to be written atomically.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    pub service: String,
    pub at_ms: u64,
    pub state_json: Option<String>,
    pub round: Option<NewRound>,
    pub votes: Vec<VoteRecord>,
    pub events: Vec<(String, String)>,
    pub dns_change: Option<PendingChange>,
}

#[derive(Clone, Debug)]
pub struct PendingChange {
    pub to_side: String,
    pub backend: String,
    pub change_json: String,
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

fn round_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Round> {
    Ok(Round {
        id: r.get(0)?,
        round: NewRound {
            service: r.get(1)?,
            at_ms: r.get::<_, i64>(2)? as u64,
            trigger: r.get(3)?,
            outcome: r.get(4)?,
            reason: r.get(5)?,
            primary_up: r.get(6)?,
            backup_up: r.get(7)?,
            votes_up: r.get(8)?,
            votes_down: r.get(9)?,
            votes_invalid: r.get(10)?,
            votes_missing: r.get(11)?,
            changed_dns: r.get(12)?,
        },
    })
}

fn votes_of(conn: &Connection, round_id: i64) -> rusqlite::Result<Vec<VoteRecord>> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400_000;

    fn decision(service: &str, at_ms: u64, changed: bool, votes: usize) -> Decision {
        let vote = VoteRecord {
            witness: "w1".into(),
            witness_key_id: "0123456789abcdef".into(),
            request_envelope: "r".repeat(900),
            vote_envelope: Some(vec![b'v'; 700]),
            valid: true,
            verdict: Some("down".into()),
            error: None,
            latency_ms: Some(3.5),
        };
        Decision {
            service: service.into(),
            at_ms,
            state_json: None,
            round: Some(NewRound {
                service: service.into(),
                at_ms,
                trigger: "primary-down".into(),
                outcome: if changed { "failover" } else { "disputed" }.into(),
                reason: "test".into(),
                primary_up: false,
                backup_up: true,
                votes_up: 0,
                votes_down: votes as u32,
                votes_invalid: 0,
                votes_missing: 0,
                changed_dns: changed,
            }),
            votes: vec![vote; votes],
            events: vec![("alert".into(), "x".into())],
            dns_change: changed.then(|| PendingChange {
                to_side: "backup".into(),
                backend: "dryrun".into(),
                change_json: "{}".into(),
            }),
        }
    }

    fn file_size(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn migrates_a_new_file_and_reopens_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.record_decision(&decision("www", 1, true, 3)).unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.list_rounds(&RoundFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .len(),
            1
        );
        let mode: String = s
            .lock()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_a_database_from_a_newer_build() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("newer than this build") && err.contains("h.sqlite"),
            "{err}"
        );
    }

    #[test]
    fn a_decision_lands_whole_and_a_new_change_supersedes_a_pending_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let (r1, c1) = s.record_decision(&decision("www", 10, true, 3)).unwrap();
        let (round, votes) = s.round(r1.unwrap()).unwrap().unwrap();
        assert!(round.round.changed_dns);
        assert_eq!(votes.len(), 3);
        assert_eq!(s.pending_dns_changes("www").unwrap().len(), 1);
        let (_, c2) = s.record_decision(&decision("www", 20, true, 2)).unwrap();
        let pending = s.pending_dns_changes("www").unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, c2.unwrap());
        assert_eq!(
            s.dns_change(c1.unwrap()).unwrap().unwrap().status,
            "superseded"
        );
        s.dns_change_attempt(c2.unwrap(), 30, Some("timeout"))
            .unwrap();
        s.dns_change_finish(c2.unwrap(), "applied", 40, None)
            .unwrap();
        let row = s.dns_change(c2.unwrap()).unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.attempts), ("applied", 1));
        assert_eq!(row.last_error.as_deref(), Some("timeout"));
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
        // Break the last insert of the transaction (the DNS change) and check that the
        // round written before it in the same transaction did not land either.
        s.lock().execute_batch("DROP TABLE dns_changes").unwrap();
        assert!(s.record_decision(&decision("www", 10, true, 3)).is_err());
        assert!(
            s.list_rounds(&RoundFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .is_empty()
        );
    }

    /// A year of history on a compressed clock: 150 no-op rounds a day (each with three
    /// ~1.6 KB votes) and a failover every 30 days, retention 90 days applied daily. The file
    /// must stop growing once the retention window is full, and no round that changed DNS
    /// may be lost.
    #[test]
    fn retention_keeps_the_file_bounded_and_keeps_dns_changing_rounds() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let mut size_at = std::collections::BTreeMap::new();
        let mut changing = 0;
        for day in 0..365u64 {
            let base = day * DAY;
            for i in 0..150u64 {
                s.record_decision(&decision("www", base + i * 500_000, false, 3))
                    .unwrap();
            }
            if day % 30 == 0 {
                s.record_decision(&decision("www", base + 1, true, 3))
                    .unwrap();
                changing += 1;
            }
            s.apply_retention(base + DAY - 1, 90 * DAY).unwrap();
            size_at.insert(day, file_size(dir.path()));
        }
        let at_120 = size_at[&120];
        let at_364 = size_at[&364];
        assert!(
            at_364 <= at_120 + at_120 / 5,
            "history grew from {at_120} bytes (day 120) to {at_364} bytes (day 364)"
        );
        let kept = s
            .list_rounds(&RoundFilter {
                outcome: Some("failover".into()),
                limit: 500,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(kept.len(), changing);
        let oldest = s
            .list_rounds(&RoundFilter {
                outcome: Some("disputed".into()),
                limit: 500,
                until_ms: Some(270 * DAY),
                ..Default::default()
            })
            .unwrap();
        assert!(oldest.is_empty(), "rounds older than the window survived");
    }
}
