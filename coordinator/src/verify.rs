//! Offline re-verification of the history: every stored vote is checked again, byte for byte,
//! against the witnesses' public keys and the request it answered (also stored). Used by
//! `quorate-coordinator verify-history` and the API's `reverified` field.

use shared::protocol::Envelope;

use crate::config::WitnessConfig;
use crate::store::{Store, StoreError, VoteRecord};

/// `ok`, or why the stored vote does not verify now. A vote that was stored as missing (no
/// answer) is reported as `no-answer`.
pub fn reverify(v: &VoteRecord, service: &str, witnesses: &[WitnessConfig]) -> String {
    let Some(raw) = &v.vote_envelope else {
        return "no-answer".into();
    };
    let Some(w) = witnesses.iter().find(|w| w.key_id.0 == v.witness_key_id) else {
        return format!(
            "unknown-witness: no configured witness has key id {}",
            v.witness_key_id
        );
    };
    let request = match Envelope::from_json(v.request_envelope.as_bytes()) {
        Ok(r) => r,
        Err(e) => return format!("stored request unreadable: {e}"),
    };
    let hash = match request.request_hash() {
        Ok(h) => h,
        Err(e) => return format!("stored request unreadable: {e}"),
    };
    let round = match request_round(&request) {
        Some(r) => r,
        None => return "stored request unreadable: no round".into(),
    };
    match crate::witnesses::verify_raw(raw, w, &hash, service, round) {
        Ok(_) => "ok".into(),
        Err(e) => format!("{}: {e}", e.code()),
    }
}

fn request_round(env: &Envelope) -> Option<u64> {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(&env.payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    v.get("round")?.as_u64()
}

/// The result of re-verifying a whole history.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub rounds: u64,
    pub votes: u64,
    /// Votes stored as valid that verify now.
    pub valid_ok: u64,
    /// Votes stored as invalid that still fail (as they should).
    pub invalid_confirmed: u64,
    pub no_answer: u64,
    /// Votes whose stored verdict disagrees with what verification says now: the history
    /// has been tampered with, or a key was changed. Each line names the round and witness.
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Re-verifies every stored vote (optionally of one service).
pub fn verify_history(
    store: &Store,
    service: Option<&str>,
    witnesses: &[WitnessConfig],
) -> Result<Report, StoreError> {
    let mut rep = Report::default();
    store.for_each_round_with_votes(service, |round, votes| {
        rep.rounds += 1;
        for v in votes {
            rep.votes += 1;
            let now = reverify(v, &round.round.service, witnesses);
            match (v.valid, now.as_str()) {
                (_, "no-answer") => rep.no_answer += 1,
                (true, "ok") => rep.valid_ok += 1,
                (false, r) if r != "ok" => rep.invalid_confirmed += 1,
                (true, r) => rep.problems.push(format!(
                    "round {} ({}), witness {}: stored as valid but now fails: {r}",
                    round.id, round.round.service, v.witness
                )),
                (false, _) => rep.problems.push(format!(
                    "round {} ({}), witness {}: stored as invalid ({}) but verifies now",
                    round.id,
                    round.round.service,
                    v.witness,
                    v.error.as_deref().unwrap_or("")
                )),
            }
        }
        true
    })?;
    Ok(rep)
}
