//! Incident proofs: one round of the history as a self-contained JSON file that anyone can
//! verify offline with nothing else (`export-incident`, `verify-history --incident`). Pure:
//! the CLI reads the rows; this builds the bundle and checks it, reusing [`check_round`] for
//! the signatures and the outcome and the `store::codec` encodings for the chain.
//!
//! A bundle holds the round (with its policy), every vote exactly as stored (the witness's
//! answer as base64 of its raw bytes), the DNS change the round made (if any) with its
//! status and per-server verification, the chain links from the round's link to the first
//! signed checkpoint that covers it (and its DNS change's updates, when one does), that
//! checkpoint's envelope, and the public keys as a keys file. The keys travel with the
//! bundle: an auditor must compare them with keys obtained out of band (or pin their own
//! with `--keys`), or a forger could sign a bundle with keys of their own. See
//! docs/history.md, "Incident proofs".

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::check::check_round;
use super::keys::KeySet;
use crate::store::codec::{
    ChainInput, DnsChangeCreated, Kind, Link, StoredCheckpoint, digest_of, dns_change_canonical,
    round_canonical,
};
use crate::store::{Round, VoteRecord};

pub const FORMAT: &str = "quorate-incident";
pub const VERSION: u32 = 1;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One incident bundle, as written to the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The public keys, as a keys file (`verify-history --keys`).
    pub keys_toml: String,
    /// The round row as stored, with the policy it was decided under.
    pub round: Round,
    /// Every vote of the round, in stored order.
    pub votes: Vec<IncidentVote>,
    /// The DNS change the round made, if any.
    pub dns_change: Option<IncidentDnsChange>,
    /// Links `round link ..= checkpoint.seq`, in order.
    pub chain: Vec<Link>,
    /// The signed checkpoint the last link is the head of.
    pub checkpoint: StoredCheckpoint,
}

/// One vote as stored; the answer as base64 of its raw bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentVote {
    pub witness: String,
    pub witness_key_id: String,
    /// The signed request envelope's JSON, exactly as stored.
    pub request_envelope: String,
    /// Base64 of the witness's answer exactly as received; `null`: no answer.
    pub vote_envelope_base64: Option<String>,
    pub valid: bool,
    pub verdict: Option<String>,
    pub error: Option<String>,
    pub latency_ms: Option<f64>,
}

/// The DNS change a round made: its columns as created, its status and verification now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentDnsChange {
    pub created: DnsChangeCreated,
    pub status: String,
    /// The per-server verification JSON, as stored.
    pub verification_json: Option<String>,
}

impl From<&VoteRecord> for IncidentVote {
    fn from(v: &VoteRecord) -> IncidentVote {
        IncidentVote {
            witness: v.witness.clone(),
            witness_key_id: v.witness_key_id.clone(),
            request_envelope: v.request_envelope.clone(),
            vote_envelope_base64: v.vote_envelope.as_ref().map(|b| B64.encode(b)),
            valid: v.valid,
            verdict: v.verdict.clone(),
            error: v.error.clone(),
            latency_ms: v.latency_ms,
        }
    }
}

impl IncidentVote {
    fn record(&self) -> Result<VoteRecord, String> {
        let vote_envelope = match &self.vote_envelope_base64 {
            None => None,
            Some(b) => Some(B64.decode(b).map_err(|e| {
                format!(
                    "vote of witness {}: vote_envelope_base64 is not base64 ({e})",
                    self.witness
                )
            })?),
        };
        Ok(VoteRecord {
            witness: self.witness.clone(),
            witness_key_id: self.witness_key_id.clone(),
            request_envelope: self.request_envelope.clone(),
            vote_envelope,
            valid: self.valid,
            verdict: self.verdict.clone(),
            error: self.error.clone(),
            latency_ms: self.latency_ms,
        })
    }
}

impl Incident {
    /// Builds the bundle of `round` from the history's chain (`input`): the segment runs
    /// from the round's link to the first checkpoint (valid under `keys`) that covers the
    /// round and its DNS change's updates so far (a bundle is only made once one does: the
    /// status it carries must be the one the checkpoint proves). The error says why no
    /// bundle can be made.
    pub fn build(
        keys_toml: &str,
        keys: &KeySet,
        round: Round,
        votes: &[VoteRecord],
        dns: Option<(DnsChangeCreated, String, Option<String>)>,
        input: &ChainInput,
    ) -> Result<Incident, String> {
        let id = round.id;
        let Some(start) = input
            .links
            .iter()
            .find(|l| l.kind == Kind::Round && l.ref_id == id)
            .map(|l| l.seq)
        else {
            return Err(format!(
                "round {id} is not in the hash chain (written before the chain existed): it cannot be proven by an incident bundle"
            ));
        };
        let dns_last = dns.as_ref().and_then(|(c, _, _)| {
            input
                .links
                .iter()
                .filter(|l| {
                    l.ref_id == c.id
                        && matches!(
                            l.kind,
                            Kind::DnsChange | Kind::DnsStatus | Kind::DnsVerified
                        )
                })
                .map(|l| l.seq)
                .max()
        });
        let target = dns_last.unwrap_or(start).max(start);
        let valid: Vec<(i64, &StoredCheckpoint)> = input
            .checkpoints
            .iter()
            .filter_map(|c| c.open(keys).ok().map(|cp| (cp.seq, c)))
            .collect();
        let first_from = |from: i64| {
            valid
                .iter()
                .filter(|(seq, _)| *seq >= from)
                .min_by_key(|(seq, _)| *seq)
                .copied()
        };
        let Some((end, checkpoint)) = first_from(target) else {
            let what = if target > start {
                format!(
                    "round {id}'s DNS change as it stands now (its last update is chain link {target})"
                )
            } else {
                format!("round {id} (chain link {start})")
            };
            return Err(format!(
                "no checkpoint signed by a listed coordinator key covers {what} yet: the coordinator signs one every [history] checkpoint_every, on every DNS change and when it stops; export again after the next one (or check that --keys lists the coordinator's key)"
            ));
        };
        let chain = input
            .links
            .iter()
            .filter(|l| l.seq >= start && l.seq <= end)
            .cloned()
            .collect();
        Ok(Incident {
            format: FORMAT.into(),
            version: VERSION,
            keys_toml: keys_toml.into(),
            round,
            votes: votes.iter().map(IncidentVote::from).collect(),
            dns_change: dns.map(|(created, status, verification_json)| IncidentDnsChange {
                created,
                status,
                verification_json,
            }),
            chain,
            checkpoint: checkpoint.clone(),
        })
    }
}

/// What the verification of a bundle found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IncidentReport {
    pub votes: u64,
    pub valid_ok: u64,
    pub requests_ok: u64,
    pub outcome_checked: bool,
    /// (first, last) link of the segment.
    pub links: Option<(i64, i64)>,
    /// The checkpoint, when it verifies: (seq, at_ms, coordinator key id).
    pub checkpoint: Option<(i64, u64, String)>,
    pub problems: Vec<String>,
}

/// Why a round cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "round {0} is not in the history: check the round id (`quorate-coordinator history` and GET /v1/rounds show them)"
    )]
    NoRound(i64),
    /// It exists but no bundle can prove it (yet): the text says why.
    #[error("{0}")]
    Unprovable(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The bundle for round `round` of `store`, carrying `keys_toml` (the text `keys` parsed
/// from): what `export-incident` writes and `GET /v1/rounds/{id}/incident` answers.
pub fn export(
    store: &crate::store::Store,
    round: i64,
    keys_toml: &str,
    keys: &KeySet,
) -> Result<Incident, ExportError> {
    // One snapshot: the change's status is the one the chain read with it can prove.
    let rows = store
        .incident_rows(round)?
        .ok_or(ExportError::NoRound(round))?;
    Incident::build(
        keys_toml,
        keys,
        rows.round,
        &rows.votes,
        rows.dns,
        &rows.input,
    )
    .map_err(ExportError::Unprovable)
}

/// Parses a bundle's text; the error names `path`.
pub fn parse(text: &str, path: &Path) -> Result<Incident, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let format = value.get("format").and_then(|f| f.as_str());
    let version = value.get("version").and_then(|v| v.as_u64());
    if format != Some(FORMAT) || version != Some(VERSION as u64) {
        return Err(format!(
            "{}: not a {FORMAT} version {VERSION} file (format {format:?}, version {version:?}): make it with `quorate-coordinator export-incident`",
            path.display()
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))
}

/// Verifies a bundle with `keys` (the bundle's own, or ones the auditor pinned): every
/// request and vote signature and the outcome ([`check_round`]), the round's and DNS
/// change's rows against their links, every link's hash and its link to the one before, the
/// last link against the checkpoint, the checkpoint's signature.
pub fn verify(inc: &Incident, keys: &KeySet) -> IncidentReport {
    let mut rep = IncidentReport::default();
    let id = inc.round.id;
    let mut votes = Vec::new();
    for v in &inc.votes {
        match v.record() {
            Ok(r) => votes.push(r),
            Err(e) => rep.problems.push(format!("round {id}, {e}")),
        }
    }
    let c = check_round(keys, &inc.round, &votes);
    rep.votes = c.votes;
    rep.valid_ok = c.valid_ok;
    rep.requests_ok = c.requests_ok;
    rep.outcome_checked = c.outcome_checked;
    rep.problems.extend(c.problems);

    // The chain segment: consecutive, each hash its fields', each linked to the one before.
    let mut p = |t: String| rep.problems.push(t);
    let (Some(first), Some(last)) = (inc.chain.first(), inc.chain.last()) else {
        p("the bundle has no chain links: nothing ties the round to a checkpoint".into());
        return rep;
    };
    rep.links = Some((first.seq, last.seq));
    for pair in inc.chain.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.seq != a.seq + 1 {
            p(format!(
                "chain link {} follows link {}: the segment has a gap",
                b.seq, a.seq
            ));
        } else if b.prev_hash != a.hash {
            p(format!(
                "chain link {}: prev_hash does not match link {}'s hash",
                b.seq, a.seq
            ));
        }
    }
    for l in &inc.chain {
        if l.computed_hash() != l.hash {
            p(format!(
                "chain link {} ({} {}): its hash does not match its fields: the link was edited",
                l.seq,
                l.kind.as_str(),
                l.ref_id
            ));
        }
        if let Some(fact) = &l.fact
            && digest_of(fact.as_bytes()) != l.digest
        {
            p(format!(
                "chain link {} ({} {}): its fact does not match its digest: the fact was edited",
                l.seq,
                l.kind.as_str(),
                l.ref_id
            ));
        }
    }

    // The round against its link (the first of the segment).
    if first.kind != Kind::Round || first.ref_id != id {
        p(format!(
            "the segment starts with link {} ({} {}), not with round {id}'s link",
            first.seq,
            first.kind.as_str(),
            first.ref_id
        ));
    } else if digest_of(&round_canonical(id, &inc.round.round, &votes)) != first.digest {
        p(format!(
            "round {id} (or one of its votes) does not match its chain link {}: the round row or a vote in the bundle was changed",
            first.seq
        ));
    }

    // The DNS change against its links.
    match (&inc.dns_change, inc.round.round.changed_dns) {
        (None, true) => p(format!(
            "round {id} changed DNS but the bundle carries no DNS change"
        )),
        (None, false) => {}
        (Some(d), _) => {
            let cid = d.created.id;
            if d.created.round_id != Some(id) {
                p(format!(
                    "dns change {cid} belongs to round {:?}, not round {id}",
                    d.created.round_id
                ));
            }
            match inc
                .chain
                .iter()
                .find(|l| l.kind == Kind::DnsChange && l.ref_id == cid)
            {
                None => p(format!(
                    "dns change {cid} has no link in the segment: it is not proven"
                )),
                Some(l) if digest_of(&dns_change_canonical(&d.created)) != l.digest => p(format!(
                    "dns change {cid} does not match its chain link {}: the change in the bundle was changed",
                    l.seq
                )),
                Some(_) => {}
            }
            let fact = |kind: Kind, key: &str| {
                inc.chain
                    .iter()
                    .rfind(|l| l.kind == kind && l.ref_id == cid)
                    .and_then(|l| l.fact.as_deref())
                    .and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok())
                    .and_then(|v| v.get(key).and_then(|s| s.as_str()).map(String::from))
            };
            let status = fact(Kind::DnsStatus, "status").unwrap_or_else(|| "pending".into());
            if d.status != status {
                p(format!(
                    "dns change {cid}: status {:?}, but its last status in the segment is {status:?}: the status was changed or is not covered by the checkpoint",
                    d.status
                ));
            }
            if d.verification_json != fact(Kind::DnsVerified, "verification") {
                p(format!(
                    "dns change {cid}: its verification differs from its last verification in the segment: it was changed or is not covered by the checkpoint"
                ));
            }
        }
    }

    // The checkpoint: signed, naming the last link.
    match inc.checkpoint.open(keys) {
        Err(e) => p(format!("checkpoint {}: {e}", inc.checkpoint.id)),
        Ok(cp) => {
            if cp.seq != last.seq || cp.head != last.hash {
                p(format!(
                    "checkpoint {} commits to link {} with hash {}, but the segment ends at link {} with hash {}",
                    inc.checkpoint.id, cp.seq, cp.head, last.seq, last.hash
                ));
            } else {
                rep.checkpoint = Some((cp.seq, cp.at_ms, cp.coordinator.0.clone()));
            }
        }
    }
    rep
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// A vote's latency is hashed into the chain as its shortest decimal form, so the bundle's
    /// JSON must give back the very same f64 (serde_json's `float_roundtrip`): a latency
    /// parsed one ULP off made an honest bundle fail its chain link.
    #[test]
    fn every_latency_survives_the_bundles_json_exactly() {
        let mut off = Vec::new();
        for k in 0..20_000u64 {
            let latency =
                std::time::Duration::from_nanos(1_234_567 * k + 89).as_secs_f64() * 1000.0;
            let text = serde_json::to_string(&latency).unwrap();
            let back: f64 = serde_json::from_str(&text).unwrap();
            if back.to_bits() != latency.to_bits() {
                off.push(text);
            }
        }
        assert!(
            off.is_empty(),
            "{} latencies changed, e.g. {:?}",
            off.len(),
            off.first()
        );
    }
}
