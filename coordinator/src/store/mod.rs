//! The history: every piece of SQL lives under this module. SQLite in WAL mode, schema
//! version checked at start, migrations applied in order (`schema`). Rounds with their raw
//! signed votes, events, DNS changes (pending → applied / failed) and each service's persisted
//! decision state, all crossing the boundary as typed values (`types`).
//!
//! rusqlite blocks, so the daemon goes through the async facade here: writes only through
//! [`Store::record_decision`], [`Store::write`] and [`Store::retain`] (the functions in
//! `writes` and `retention` are private), reads through [`Store::call`]. Reads are also public
//! as blocking methods (`reads`) for the CLI and offline checks on a read-only handle.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

mod chain;
pub mod codec;
mod maintenance;
mod reads;
mod retention;
mod schema;
mod spells;
mod types;
mod writes;

pub use maintenance::{AddRefused, Maintenance, NewMaintenance};
pub use schema::SCHEMA_VERSION;
pub use spells::Spell;
pub use types::{
    ChangeStatus, Decision, DnsChangeRow, Event, EventKind, HistoryWrite, ListFilter, NewEvent,
    NewRound, PendingChange, Round, RoundFilter, UnknownStored, UnknownValue, VoteRecord,
};

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
    Sql(rusqlite::Error),
    #[error("{0}")]
    Unknown(Box<UnknownStored>),
    #[error(
        "service {service}: stored state is unreadable ({error}) in table service_state; refusing to guess where DNS points: restore a backup, or delete the row to start from primary-active"
    )]
    BadState { service: String, error: String },
    #[error(
        "history database: table {table}, row {row}, column {column}: stored JSON is unreadable ({error}); restore a backup or correct the row"
    )]
    BadJson {
        table: &'static str,
        row: String,
        column: &'static str,
        error: String,
    },
    #[error("history database: worker thread failed: {0}")]
    Join(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::FromSqlConversionFailure(i, ty, src) => {
                match src.downcast::<UnknownStored>() {
                    Ok(u) => StoreError::Unknown(u),
                    Err(src) => {
                        StoreError::Sql(rusqlite::Error::FromSqlConversionFailure(i, ty, src))
                    }
                }
            }
            other => StoreError::Sql(other),
        }
    }
}

/// A handle to the history database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// Woken when a decision with a DNS change is written: the checkpointer signs the chain
    /// head on every DNS change.
    dns_changed: Arc<tokio::sync::Notify>,
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
        let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: p.clone(),
            source,
        })?;
        schema::migrate(&mut conn, &p)?;
        // A spell left open by a crash is closed now: nothing decided is lost.
        let tx = conn.transaction()?;
        spells::close_all(&tx, spells::Close::End)?;
        tx.commit()?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            dns_changed: Arc::new(tokio::sync::Notify::new()),
        })
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
        schema::check_version(&conn, &p)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            dns_changed: Arc::new(tokio::sync::Notify::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` (reads) on the blocking pool, off the async workers.
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

    /// Writes one decision in one transaction (see `writes::record_decision`); returns
    /// (round id, pending change id).
    pub async fn record_decision(
        &self,
        d: Decision,
    ) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let ids = self
            .call(move |s| writes::record_decision(&mut s.lock(), &d))
            .await?;
        if ids.1.is_some() {
            self.dns_changed.notify_one();
        }
        Ok(ids)
    }

    /// Resolves after the next decision with a DNS change is written (or at once when one
    /// was written since the last call).
    pub async fn dns_changed(&self) {
        self.dns_changed.notified().await
    }

    /// Signs and stores a checkpoint of the chain head (`ledger::checkpoint`) unless the head
    /// is already checkpointed; returns it.
    pub async fn checkpoint(
        &self,
        key: Arc<ed25519_dalek::SigningKey>,
        at_ms: u64,
        reason: &'static str,
    ) -> Result<Option<codec::StoredCheckpoint>, StoreError> {
        self.call(move |s| s.checkpoint_now(&key, at_ms, reason, None))
            .await
    }

    /// Writes one event or DNS-change update in its own transaction.
    pub async fn write(&self, w: HistoryWrite) -> Result<(), StoreError> {
        self.call(move |s| writes::write(&mut s.lock(), &w)).await
    }

    /// Applies retention (see `retention`): first a checkpoint signed with `key` that
    /// commits to the chain and says what is deleted, then the deletion; returns the number
    /// of rounds deleted.
    pub async fn retain(
        &self,
        now_ms: u64,
        keep_ms: u64,
        key: Arc<ed25519_dalek::SigningKey>,
    ) -> Result<usize, StoreError> {
        self.call(move |s| s.apply_retention(now_ms, keep_ms, &key))
            .await
    }
}

#[cfg(test)]
mod tests;
