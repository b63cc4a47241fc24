//! The audit: offline re-verification of the history. Every stored vote is checked again,
//! byte for byte, against the witnesses' public keys and the request it answered (also
//! stored). Used by `quorate-coordinator verify-history` and the API's `reverified` field.

use shared::protocol::Envelope;

use crate::config::WitnessConfig;
use crate::ledger::KeySet;
use crate::ledger::chain::ChainReport;
use crate::store::{Store, StoreError, VoteRecord};

/// `ok`, or why the stored vote does not verify now. A vote that was stored as missing (no
/// answer) is reported as `no-answer`.
pub fn reverify_vote(v: &VoteRecord, service: &str, witnesses: &[WitnessConfig]) -> String {
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
    match crate::witnesses::open_raw_vote(raw, w, &hash, service, round) {
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
    /// Votes that verify but do not count (a retired key, a witness's second vote).
    pub not_counted: u64,
    /// Distinct vote requests whose coordinator signature verifies.
    pub requests_ok: u64,
    /// Rounds whose tally and outcome were re-derived from their votes under their policy.
    pub outcomes_checked: u64,
    /// Vote rounds written before the policy was recorded with each round (schema 1): their
    /// votes are checked, their outcome cannot be.
    pub outcomes_unchecked: u64,
    /// Rounds a spell's closing rounds stand for beyond themselves (decided, counted, not
    /// kept: `store::spells`).
    pub spell_rounds: u64,
    /// Everything that does not verify; each line names the round (and witness).
    pub problems: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds one round's check.
    pub fn add(&mut self, round: &crate::store::Round, c: crate::ledger::RoundCheck) {
        self.rounds += 1;
        if let Some(s) = round.round.spell {
            self.spell_rounds += u64::from(s.rounds.saturating_sub(1));
        }
        self.votes += c.votes;
        self.valid_ok += c.valid_ok;
        self.invalid_confirmed += c.invalid_confirmed;
        self.no_answer += c.no_answer;
        self.not_counted += c.not_counted;
        self.requests_ok += c.requests_ok;
        if c.outcome_checked {
            self.outcomes_checked += 1;
        } else if round.round.trigger.has_votes() && round.round.policy.is_none() {
            self.outcomes_unchecked += 1;
        }
        self.problems.extend(c.problems);
    }
}

/// Re-verifies every stored round (optionally of one service) with public keys only: request
/// and vote signatures and bindings, and each round's tally and outcome (`ledger::check`).
pub fn audit_history(
    store: &Store,
    service: Option<&str>,
    keys: &KeySet,
) -> Result<Report, StoreError> {
    let mut rep = Report::default();
    // Each service's last round so far: a spell's closing round is checked against it.
    let mut last: std::collections::HashMap<String, crate::store::Round> = Default::default();
    store.for_each_round_with_votes(service, |round, votes| {
        rep.add(round, crate::ledger::check_round(keys, round, votes));
        let prev = last.get(&round.round.service);
        rep.problems.extend(crate::ledger::check_spell(prev, round));
        last.insert(round.round.service.clone(), round.clone());
        true
    })?;
    Ok(rep)
}

/// Checks the hash chain and the checkpoints of the whole file (`ledger::chain`).
pub fn audit_chain(store: &Store, keys: &KeySet) -> Result<ChainReport, StoreError> {
    Ok(crate::ledger::chain::check_chain(
        keys,
        &store.chain_input()?,
    ))
}

/// Both checks, as `verify-history` runs them: every round (of `service`, or all) and the
/// chain of the whole file.
pub fn audit_all(
    store: &Store,
    service: Option<&str>,
    keys: &KeySet,
) -> Result<(Report, ChainReport), StoreError> {
    Ok((
        audit_history(store, service, keys)?,
        audit_chain(store, keys)?,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::failover::Outcome;
    use crate::ledger::fixtures::{Keys, round};
    use crate::store::Decision;
    use shared::protocol::Verdict::Down;

    fn store_round(store: &Store, outcome: Outcome, votes: Vec<VoteRecord>, at: u64) {
        let d = Decision {
            service: "www".into(),
            at_ms: at,
            round: Some(round("www", at, outcome, &votes)),
            votes,
            ..Default::default()
        };
        // The writers are async (they run on the blocking pool): a small runtime for the test.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(store.record_decision(d))
            .unwrap();
    }

    #[test]
    fn clean_history_verifies_and_a_tampered_vote_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
        let k = Keys::new();
        store_round(
            &store,
            Outcome::Failover,
            k.votes("www", 1000, &[Some(Down), Some(Down), None]),
            1000,
        );
        let rep = audit_history(&store, None, &k.set()).unwrap();
        assert!(rep.is_clean(), "{:?}", rep.problems);
        assert_eq!(
            (rep.rounds, rep.votes, rep.valid_ok, rep.no_answer),
            (1, 3, 2, 1)
        );
        assert_eq!((rep.requests_ok, rep.outcomes_checked), (1, 1));

        // A "failover" backed by one valid vote under quorum 2: its signatures are fine, its
        // outcome does not follow from them.
        store_round(
            &store,
            Outcome::Failover,
            k.votes("www", 1500, &[Some(Down)]),
            1500,
        );
        let rep = audit_history(&store, None, &k.set()).unwrap();
        assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
        assert!(
            rep.problems[0]
                .starts_with("round 2 (www): failover backed by too few valid votes: 1 valid down"),
            "{}",
            rep.problems[0]
        );

        // Someone edits a stored vote after the fact: "down" becomes "up".
        let mut votes = k.votes("www", 2000, &[Some(Down), Some(Down)]);
        let env: shared::protocol::Envelope =
            serde_json::from_slice(votes[0].vote_envelope.as_ref().unwrap()).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = String::from_utf8(b64.decode(&env.payload).unwrap()).unwrap();
        let edited = payload.replace("\"verdict\":\"down\"", "\"verdict\":\"up\"");
        assert_ne!(payload, edited);
        let env = shared::protocol::Envelope {
            payload: b64.encode(edited),
            signature: env.signature,
        };
        votes[0].vote_envelope = Some(env.to_json());
        store_round(&store, Outcome::Disputed, votes, 2000);
        let rep = audit_history(&store, None, &k.set()).unwrap();
        let third: Vec<_> = rep
            .problems
            .iter()
            .filter(|p| p.starts_with("round 3 "))
            .collect();
        assert!(
            third
                .iter()
                .any(|p| p.contains("witness w1: stored as valid but now fails: bad_signature")),
            "{third:?}"
        );

        // Without the witnesses' keys, nothing can be called verified.
        let mut other = k.set();
        other.witnesses.clear();
        let rep = audit_history(&store, None, &other).unwrap();
        assert_eq!(rep.valid_ok, 0);
    }

    #[test]
    fn a_spell_of_identical_rounds_is_two_rows_that_verify_and_a_forged_spell_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let store = Store::open(&path).unwrap();
        let k = Keys::new();
        let disputed = |at: u64| {
            k.votes(
                "www",
                at,
                &[Some(Down), Some(shared::protocol::Verdict::Up), None],
            )
        };
        // 100 identical disputed rounds, then a failover: the first disputed round, the
        // closing one standing for 99, the failover.
        for i in 0..100 {
            let at = 1_000 + i * 1_000;
            store_round(&store, Outcome::Disputed, disputed(at), at);
        }
        store_round(
            &store,
            Outcome::Failover,
            k.votes("www", 200_000, &[Some(Down), Some(Down), None]),
            200_000,
        );
        let rounds = store
            .list_rounds(&crate::store::RoundFilter {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let spells: Vec<_> = rounds.iter().rev().map(|r| r.round.spell).collect();
        assert_eq!(
            spells,
            [
                None,
                Some(crate::store::Spell {
                    first_round: 1,
                    rounds: 99
                }),
                None
            ]
        );
        assert_eq!(
            rounds[1].round.at_ms, 100_000,
            "the closing round is the last one"
        );
        let rep = audit_history(&store, None, &k.set()).unwrap();
        assert!(rep.is_clean(), "{:?}", rep.problems);
        assert_eq!((rep.rounds, rep.spell_rounds), (3, 98));
        let chain = audit_chain(&store, &k.set()).unwrap();
        assert!(chain.problems.is_empty(), "{:?}", chain.problems);

        // A spell claimed from a round decided differently: named by the spell check (and
        // the edit by the chain).
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE rounds SET spell_first = 3, spell_rounds = 5 WHERE id = 2",
            [],
        )
        .unwrap();
        drop(conn);
        let store = Store::open_read_only(&path).unwrap();
        let rep = audit_history(&store, None, &k.set()).unwrap();
        assert!(
            rep.problems.iter().any(|p| p
                == "round 2 (www): closes a spell of 5 round(s) from round 3: expected at least one round after an earlier first round"),
            "{:?}",
            rep.problems
        );
        let chain = audit_chain(&store, &k.set()).unwrap();
        assert!(
            chain.problems.iter().any(|p| p.contains("round 2")),
            "{:?}",
            chain.problems
        );
    }
}
