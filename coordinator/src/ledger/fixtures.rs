//! Test fixtures: rounds with real signed requests and votes, and the keys that verify them.
//! Shared by the ledger's table tests, the audit's store tests and the chain's tamper tests.

#![allow(clippy::unwrap_used)]

use ed25519_dalek::SigningKey;
use shared::probe::{Evidence, ProbeSpec, TcpProbe};
use shared::protocol::{KeyId, PROTOCOL_VERSION, Verdict, Vote, VoteRequest};

use super::keys::{KeySet, PublicKey};
use crate::failover::{FailbackMode, Outcome, Policy, Trigger, VetoRule};
use crate::store::{NewRound, VoteRecord};

/// 3 witnesses, quorum 2, veto any.
pub fn policy() -> Policy {
    Policy {
        fail_after: 2,
        recover_after: 3,
        quorum: 2,
        witnesses: 3,
        veto: VetoRule::Any,
        failback: FailbackMode::Auto,
        failback_needs_quorum: false,
        max_flips: 4,
        flap_window_ms: 600_000,
    }
}

/// A coordinator key and three witness keys (`w1`..`w3`), fixed seeds so failures repeat.
pub struct Keys {
    pub coordinator: SigningKey,
    pub witnesses: Vec<SigningKey>,
}

impl Default for Keys {
    fn default() -> Keys {
        Keys::new()
    }
}

impl Keys {
    pub fn new() -> Keys {
        Keys {
            coordinator: SigningKey::from_bytes(&[1; 32]),
            witnesses: (0..3u8)
                .map(|i| SigningKey::from_bytes(&[10 + i; 32]))
                .collect(),
        }
    }

    /// The public keys, as an auditor's keys file would list them.
    pub fn set(&self) -> KeySet {
        KeySet {
            coordinators: vec![PublicKey {
                name: "coordinator".into(),
                key: self.coordinator.verifying_key(),
                key_id: KeyId::of(&self.coordinator.verifying_key()),
                retired_at_ms: None,
            }],
            witnesses: self
                .witnesses
                .iter()
                .enumerate()
                .map(|(i, k)| PublicKey {
                    name: format!("w{}", i + 1),
                    key: k.verifying_key(),
                    key_id: KeyId::of(&k.verifying_key()),
                    retired_at_ms: None,
                })
                .collect(),
        }
    }

    /// One signed request at `at_ms` and, per entry of `verdicts`, witness i's vote (`None`:
    /// it did not answer), each stored as the coordinator stores it.
    pub fn votes(
        &self,
        service: &str,
        at_ms: u64,
        verdicts: &[Option<Verdict>],
    ) -> Vec<VoteRecord> {
        let req = VoteRequest {
            version: PROTOCOL_VERSION,
            coordinator: KeyId::of(&self.coordinator.verifying_key()),
            service: service.into(),
            round: at_ms,
            nonce: format!("{:032x}", at_ms),
            issued_at_ms: at_ms,
            target: ProbeSpec::Tcp(TcpProbe {
                address: "192.0.2.10:80".parse().unwrap(),
                timeout_ms: 500,
            }),
        };
        let (env, hash) = req.sign(&self.coordinator);
        let request_envelope = String::from_utf8(env.to_json()).unwrap();
        verdicts
            .iter()
            .enumerate()
            .map(|(i, verdict)| {
                let wkey = &self.witnesses[i];
                let envelope = verdict.map(|verdict| {
                    Vote {
                        version: PROTOCOL_VERSION,
                        witness: KeyId::of(&wkey.verifying_key()),
                        service: service.into(),
                        round: at_ms,
                        request_hash: hash.hex(),
                        verdict,
                        evidence: Evidence {
                            probe: "tcp".into(),
                            latency_us: 500,
                            status: None,
                            error: (verdict == Verdict::Down)
                                .then_some(shared::probe::ProbeError::Timeout),
                            detail: None,
                        },
                        probed_at_ms: at_ms + 5,
                    }
                    .sign(wkey)
                    .to_json()
                });
                VoteRecord {
                    witness: format!("w{}", i + 1),
                    witness_key_id: KeyId::of(&wkey.verifying_key()).0,
                    request_envelope: request_envelope.clone(),
                    valid: envelope.is_some(),
                    verdict: verdict.map(|v| v.to_string()),
                    error: envelope.is_none().then(|| "no answer: timeout".into()),
                    vote_envelope: envelope,
                    latency_ms: Some(1.5),
                }
            })
            .collect()
    }
}

/// A primary-down round with the tally of `votes` (as stored), the given outcome and the
/// fixture policy.
pub fn round(service: &str, at_ms: u64, outcome: Outcome, votes: &[VoteRecord]) -> NewRound {
    let count = |v: &str| {
        votes
            .iter()
            .filter(|r| r.verdict.as_deref() == Some(v))
            .count() as u32
    };
    NewRound {
        service: service.into(),
        at_ms,
        trigger: Trigger::PrimaryDown,
        outcome,
        reason: format!("fixture {outcome}"),
        primary_up: false,
        backup_up: true,
        votes_up: count("up"),
        votes_down: count("down"),
        votes_invalid: 0,
        votes_missing: votes.iter().filter(|v| v.vote_envelope.is_none()).count() as u32,
        changed_dns: outcome == Outcome::Failover,
        policy: Some(policy()),
        spell: None,
    }
}
