//! The hash chain's encodings, as pure functions: the canonical encoding of each chained row
//! (its digest), the link hash, the checkpoint payload and its signature. Here, under
//! `store`, because the writers hash what they write in the same transaction; the check of a
//! whole chain (public keys only) is `ledger::chain`, which imports these.
//!
//! Every round (with its votes), event, DNS change and DNS status or verification update is
//! one **link**, in the order written: `seq` 1, 2, 3, … without gaps. A link stores its kind,
//! the row it covers (`ref_id`), when, whether retention may delete the row (`prunable`: a
//! round that changed nothing, an event other than a transition or override), the row's
//! digest and the previous link's hash. DNS changes are updated in place (pending → applied),
//! so their updates are links of their own that carry the update itself (`fact`).
//!
//! ```text
//! digest = hex SHA-256( "quorate/v1/history-row\n" || canonical JSON of the row )
//! hash   = hex SHA-256( "quorate/v1/chain\n" || seq "\n" kind "\n" ref_id "\n" at_ms "\n"
//!                       prunable(0|1) "\n" digest "\n" prev_hash )       (numbers in decimal)
//! ```
//!
//! The first link is `genesis` (`prev_hash` = 64 zeros); its fact says which rows predate the
//! chain (a history upgraded from schema 2). Canonical JSON: compact, members in the order of
//! the `*Row` structs below; a vote's raw request and vote envelopes enter as their SHA-256.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use shared::protocol::{Envelope, KeyId};

use super::types::{Event, NewRound, VoteRecord};
use crate::failover::Policy;

pub const ROW_DOMAIN: &[u8] = b"quorate/v1/history-row\n";
pub const LINK_DOMAIN: &[u8] = b"quorate/v1/chain\n";
/// The `prev_hash` of the genesis link.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a link covers. Stored as [`Kind::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Genesis,
    Round,
    Event,
    DnsChange,
    DnsStatus,
    DnsVerified,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Genesis,
        Kind::Round,
        Kind::Event,
        Kind::DnsChange,
        Kind::DnsStatus,
        Kind::DnsVerified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Genesis => "genesis",
            Kind::Round => "round",
            Kind::Event => "event",
            Kind::DnsChange => "dns-change",
            Kind::DnsStatus => "dns-status",
            Kind::DnsVerified => "dns-verified",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The table whose row a link of this kind covers.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Genesis => "chain",
            Kind::Round => "rounds",
            Kind::Event => "events",
            Kind::DnsChange | Kind::DnsStatus | Kind::DnsVerified => "dns_changes",
        }
    }
}

/// One link as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub seq: i64,
    pub kind: Kind,
    pub ref_id: i64,
    pub at_ms: u64,
    pub prunable: bool,
    /// The update itself, for kinds whose row changes in place (and genesis).
    pub fact: Option<String>,
    pub digest: String,
    pub prev_hash: String,
    pub hash: String,
}

fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// The digest of a row's canonical encoding.
pub fn digest_of(canonical: &[u8]) -> String {
    hex_sha256(&[ROW_DOMAIN, canonical])
}

/// The hash of a link from its fields.
pub fn link_hash(
    seq: i64,
    kind: Kind,
    ref_id: i64,
    at_ms: u64,
    prunable: bool,
    digest: &str,
    prev_hash: &str,
) -> String {
    let text = format!(
        "{seq}\n{}\n{ref_id}\n{at_ms}\n{}\n{digest}\n{prev_hash}",
        kind.as_str(),
        prunable as u8
    );
    hex_sha256(&[LINK_DOMAIN, text.as_bytes()])
}

impl Link {
    /// The hash this link's fields give (equal to `hash` unless the link was edited).
    pub fn computed_hash(&self) -> String {
        link_hash(
            self.seq,
            self.kind,
            self.ref_id,
            self.at_ms,
            self.prunable,
            &self.digest,
            &self.prev_hash,
        )
    }
}

#[derive(Serialize)]
struct VoteRow<'a> {
    witness: &'a str,
    witness_key_id: &'a str,
    request_sha256: String,
    vote_sha256: Option<String>,
    valid: bool,
    verdict: Option<&'a str>,
    error: Option<&'a str>,
    latency_ms: Option<f64>,
}

#[derive(Serialize)]
struct RoundRow<'a> {
    id: i64,
    service: &'a str,
    at_ms: u64,
    trigger: &'a str,
    outcome: &'a str,
    reason: &'a str,
    primary_up: bool,
    backup_up: bool,
    votes_up: u32,
    votes_down: u32,
    votes_invalid: u32,
    votes_missing: u32,
    changed_dns: bool,
    policy: Option<&'a Policy>,
    /// Only on a spell's closing round, so every other row encodes as before schema 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    spell: Option<super::Spell>,
    votes: Vec<VoteRow<'a>>,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings, numbers and options: serialisation cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// The canonical encoding of a round with its votes.
pub fn round_canonical(id: i64, r: &NewRound, votes: &[VoteRecord]) -> Vec<u8> {
    json(&RoundRow {
        id,
        service: &r.service,
        at_ms: r.at_ms,
        trigger: r.trigger.as_str(),
        outcome: r.outcome.as_str(),
        reason: &r.reason,
        primary_up: r.primary_up,
        backup_up: r.backup_up,
        votes_up: r.votes_up,
        votes_down: r.votes_down,
        votes_invalid: r.votes_invalid,
        votes_missing: r.votes_missing,
        changed_dns: r.changed_dns,
        policy: r.policy.as_ref(),
        spell: r.spell,
        votes: votes
            .iter()
            .map(|v| VoteRow {
                witness: &v.witness,
                witness_key_id: &v.witness_key_id,
                request_sha256: hex_sha256(&[v.request_envelope.as_bytes()]),
                vote_sha256: v.vote_envelope.as_ref().map(|b| hex_sha256(&[b])),
                valid: v.valid,
                verdict: v.verdict.as_deref(),
                error: v.error.as_deref(),
                latency_ms: v.latency_ms,
            })
            .collect(),
    })
}

/// The canonical encoding of an event.
pub fn event_canonical(e: &Event) -> Vec<u8> {
    #[derive(Serialize)]
    struct EventRow<'a> {
        id: i64,
        service: &'a str,
        at_ms: u64,
        kind: &'a str,
        message: &'a str,
    }
    json(&EventRow {
        id: e.id,
        service: &e.service,
        at_ms: e.at_ms,
        kind: e.kind.as_str(),
        message: &e.message,
    })
}

/// A DNS change as created (the columns that never change), with its change as the JSON
/// text stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DnsChangeCreated {
    pub id: i64,
    pub service: String,
    pub round_id: Option<i64>,
    pub to_side: String,
    pub backend: String,
    pub change_json: String,
    pub created_ms: u64,
}

pub fn dns_change_canonical(c: &DnsChangeCreated) -> Vec<u8> {
    json(c)
}

/// The fact of a `dns-status` link.
pub fn dns_status_fact(id: i64, status: &str, error: Option<&str>, at_ms: u64) -> String {
    #[derive(Serialize)]
    struct Fact<'a> {
        change: i64,
        status: &'a str,
        error: Option<&'a str>,
        at_ms: u64,
    }
    String::from_utf8_lossy(&json(&Fact {
        change: id,
        status,
        error,
        at_ms,
    }))
    .into_owned()
}

/// The fact of a `dns-verified` link: the verification JSON as stored.
pub fn dns_verified_fact(id: i64, verification_json: &str) -> String {
    #[derive(Serialize)]
    struct Fact<'a> {
        change: i64,
        verification: &'a str,
    }
    String::from_utf8_lossy(&json(&Fact {
        change: id,
        verification: verification_json,
    }))
    .into_owned()
}

/// The genesis fact: rows with these ids or lower predate the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub rounds_before: i64,
    pub events_before: i64,
    pub dns_changes_before: i64,
}

/// The history as it is now, as the checker needs it: every link, the digest each chained
/// row gives now (absent: the row is gone), each DNS change's status and verification now,
/// every checkpoint.
#[derive(Clone, Debug, Default)]
pub struct ChainInput {
    pub links: Vec<Link>,
    pub digests: BTreeMap<(Kind, i64), String>,
    /// DNS change id → (status, verification JSON) as the row says now.
    pub dns_now: BTreeMap<i64, (String, Option<String>)>,
    pub checkpoints: Vec<StoredCheckpoint>,
}

pub const CHECKPOINT_DOMAIN: &[u8] = b"quorate/v1/checkpoint\n";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What a checkpoint says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub version: u32,
    pub coordinator: KeyId,
    pub seq: i64,
    pub head: String,
    pub at_ms: u64,
    pub reason: String,
    pub pruned_before_ms: Option<u64>,
}

/// A checkpoint as stored (and served): its row id and its envelope's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    pub id: i64,
    pub envelope: String,
}

impl Checkpoint {
    /// Signs the checkpoint; returns the envelope's JSON.
    pub fn sign(&self, key: &SigningKey) -> String {
        let payload = serde_json::to_vec(self).unwrap_or_default();
        let mut signed = CHECKPOINT_DOMAIN.to_vec();
        signed.extend_from_slice(&payload);
        let sig = key.sign(&signed);
        let env = Envelope {
            payload: B64.encode(&payload),
            signature: B64.encode(sig.to_bytes()),
        };
        String::from_utf8_lossy(&env.to_json()).into_owned()
    }
}
