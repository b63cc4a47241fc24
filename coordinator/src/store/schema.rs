//! The history's schema: the migrations in order, the version this build writes, and opening
//! a connection with the pragmas every writer needs (WAL, incremental vacuum, foreign keys).

use rusqlite::Connection;

use super::StoreError;

/// The schema this build writes. A database from a newer build is refused.
pub const SCHEMA_VERSION: i64 = 5;

/// Applied in order; `PRAGMA user_version` says how many already ran.
pub(super) const MIGRATIONS: &[&str] = &[
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
    // 2: the policy each round was decided under (JSON of `failover::Policy`), so an auditor
    // can re-derive its outcome from its votes; NULL for rounds written before.
    "ALTER TABLE rounds ADD COLUMN policy_json TEXT;",
    // 3: the hash chain over rounds, events and DNS changes, and the signed checkpoints of
    // its head (`store::chain`, `ledger::chain`); its genesis link is written in the same
    // transaction (see `migrate`).
    super::chain::MIGRATION,
    // 4: spells of identical rounds: the closing round's columns and the runs in progress
    // (`store::spells`).
    super::spells::MIGRATION,
    // 5: scheduled maintenance announcements (`store::maintenance`).
    super::maintenance::MIGRATION,
];

/// The migration after which the chain's genesis link is written.
const CHAIN_MIGRATION: usize = 3;

/// Sets the pragmas, refuses a newer schema, then runs the migrations this file lacks, each
/// in its own transaction.
pub(super) fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // auto_vacuum must be chosen before the first table exists.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )?;
    let found = check_version(conn, path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        if i + 1 == CHAIN_MIGRATION {
            super::chain::genesis(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// The file's schema version; an error when it is newer than this build.
pub(super) fn check_version(conn: &Connection, path: &str) -> Result<i64, StoreError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
        });
    }
    Ok(found)
}
