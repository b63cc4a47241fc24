//! The hash chain over the history, as pure functions: the canonical encoding of each
//! chained row (its digest), the link hash, and the check of a whole chain against the rows
//! as they are now and the signed checkpoints (`checkpoint`).
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

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::checkpoint::{Checkpoint, StoredCheckpoint};
use super::keys::KeySet;
use crate::failover::Policy;
use crate::store::{Event, NewRound, VoteRecord};

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

/// What the chain check found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChainReport {
    pub links: u64,
    /// Rows deleted by retention under a signed prune checkpoint.
    pub pruned: u64,
    /// Rows older than the chain (a history upgraded from schema 2): not covered.
    pub before_chain: u64,
    pub checkpoints_ok: u64,
    /// The newest valid checkpoint: (seq, at_ms); what it proves.
    pub proven_through: Option<(i64, u64)>,
    /// Links after the newest valid checkpoint: a truncation among them cannot be detected.
    pub unproven_links: u64,
    pub problems: Vec<String>,
}

/// Checks the chain: every link follows the one before (no gap, `prev_hash` matching, its own
/// hash matching its fields), every chained row gives the digest its link holds (or was
/// pruned under a signed checkpoint), no row after genesis is outside the chain, every DNS
/// change's status is its last chained status, and every checkpoint is signed by a
/// coordinator key and names a link that exists with that hash.
pub fn check_chain(keys: &KeySet, input: &ChainInput) -> ChainReport {
    let mut rep = ChainReport::default();
    let mut p = |text: String| rep.problems.push(text);

    // Checkpoints first: the prune ones say which rows may be missing.
    let mut checkpoints: Vec<(i64, Checkpoint)> = Vec::new();
    for c in &input.checkpoints {
        match c.open(keys) {
            Ok(cp) => checkpoints.push((c.id, cp)),
            Err(e) => p(format!("checkpoint {}: {e}", c.id)),
        }
    }
    let prune_cutoff = |seq: i64, at_ms: u64| {
        checkpoints
            .iter()
            .filter_map(|(_, c)| c.pruned_before_ms.map(|cut| (c.seq, cut)))
            .any(|(cseq, cut)| seq <= cseq && at_ms < cut)
    };

    let mut genesis = Genesis::default();
    let mut prev: Option<&Link> = None;
    let mut by_seq: BTreeMap<i64, &Link> = BTreeMap::new();
    let mut chained: BTreeSet<(Kind, i64)> = BTreeSet::new();
    let mut last_status: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut last_verified: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let mut pruned = 0u64;
    for link in &input.links {
        rep.links += 1;
        by_seq.insert(link.seq, link);
        let where_ = format!(
            "chain link {} ({} {})",
            link.seq,
            link.kind.as_str(),
            link.ref_id
        );
        let (want_seq, want_prev) = match prev {
            None => (1, ZERO_HASH.to_string()),
            Some(l) => (l.seq + 1, l.hash.clone()),
        };
        if link.seq != want_seq {
            if link.seq > want_seq {
                p(format!(
                    "chain links {want_seq}..{} are missing: deleted (the chain jumps from link {} to {})",
                    link.seq - 1,
                    want_seq - 1,
                    link.seq
                ));
            } else {
                p(format!(
                    "{where_}: out of order after link {}",
                    want_seq - 1
                ));
            }
        } else if link.prev_hash != want_prev {
            p(format!(
                "{where_}: prev_hash does not match link {}'s hash: a link before it was edited, inserted or reordered",
                want_seq - 1
            ));
        }
        if link.computed_hash() != link.hash {
            p(format!(
                "{where_}: its hash does not match its fields: the link was edited"
            ));
        }
        prev = Some(link);
        let key = (link.kind, link.ref_id);
        match link.kind {
            Kind::Genesis => {
                if link.seq != 1 {
                    p(format!("{where_}: a genesis link after the first"));
                }
                let fact = link.fact.as_deref().unwrap_or("");
                if digest_of(fact.as_bytes()) != link.digest {
                    p(format!("{where_}: its fact does not match its digest"));
                }
                genesis = serde_json::from_str(fact).unwrap_or_default();
            }
            Kind::DnsStatus | Kind::DnsVerified => {
                let fact = link.fact.as_deref().unwrap_or("");
                if digest_of(fact.as_bytes()) != link.digest {
                    p(format!(
                        "{where_}: its fact does not match its digest: the fact was edited"
                    ));
                }
                let value: serde_json::Value = serde_json::from_str(fact).unwrap_or_default();
                let text = |k: &str| value.get(k).and_then(|v| v.as_str()).map(String::from);
                if link.kind == Kind::DnsStatus {
                    last_status.insert(link.ref_id, (link.seq, text("status").unwrap_or_default()));
                } else {
                    last_verified.insert(
                        link.ref_id,
                        (link.seq, text("verification").unwrap_or_default()),
                    );
                }
                if !input.dns_now.contains_key(&link.ref_id) {
                    p(format!(
                        "{where_}: dns change {} is missing: deleted",
                        link.ref_id
                    ));
                }
            }
            Kind::Round | Kind::Event | Kind::DnsChange => {
                chained.insert(key);
                match input.digests.get(&key) {
                    Some(d) if *d == link.digest => {}
                    Some(_) => p(format!(
                        "{where_}: {} row {} was changed after it was written (it no longer matches its hash)",
                        link.kind.table(),
                        link.ref_id
                    )),
                    None if link.prunable && prune_cutoff(link.seq, link.at_ms) => pruned += 1,
                    None => p(format!(
                        "{where_}: {} row {} is missing: deleted",
                        link.kind.table(),
                        link.ref_id
                    )),
                }
            }
        }
    }
    rep.pruned = pruned;

    // Rows nobody chained: added behind the chain's back (or older than it).
    for (kind, id) in input.digests.keys() {
        let before = match kind {
            Kind::Round => genesis.rounds_before,
            Kind::Event => genesis.events_before,
            Kind::DnsChange => genesis.dns_changes_before,
            _ => continue,
        };
        if *id <= before {
            rep.before_chain += 1;
        } else if !chained.contains(&(*kind, *id)) {
            p(format!(
                "{} row {id} is not in the chain: added or renumbered after it was written",
                kind.table()
            ));
        }
    }
    if input.links.is_empty() && !input.digests.is_empty() {
        p("the chain is empty but the history has rows: the chain table was emptied".into());
    }

    // DNS changes as they stand now against their last chained update.
    for (id, (status, verification)) in &input.dns_now {
        if *id <= genesis.dns_changes_before {
            continue;
        }
        let want = last_status
            .get(id)
            .map(|(_, s)| s.as_str())
            .unwrap_or("pending");
        if status != want {
            p(format!(
                "dns_changes row {id}: status {status:?}, but its last chained status is {want:?}: the row was edited"
            ));
        }
        let want_v = last_verified.get(id).map(|(_, v)| v.as_str());
        if verification.as_deref() != want_v {
            p(format!(
                "dns_changes row {id}: verification_json differs from its last chained verification: the row was edited"
            ));
        }
    }

    // What the checkpoints prove.
    let last_seq = input.links.last().map(|l| l.seq).unwrap_or(0);
    for (id, c) in &checkpoints {
        match by_seq.get(&c.seq) {
            Some(l) if l.hash == c.head => {
                rep.checkpoints_ok += 1;
                if rep.proven_through.is_none_or(|(s, _)| c.seq >= s) {
                    rep.proven_through = Some((c.seq, c.at_ms));
                }
            }
            Some(_) => p(format!(
                "checkpoint {id} (signed at {} ms) commits to link {} with another hash: the history up to link {} was rewritten",
                c.at_ms, c.seq, c.seq
            )),
            None if c.seq > last_seq => p(format!(
                "checkpoint {id} (signed at {} ms) commits to {} links but the chain ends at link {last_seq}: the tail was truncated (links {}..{} deleted)",
                c.at_ms,
                c.seq,
                last_seq + 1,
                c.seq
            )),
            None => p(format!(
                "checkpoint {id} commits to link {}, which is missing",
                c.seq
            )),
        }
    }
    rep.unproven_links = match rep.proven_through {
        Some((s, _)) => (last_seq - s).max(0) as u64,
        None => last_seq.max(0) as u64,
    };
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed vector, computed independently (Python's hashlib, docs/history.md): another
    /// implementation checks its encoding against it.
    #[test]
    fn link_hash_matches_the_documented_vector() {
        let digest = digest_of(b"{}");
        assert_eq!(
            digest,
            "afade461848983faf6ea9746639b0d2be752145975f857434fb8d0b9ffdf0767"
        );
        let h = link_hash(1, Kind::Genesis, 0, 0, false, &digest, ZERO_HASH);
        assert_eq!(
            h,
            "ad9589fd3cba9966c0e7e039aeebb8287a1c3c3555e8353cd2c0da09b7649429"
        );
    }
}
