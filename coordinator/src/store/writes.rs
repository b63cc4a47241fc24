//! Every write to the history, as plain functions on a connection: the decision (one
//! transaction) and the writes after it. Private to `store`: callers go through the async
//! facade in `mod.rs`, which runs them off the async workers.

use rusqlite::{Connection, Transaction, params};

use super::StoreError;
use super::types::{ChangeStatus, Decision, HistoryWrite, NewEvent, NewRound, VoteRecord};
use super::{chain, spells};

/// Writes, in one transaction: the new state (if any), the round with its votes (if any),
/// events, and a pending DNS change (if any). Returns (round id, change id). Everything a
/// decision produced lands together or not at all, so a crash can never leave a DNS change
/// without the round that justified it.
pub(super) fn record_decision(
    conn: &mut Connection,
    d: &Decision,
) -> Result<(Option<i64>, Option<i64>), StoreError> {
    let tx = conn.transaction()?;
    if let Some(state) = &d.state {
        tx.execute(
            "INSERT INTO service_state (service, state_json, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(service) DO UPDATE SET state_json = excluded.state_json, updated_ms = excluded.updated_ms",
            params![d.service, state, d.at_ms as i64],
        )?;
    }
    // A round identical to the last (a persistent state) is counted in the open spell, not
    // written; any other decision first ends the service's spell (`spells`).
    let spell_key = spells::spell_key(d);
    if spells::extend(&tx, d, spell_key.as_deref())? {
        tx.commit()?;
        return Ok((None, None));
    }
    spells::close(&tx, &d.service, spells::Close::End)?;
    let mut round_id = None;
    if let Some(r) = &d.round {
        let id = insert_round(&tx, r, &d.votes)?;
        round_id = Some(id);
        chain::round(&tx, id, r, &d.votes)?;
        if let Some(key) = &spell_key {
            spells::start(&tx, &d.service, id, key)?;
        }
    }
    for (kind, message) in &d.events {
        insert_event(
            &tx,
            &NewEvent {
                service: d.service.clone(),
                at_ms: d.at_ms,
                kind: *kind,
                message: message.clone(),
            },
        )?;
    }
    let mut change_id = None;
    if let Some(c) = &d.dns_change {
        // A newer decision supersedes any change still pending for this service.
        let superseded: Vec<i64> = tx
            .prepare_cached("SELECT id FROM dns_changes WHERE service = ?1 AND status = ?2")?
            .query_map(params![d.service, ChangeStatus::Pending], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.execute(
            "UPDATE dns_changes SET status = ?3, updated_ms = ?2
             WHERE service = ?1 AND status = ?4",
            params![
                d.service,
                d.at_ms as i64,
                ChangeStatus::Superseded,
                ChangeStatus::Pending
            ],
        )?;
        for id in superseded {
            chain::dns_status(&tx, id, ChangeStatus::Superseded.as_str(), None, d.at_ms)?;
        }
        // The text stored is the text the chain hashes.
        let change_json = serde_json::to_string(&c.change)
            .map_err(|e| StoreError::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        tx.execute(
            "INSERT INTO dns_changes (service, round_id, to_side, backend, change_json, status,
                attempts, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7)",
            params![
                d.service,
                round_id,
                c.to_side,
                c.backend,
                change_json,
                ChangeStatus::Pending,
                d.at_ms as i64
            ],
        )?;
        let id = tx.last_insert_rowid();
        chain::dns_change(
            &tx,
            &super::codec::DnsChangeCreated {
                id,
                service: d.service.clone(),
                round_id,
                to_side: c.to_side.as_str().to_string(),
                backend: c.backend.clone(),
                change_json,
                created_ms: d.at_ms,
            },
        )?;
        change_id = Some(id);
    }
    tx.commit()?;
    Ok((round_id, change_id))
}

/// Inserts a round and its votes (not its chain link); returns its id.
pub(super) fn insert_round(
    tx: &Transaction<'_>,
    r: &NewRound,
    votes: &[VoteRecord],
) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO rounds (service, at_ms, trigger, outcome, reason, primary_up, backup_up,
            votes_up, votes_down, votes_invalid, votes_missing, changed_dns, policy_json,
            spell_first, spell_rounds)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
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
            r.changed_dns,
            r.policy,
            r.spell.map(|s| s.first_round),
            r.spell.map(|s| s.rounds)
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut ins = tx.prepare_cached(
        "INSERT INTO votes (round_id, witness, witness_key_id, request_envelope, vote_envelope,
            valid, verdict, error, latency_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for v in votes {
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
    Ok(id)
}

/// Writes one [`HistoryWrite`] in its own transaction.
pub(super) fn write(conn: &mut Connection, w: &HistoryWrite) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    match w {
        HistoryWrite::Event(e) => insert_event(&tx, e)?,
        HistoryWrite::DnsAttempt { id, at_ms, error } => {
            tx.execute(
                "UPDATE dns_changes SET attempts = attempts + 1, last_error = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id, error, *at_ms as i64],
            )?;
        }
        HistoryWrite::DnsFinish {
            id,
            at_ms,
            status,
            error,
            event,
        } => {
            tx.execute(
                "UPDATE dns_changes SET status = ?2, last_error = COALESCE(?3, last_error), updated_ms = ?4
                 WHERE id = ?1",
                params![id, status, error, *at_ms as i64],
            )?;
            chain::dns_status(&tx, *id, status.as_str(), error.as_deref(), *at_ms)?;
            if let Some(e) = event {
                insert_event(&tx, e)?;
            }
        }
        HistoryWrite::DnsVerified {
            id,
            verification,
            alert,
        } => {
            let text = verification.to_string();
            tx.execute(
                "UPDATE dns_changes SET verification_json = ?2 WHERE id = ?1",
                params![id, text],
            )?;
            // The verification has no time of its own: the newest link's time is kept.
            chain::dns_verified(&tx, *id, &text, alert.as_ref().map_or(0, |e| e.at_ms))?;
            if let Some(e) = alert {
                insert_event(&tx, e)?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn insert_event(tx: &Transaction<'_>, e: &NewEvent) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (service, at_ms, kind, message) VALUES (?1, ?2, ?3, ?4)",
        params![e.service, e.at_ms as i64, e.kind, e.message],
    )?;
    chain::event(tx, tx.last_insert_rowid(), e)?;
    Ok(())
}
