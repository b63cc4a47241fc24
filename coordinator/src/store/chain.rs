//! The hash chain's SQL (`ledger::chain` holds the encodings and the check): appending a link
//! inside the transaction that writes its row, the genesis link, checkpoints, and reading
//! everything back for the verifier. Kept apart from `writes` so the chain is one file.

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::codec::{
    ChainInput, Checkpoint, DnsChangeCreated, Genesis, Kind, Link, StoredCheckpoint, ZERO_HASH,
    digest_of, dns_change_canonical, event_canonical, link_hash, round_canonical,
};
use super::types::{Event, NewEvent, NewRound, VoteRecord};
use super::{Store, StoreError};

/// Schema step 3: the chain and the checkpoints.
pub(super) const MIGRATION: &str = "CREATE TABLE chain (
        seq INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        ref_id INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        prunable INTEGER NOT NULL,
        fact TEXT,
        digest TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX chain_by_row ON chain(kind, ref_id);
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        head TEXT NOT NULL,
        reason TEXT NOT NULL,
        envelope TEXT NOT NULL
    );";

/// The genesis link, written by the migration: which rows predate the chain.
pub(super) fn genesis(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let max = |table: &str| -> rusqlite::Result<i64> {
        tx.query_row(
            &format!("SELECT COALESCE(MAX(id), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )
    };
    let g = Genesis {
        rounds_before: max("rounds")?,
        events_before: max("events")?,
        dns_changes_before: max("dns_changes")?,
    };
    let fact = serde_json::to_string(&g).unwrap_or_default();
    append(
        tx,
        Kind::Genesis,
        0,
        0,
        false,
        Some(&fact),
        &digest_of(fact.as_bytes()),
    )
}

/// Appends one link after the current head.
fn append(
    tx: &Transaction<'_>,
    kind: Kind,
    ref_id: i64,
    at_ms: u64,
    prunable: bool,
    fact: Option<&str>,
    digest: &str,
) -> Result<(), StoreError> {
    let (seq, prev) = head(tx)?.unwrap_or((0, ZERO_HASH.to_string()));
    let seq = seq + 1;
    let hash = link_hash(seq, kind, ref_id, at_ms, prunable, digest, &prev);
    tx.execute(
        "INSERT INTO chain (seq, kind, ref_id, at_ms, prunable, fact, digest, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            seq,
            kind.as_str(),
            ref_id,
            at_ms as i64,
            prunable,
            fact,
            digest,
            prev,
            hash
        ],
    )?;
    Ok(())
}

fn head(conn: &Connection) -> Result<Option<(i64, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

pub(super) fn round(
    tx: &Transaction<'_>,
    id: i64,
    r: &NewRound,
    votes: &[VoteRecord],
) -> Result<(), StoreError> {
    let digest = digest_of(&round_canonical(id, r, votes));
    append(tx, Kind::Round, id, r.at_ms, !r.changed_dns, None, &digest)
}

pub(super) fn event(tx: &Transaction<'_>, id: i64, e: &NewEvent) -> Result<(), StoreError> {
    let digest = digest_of(&event_canonical(&Event {
        id,
        service: e.service.clone(),
        at_ms: e.at_ms,
        kind: e.kind,
        message: e.message.clone(),
    }));
    // Retention keeps transitions and overrides (see `retention`).
    let prunable = !matches!(
        e.kind,
        super::EventKind::Transition | super::EventKind::Override
    );
    append(tx, Kind::Event, id, e.at_ms, prunable, None, &digest)
}

pub(super) fn dns_change(tx: &Transaction<'_>, c: &DnsChangeCreated) -> Result<(), StoreError> {
    let digest = digest_of(&dns_change_canonical(c));
    append(
        tx,
        Kind::DnsChange,
        c.id,
        c.created_ms,
        false,
        None,
        &digest,
    )
}

pub(super) fn dns_status(
    tx: &Transaction<'_>,
    id: i64,
    status: &str,
    error: Option<&str>,
    at_ms: u64,
) -> Result<(), StoreError> {
    let fact = super::codec::dns_status_fact(id, status, error, at_ms);
    append(
        tx,
        Kind::DnsStatus,
        id,
        at_ms,
        false,
        Some(&fact),
        &digest_of(fact.as_bytes()),
    )
}

pub(super) fn dns_verified(
    tx: &Transaction<'_>,
    id: i64,
    verification: &str,
    at_ms: u64,
) -> Result<(), StoreError> {
    let fact = super::codec::dns_verified_fact(id, verification);
    append(
        tx,
        Kind::DnsVerified,
        id,
        at_ms,
        false,
        Some(&fact),
        &digest_of(fact.as_bytes()),
    )
}

/// A link's kind as stored, or an error naming the row.
fn kind_of(seq: i64, s: &str) -> Result<Kind, StoreError> {
    Kind::parse(s).ok_or_else(|| {
        StoreError::Unknown(Box::new(super::UnknownStored {
            table: "chain",
            row: seq.to_string(),
            column: "kind",
            value: s.to_string(),
            expected: Kind::ALL.map(Kind::as_str).join(", "),
        }))
    })
}

impl Store {
    /// The chain's head: (seq, hash); `None` before the first link.
    pub fn chain_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        head(&self.lock())
    }

    /// Signs a checkpoint of the head now (see `ledger::checkpoint`) and stores it; returns
    /// it, or `None` when the head is already checkpointed and nothing is being pruned.
    pub(super) fn checkpoint_now(
        &self,
        key: &ed25519_dalek::SigningKey,
        at_ms: u64,
        reason: &str,
        pruned_before_ms: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        // A checkpoint covers every round decided before it: the open spells close first.
        super::spells::close_all(&tx, super::spells::Close::Checkpoint)?;
        let Some((seq, head)) = head(&tx)? else {
            return Ok(None);
        };
        let last: Option<i64> = tx
            .query_row("SELECT MAX(seq) FROM checkpoints", [], |r| r.get(0))
            .optional()?
            .flatten();
        if last == Some(seq) && pruned_before_ms.is_none() {
            return Ok(None);
        }
        let cp = Checkpoint {
            version: 1,
            coordinator: shared::protocol::KeyId::of(&key.verifying_key()),
            seq,
            head: head.clone(),
            at_ms,
            reason: reason.to_string(),
            pruned_before_ms,
        };
        let envelope = cp.sign(key);
        tx.execute(
            "INSERT INTO checkpoints (at_ms, seq, head, reason, envelope) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![at_ms as i64, seq, head, reason, envelope],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(StoredCheckpoint { id, envelope }))
    }

    /// The newest checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT id, envelope FROM checkpoints ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(StoredCheckpoint {
                        id: r.get(0)?,
                        envelope: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// Everything the chain check needs, read in one read transaction so it is one
    /// consistent picture while the daemon writes.
    pub fn chain_input(&self) -> Result<ChainInput, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut input = ChainInput {
            links: links(&tx)?,
            ..Default::default()
        };
        // The rows' digests now, in the same read transaction (one snapshot of the file).
        // A row that does not parse is an error naming it.
        {
            let mut st = tx.prepare(super::reads::round_select!("ORDER BY id"))?;
            let rounds = st.query_map([], super::reads::round_from_row)?;
            for r in rounds {
                let r = r?;
                let votes = super::reads::votes_of(&tx, r.id)?;
                input.digests.insert(
                    (Kind::Round, r.id),
                    digest_of(&round_canonical(r.id, &r.round, &votes)),
                );
            }
        }
        let conn = &tx;
        {
            let mut st =
                conn.prepare("SELECT id, service, at_ms, kind, message FROM events ORDER BY id")?;
            let rows = st.query_map([], |r| {
                let id: i64 = r.get(0)?;
                Ok(Event {
                    id,
                    service: r.get(1)?,
                    at_ms: r.get::<_, i64>(2)? as u64,
                    kind: super::types::typed(r, 3, "events", "kind", &id)?,
                    message: r.get(4)?,
                })
            })?;
            for e in rows {
                let e = e?;
                input
                    .digests
                    .insert((Kind::Event, e.id), digest_of(&event_canonical(&e)));
            }
            let mut st = conn.prepare(&format!("{DNS_CHANGE_COLUMNS} ORDER BY id"))?;
            let rows = st.query_map([], dns_change_row)?;
            for row in rows {
                let (c, status, verification) = row?;
                input.digests.insert(
                    (Kind::DnsChange, c.id),
                    digest_of(&dns_change_canonical(&c)),
                );
                input.dns_now.insert(c.id, (status, verification));
            }
        }
        input.checkpoints = checkpoints(&tx)?;
        Ok(input)
    }

    /// What the incident bundle of `round_id` is made of, in one read transaction (one
    /// snapshot while the daemon writes): the round and its votes, its DNS change as it stands,
    /// and the chain's links and checkpoints. No row digests: the bundle carries its rows and
    /// the verifier hashes them. `None`: no such round.
    pub fn incident_rows(&self, round_id: i64) -> Result<Option<IncidentRows>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let Some(round) = tx
            .query_row(
                super::reads::round_select!("WHERE id = ?1"),
                [round_id],
                super::reads::round_from_row,
            )
            .optional()?
        else {
            return Ok(None);
        };
        let votes = super::reads::votes_of(&tx, round_id)?;
        let dns = tx
            .query_row(
                &format!("{DNS_CHANGE_COLUMNS} WHERE round_id = ?1 ORDER BY id LIMIT 1"),
                [round_id],
                dns_change_row,
            )
            .optional()?;
        let input = ChainInput {
            links: links(&tx)?,
            checkpoints: checkpoints(&tx)?,
            ..Default::default()
        };
        Ok(Some(IncidentRows {
            round,
            votes,
            dns,
            input,
        }))
    }
}

/// [`Store::incident_rows`]: one snapshot of what a bundle is built from.
pub struct IncidentRows {
    pub round: super::Round,
    pub votes: Vec<VoteRecord>,
    /// The DNS change the round made: as created, its status and verification now.
    pub dns: Option<(DnsChangeCreated, String, Option<String>)>,
    /// Links and checkpoints only.
    pub input: ChainInput,
}

/// Every link of the chain, in order.
fn links(conn: &Connection) -> Result<Vec<Link>, StoreError> {
    let mut out = Vec::new();
    let mut st = conn.prepare(
        "SELECT seq, kind, ref_id, at_ms, prunable, fact, digest, prev_hash, hash
         FROM chain ORDER BY seq",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, bool>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, String>(8)?,
        ))
    })?;
    for row in rows {
        let (seq, kind, ref_id, at, prunable, fact, digest, prev_hash, hash) = row?;
        out.push(Link {
            seq,
            kind: kind_of(seq, &kind)?,
            ref_id,
            at_ms: at as u64,
            prunable,
            fact,
            digest,
            prev_hash,
            hash,
        });
    }
    Ok(out)
}

/// Every stored checkpoint, in order.
fn checkpoints(conn: &Connection) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut st = conn.prepare("SELECT id, envelope FROM checkpoints ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(StoredCheckpoint {
            id: r.get(0)?,
            envelope: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The columns [`dns_change_row`] reads, in its order.
const DNS_CHANGE_COLUMNS: &str = "SELECT id, service, round_id, to_side, backend, change_json, \
     created_ms, status, verification_json FROM dns_changes";

/// A `dns_changes` row as chained: what was created, its status and its verification.
fn dns_change_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(DnsChangeCreated, String, Option<String>)> {
    Ok((
        DnsChangeCreated {
            id: r.get(0)?,
            service: r.get(1)?,
            round_id: r.get(2)?,
            to_side: r.get(3)?,
            backend: r.get(4)?,
            change_json: r.get(5)?,
            created_ms: r.get::<_, i64>(6)? as u64,
        },
        r.get::<_, String>(7)?,
        r.get::<_, Option<String>>(8)?,
    ))
}
