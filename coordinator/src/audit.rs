//! The audit: offline re-verification of the history. Every stored vote is checked again,
//! byte for byte, against the witnesses' public keys and the request it answered (also
//! stored). Used by `quorate-coordinator verify-history` and the API's `reverified` field.

use shared::protocol::Envelope;

use crate::config::WitnessConfig;
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
pub fn audit_history(
    store: &Store,
    service: Option<&str>,
    witnesses: &[WitnessConfig],
) -> Result<Report, StoreError> {
    let mut rep = Report::default();
    store.for_each_round_with_votes(service, |round, votes| {
        rep.rounds += 1;
        for v in votes {
            rep.votes += 1;
            let now = reverify_vote(v, &round.round.service, witnesses);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{Decision, NewRound};
    use shared::probe::{Evidence, ProbeSpec, TcpProbe};
    use shared::protocol::{KeyId, PROTOCOL_VERSION, Verdict, Vote, VoteRequest};

    /// A round with one real signed vote from `witness_key`, stored as `valid`.
    fn signed_vote(
        ckey: &ed25519_dalek::SigningKey,
        wkey: &ed25519_dalek::SigningKey,
        round: u64,
    ) -> VoteRecord {
        let req = VoteRequest {
            version: PROTOCOL_VERSION,
            coordinator: KeyId::of(&ckey.verifying_key()),
            service: "www".into(),
            round,
            nonce: "00112233445566778899aabbccddeeff".into(),
            issued_at_ms: round,
            target: ProbeSpec::Tcp(TcpProbe {
                address: "192.0.2.10:80".parse().unwrap(),
                timeout_ms: 500,
            }),
        };
        let (env, hash) = req.sign(ckey);
        let vote = Vote {
            version: PROTOCOL_VERSION,
            witness: KeyId::of(&wkey.verifying_key()),
            service: "www".into(),
            round,
            request_hash: hash.hex(),
            verdict: Verdict::Down,
            evidence: Evidence {
                probe: "tcp".into(),
                latency_us: 500_000,
                status: None,
                error: Some(shared::probe::ProbeError::Timeout),
                detail: None,
            },
            probed_at_ms: round + 500,
        };
        VoteRecord {
            witness: "w1".into(),
            witness_key_id: KeyId::of(&wkey.verifying_key()).0,
            request_envelope: String::from_utf8(env.to_json()).unwrap(),
            vote_envelope: Some(vote.sign(wkey).to_json()),
            valid: true,
            verdict: Some("down".into()),
            error: None,
            latency_ms: Some(1.0),
        }
    }

    fn witness(key: &ed25519_dalek::SigningKey) -> WitnessConfig {
        WitnessConfig {
            name: "w1".into(),
            url: "https://127.0.0.1:1".into(),
            key: key.verifying_key(),
            key_id: KeyId::of(&key.verifying_key()),
            cert_sha256: None,
            timeout: std::time::Duration::from_secs(1),
        }
    }

    fn store_round(store: &Store, votes: Vec<VoteRecord>, at: u64) {
        let d = Decision {
            service: "www".into(),
            at_ms: at,
            round: Some(NewRound {
                service: "www".into(),
                at_ms: at,
                trigger: crate::failover::Trigger::PrimaryDown,
                outcome: crate::failover::Outcome::Failover,
                reason: "test".into(),
                primary_up: false,
                backup_up: true,
                votes_up: 0,
                votes_down: 1,
                votes_invalid: 0,
                votes_missing: 0,
                changed_dns: false,
            }),
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
        let (ckey, wkey) = (shared::keys::generate(), shared::keys::generate());
        store_round(&store, vec![signed_vote(&ckey, &wkey, 1000)], 1000);
        let rep = audit_history(&store, None, &[witness(&wkey)]).unwrap();
        assert!(rep.is_clean(), "{:?}", rep.problems);
        assert_eq!((rep.rounds, rep.votes, rep.valid_ok), (1, 1, 1));

        // Someone edits a stored vote after the fact: "down" becomes "up".
        let mut forged = signed_vote(&ckey, &wkey, 2000);
        let env: shared::protocol::Envelope =
            serde_json::from_slice(forged.vote_envelope.as_ref().unwrap()).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = String::from_utf8(b64.decode(&env.payload).unwrap()).unwrap();
        let edited = payload.replace("\"verdict\":\"down\"", "\"verdict\":\"up\"");
        assert_ne!(payload, edited);
        let env = shared::protocol::Envelope {
            payload: b64.encode(edited),
            signature: env.signature,
        };
        forged.vote_envelope = Some(env.to_json());
        store_round(&store, vec![forged], 2000);
        let rep = audit_history(&store, None, &[witness(&wkey)]).unwrap();
        assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
        assert!(
            rep.problems[0].contains("round 2") && rep.problems[0].contains("bad_signature"),
            "{}",
            rep.problems[0]
        );

        // Without the witness's key, nothing can be called verified.
        let other = shared::keys::generate();
        let rep = audit_history(&store, None, &[witness(&other)]).unwrap();
        assert_eq!(rep.valid_ok, 0);
        assert_eq!(rep.problems.len(), 2);
    }
}
