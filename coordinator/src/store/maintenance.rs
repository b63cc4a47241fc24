//! Scheduled maintenance announcements (`quorate-coordinator maintenance add`, the API's
//! `/v1/maintenance`, the public status page): the table (schema step 4), its rows, and the
//! SQL that writes and reads them. Each add and remove writes its row change and a
//! `maintenance` event in one transaction, so the operator's action lands in the hash chain
//! like an override (the chain's format is unchanged: an event link).

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use super::types::{EventKind, NewEvent};
use super::{Store, StoreError, writes};

/// Schema step 4: the announcements. Rows are deleted by `remove`; the event that says so
/// stays in the history.
pub(super) const MIGRATION: &str = "CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL,
        title TEXT NOT NULL,
        details TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE INDEX maintenance_by_end ON maintenance(end_ms);";

/// An announcement to store (validated by the caller: `api::maintenance`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMaintenance {
    pub service: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub title: String,
    /// Empty when none was given.
    pub details: String,
    /// When it was announced.
    pub created_ms: u64,
    /// Who announced it: the API role (`admin`).
    pub created_by: String,
}

/// An announcement as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Maintenance {
    pub id: i64,
    pub service: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub title: String,
    pub details: String,
    pub created_ms: u64,
    pub created_by: String,
}

/// Why an announcement was not added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddRefused {
    /// The service already has this many announcements that have not ended.
    TooMany(u32),
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Adds `m` unless its service already has `max_open` announcements that end after
/// `m.created_ms`; writes the `maintenance` event in the same transaction.
pub(super) fn add(
    conn: &mut Connection,
    m: &NewMaintenance,
    max_open: u32,
) -> Result<Result<i64, AddRefused>, StoreError> {
    let tx = conn.transaction()?;
    let open: i64 = tx.query_row(
        "SELECT COUNT(*) FROM maintenance WHERE service = ?1 AND end_ms > ?2",
        params![m.service, m.created_ms as i64],
        |r| r.get(0),
    )?;
    if open >= i64::from(max_open) {
        return Ok(Err(AddRefused::TooMany(max_open)));
    }
    tx.execute(
        "INSERT INTO maintenance (service, start_ms, end_ms, title, details, created_ms, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            m.service,
            m.start_ms as i64,
            m.end_ms as i64,
            m.title,
            m.details,
            m.created_ms as i64,
            m.created_by
        ],
    )?;
    let id = tx.last_insert_rowid();
    writes::insert_event(
        &tx,
        &NewEvent {
            service: m.service.clone(),
            at_ms: m.created_ms,
            kind: EventKind::Maintenance,
            message: format!(
                "maintenance #{id} announced by {}: {} to {}: {:?}",
                m.created_by,
                rfc3339(m.start_ms),
                rfc3339(m.end_ms),
                m.title
            ),
        },
    )?;
    tx.commit()?;
    Ok(Ok(id))
}

/// Removes announcement `id` and writes the `maintenance` event saying who did, in one
/// transaction; returns the row removed, `None` when there is none.
pub(super) fn remove(
    conn: &mut Connection,
    id: i64,
    at_ms: u64,
    by: &str,
) -> Result<Option<Maintenance>, StoreError> {
    let tx = conn.transaction()?;
    let Some(m) = one(&tx, id)? else {
        return Ok(None);
    };
    tx.execute("DELETE FROM maintenance WHERE id = ?1", [id])?;
    writes::insert_event(
        &tx,
        &NewEvent {
            service: m.service.clone(),
            at_ms,
            kind: EventKind::Maintenance,
            message: format!(
                "maintenance #{id} removed by {by} (was {} to {}: {:?})",
                rfc3339(m.start_ms),
                rfc3339(m.end_ms),
                m.title
            ),
        },
    )?;
    tx.commit()?;
    Ok(Some(m))
}

const COLUMNS: &str = "id, service, start_ms, end_ms, title, details, created_ms, created_by";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Maintenance> {
    Ok(Maintenance {
        id: r.get(0)?,
        service: r.get(1)?,
        start_ms: r.get::<_, i64>(2)? as u64,
        end_ms: r.get::<_, i64>(3)? as u64,
        title: r.get(4)?,
        details: r.get(5)?,
        created_ms: r.get::<_, i64>(6)? as u64,
        created_by: r.get(7)?,
    })
}

fn one(conn: &Connection, id: i64) -> Result<Option<Maintenance>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM maintenance WHERE id = ?1"),
            [id],
            row,
        )
        .optional()?)
}

impl Store {
    /// Announcements (of `service`, or all) that end after `ending_after_ms`, soonest start
    /// first, at most `limit`.
    pub fn list_maintenance(
        &self,
        service: Option<&str>,
        ending_after_ms: u64,
        limit: u32,
    ) -> Result<Vec<Maintenance>, StoreError> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM maintenance
             WHERE end_ms > ?1 AND (?2 IS NULL OR service = ?2)
             ORDER BY start_ms, id LIMIT ?3"
        ))?;
        let rows = st.query_map(params![ending_after_ms as i64, service, limit], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One announcement by id.
    pub fn maintenance(&self, id: i64) -> Result<Option<Maintenance>, StoreError> {
        one(&self.lock(), id)
    }

    /// Adds an announcement (see [`add`]) off the async workers.
    pub async fn add_maintenance(
        &self,
        m: NewMaintenance,
        max_open: u32,
    ) -> Result<Result<i64, AddRefused>, StoreError> {
        self.call(move |s| add(&mut s.lock(), &m, max_open)).await
    }

    /// Removes an announcement (see [`remove`]) off the async workers.
    pub async fn remove_maintenance(
        &self,
        id: i64,
        at_ms: u64,
        by: String,
    ) -> Result<Option<Maintenance>, StoreError> {
        self.call(move |s| remove(&mut s.lock(), id, at_ms, &by))
            .await
    }
}
