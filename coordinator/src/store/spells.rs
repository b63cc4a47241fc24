//! Spells: a persistent state (disputed, isolated, insufficient votes, both down, damped,
//! blocked, failback not agreed or awaiting the operator) decides the same round with every
//! vote every interval, about 4.5 KB a second with three witnesses. A run of identical rounds
//! is recorded as two rows: its **first round**, written as it happened, and its **closing
//! round**, the last one of the run, written when the run ends with `spell_first` (the first
//! round's id) and `spell_rounds` (how many rounds after the first it stands for, itself
//! included). Both carry their own signed votes and their own chain link, so the spell stays
//! verifiable; the rounds between are counted, not kept.
//!
//! The run in progress is kept in `open_spells` (one row per service, rewritten each round,
//! outside the chain), so a crash loses nothing: the next writable open closes it. It is also
//! closed by any round that differs, by any decision with an event or a DNS change, and before
//! every checkpoint, so that a signed checkpoint covers every round decided before it.

use rusqlite::{OptionalExtension as _, Transaction, params};
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::types::{Decision, NewRound, VoteRecord};
use crate::failover::Outcome;

/// Schema step 4: the spell columns of a closing round, and the runs in progress.
pub(super) const MIGRATION: &str = "ALTER TABLE rounds ADD COLUMN spell_first INTEGER;
    ALTER TABLE rounds ADD COLUMN spell_rounds INTEGER;
    CREATE TABLE open_spells (
        service TEXT PRIMARY KEY,
        first_round INTEGER NOT NULL,
        spell_key TEXT NOT NULL,
        rounds INTEGER NOT NULL,
        last_json TEXT
    );";

/// What a closing round says about the rounds it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spell {
    /// The id of the spell's first round.
    pub first_round: i64,
    /// Rounds after the first that this closing round stands for, itself included (≥ 1).
    pub rounds: u32,
}

/// The outcomes that can persist round after round with nothing changing.
fn persistent(o: Outcome) -> bool {
    matches!(
        o,
        Outcome::CoordinatorIsolated
            | Outcome::Disputed
            | Outcome::InsufficientVotes
            | Outcome::BothDown
            | Outcome::Damped
            | Outcome::Blocked
            | Outcome::FailbackAwaitingOperator
            | Outcome::FailbackNotAgreed
    )
}

/// What makes two rounds "identical" for a spell: everything the verifier re-derives the
/// outcome from (trigger, outcome, our probes, the tally, the policy) and each witness's
/// vote (key, valid, verdict, answered). Not the reason (its streak count grows), the times,
/// the latencies or an error's wording.
#[derive(Serialize)]
struct SpellKey<'a> {
    trigger: &'a str,
    outcome: &'a str,
    primary_up: bool,
    backup_up: bool,
    tally: [u32; 4],
    policy: Option<&'a crate::failover::Policy>,
    votes: Vec<(&'a str, &'a str, bool, Option<&'a str>, bool)>,
}

/// The spell key of a decision that may join a spell: a persistent outcome, no DNS change,
/// no event. `None`: it is written as it is and ends any spell.
pub fn spell_key(d: &Decision) -> Option<String> {
    let r = d.round.as_ref()?;
    if !persistent(r.outcome)
        || r.changed_dns
        || !d.events.is_empty()
        || d.dns_change.is_some()
        || r.spell.is_some()
    {
        return None;
    }
    serde_json::to_string(&SpellKey {
        trigger: r.trigger.as_str(),
        outcome: r.outcome.as_str(),
        primary_up: r.primary_up,
        backup_up: r.backup_up,
        tally: [r.votes_up, r.votes_down, r.votes_invalid, r.votes_missing],
        policy: r.policy.as_ref(),
        votes: d
            .votes
            .iter()
            .map(|v| {
                (
                    v.witness.as_str(),
                    v.witness_key_id.as_str(),
                    v.valid,
                    v.verdict.as_deref(),
                    v.vote_envelope.is_some(),
                )
            })
            .collect(),
    })
    .ok()
}

/// The round that last extended a spell, kept until the spell closes.
#[derive(Serialize, Deserialize)]
struct LastRound {
    round: NewRound,
    votes: Vec<VoteRecord>,
}

/// The service's spell in progress, if any: (first round, key, rounds after the first).
fn open(tx: &Transaction<'_>, service: &str) -> Result<Option<(i64, String, u32)>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT first_round, spell_key, rounds FROM open_spells WHERE service = ?1",
            params![service],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?)
}

/// Whether `d` continues the service's open spell; if so it is counted (and kept as the
/// spell's last round) instead of written.
pub(super) fn extend(
    tx: &Transaction<'_>,
    d: &Decision,
    key: Option<&str>,
) -> Result<bool, StoreError> {
    // A state change mid-run ends it, even with an identical round.
    let (Some(key), Some(round), None) = (key, &d.round, &d.state) else {
        return Ok(false);
    };
    match open(tx, &d.service)? {
        Some((_, open_key, _)) if open_key == key => {}
        _ => return Ok(false),
    }
    let last = serde_json::to_string(&LastRound {
        round: round.clone(),
        votes: d.votes.clone(),
    })
    .map_err(|e| StoreError::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
    tx.execute(
        "UPDATE open_spells SET rounds = rounds + 1, last_json = ?2 WHERE service = ?1",
        params![d.service, last],
    )?;
    Ok(true)
}

/// Opens a spell at the round `first` just written.
pub(super) fn start(
    tx: &Transaction<'_>,
    service: &str,
    first: i64,
    key: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO open_spells (service, first_round, spell_key, rounds, last_json)
         VALUES (?1, ?2, ?3, 0, NULL)",
        params![service, first, key],
    )?;
    Ok(())
}

/// How a spell ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Close {
    /// It is over (a different round, an event, a DNS change, a restart).
    End,
    /// A checkpoint is due: its rounds so far are written, and the spell runs on from the
    /// closing round just written, which is the next closing round's `spell_first`.
    Checkpoint,
}

/// Closes the service's open spell: its last round is written as the closing round (when
/// the spell went past its first round); then it is forgotten, or, for a checkpoint, goes
/// on from that round.
pub(super) fn close(tx: &Transaction<'_>, service: &str, how: Close) -> Result<(), StoreError> {
    let row: Option<(i64, u32, Option<String>)> = tx
        .query_row(
            "SELECT first_round, rounds, last_json FROM open_spells WHERE service = ?1",
            params![service],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((first_round, rounds, last)) = row else {
        return Ok(());
    };
    let last = last.filter(|_| rounds > 0);
    if how == Close::End {
        tx.execute(
            "DELETE FROM open_spells WHERE service = ?1",
            params![service],
        )?;
    }
    let Some(last) = last else {
        return Ok(());
    };
    let LastRound { mut round, votes } =
        serde_json::from_str(&last).map_err(|e| StoreError::BadState {
            service: service.to_string(),
            error: format!("open_spells: the spell's last round is unreadable ({e})"),
        })?;
    round.spell = Some(Spell {
        first_round,
        rounds,
    });
    let id = super::writes::insert_round(tx, &round, &votes)?;
    super::chain::round(tx, id, &round, &votes)?;
    if how == Close::Checkpoint {
        tx.execute(
            "UPDATE open_spells SET first_round = ?2, rounds = 0, last_json = NULL
             WHERE service = ?1",
            params![service, id],
        )?;
    }
    Ok(())
}

/// Closes every open spell: before a checkpoint ([`Close::Checkpoint`]), and at a writable
/// open, where a spell left by a crash or a stop ends ([`Close::End`]).
pub(super) fn close_all(tx: &Transaction<'_>, how: Close) -> Result<(), StoreError> {
    let services: Vec<String> = tx
        .prepare_cached("SELECT service FROM open_spells ORDER BY service")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for s in services {
        close(tx, &s, how)?;
    }
    Ok(())
}
