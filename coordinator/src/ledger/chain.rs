//! The check of the history's hash chain (public keys only): every link against the one
//! before it and against its row as it is now, every checkpoint's signature and the link it
//! names. The encodings live in `store::codec` (the writers hash in the same transaction);
//! they are re-exported here. See docs/history.md.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::keys::KeySet;
pub use crate::store::codec::{
    ChainInput, Checkpoint, DnsChangeCreated, Genesis, Kind, LINK_DOMAIN, Link, ROW_DOMAIN,
    StoredCheckpoint, ZERO_HASH, digest_of, dns_change_canonical, dns_status_fact,
    dns_verified_fact, event_canonical, link_hash, round_canonical,
};

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
