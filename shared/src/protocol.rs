//! The witness protocol, version 1: vote requests signed by a coordinator, votes signed by a
//! witness, and everything needed to check them. Pure: no I/O, no clock (callers pass `now`).
//!
//! Wire form of both messages is an [`Envelope`]: `{"payload": B64, "signature": B64}`. The
//! payload is the exact JSON bytes the signer produced; the signature covers
//! `DOMAIN || payload` where `DOMAIN` separates requests from votes. Verifiers check the bytes
//! they received and never re-serialise, so there is no canonicalisation to get wrong, and a
//! stored envelope can be re-verified byte for byte years later. See `docs/protocol.md`.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::probe::{Evidence, ProbeSpec};

/// The protocol version carried in every payload.
pub const PROTOCOL_VERSION: u32 = 1;
/// Domain-separation prefix signed before a vote request payload.
pub const REQUEST_DOMAIN: &[u8] = b"quorate/v1/vote-request\n";
/// Domain-separation prefix signed before a vote payload.
pub const VOTE_DOMAIN: &[u8] = b"quorate/v1/vote\n";
/// Largest envelope either side accepts, in bytes (a request is ~1 KiB).
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024;
/// Longest service name, in bytes.
pub const MAX_SERVICE_LEN: usize = 128;
/// Nonce length in bytes (hex on the wire).
pub const NONCE_LEN: usize = 16;

/// The signed message as it travels: base64 payload bytes and a base64 ed25519 signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub payload: String,
    pub signature: String,
}

/// "Can you reach this target right now?", asked by a coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// Always [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Key id of the coordinator that signed this request.
    pub coordinator: KeyId,
    /// The service being decided (names the round in the coordinator's history).
    pub service: String,
    /// The coordinator's round number for this service.
    pub round: u64,
    /// 16 random bytes, hex: makes each request unique; a witness refuses a nonce twice.
    pub nonce: String,
    /// When the coordinator signed it (Unix ms); a witness refuses it outside its skew window.
    pub issued_at_ms: u64,
    /// What to probe. The witness probes it only if its own allowlist permits.
    pub target: ProbeSpec,
}

/// A witness's answer, bound to the request it answers by `request_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    pub version: u32,
    /// Key id of the witness that signed this vote.
    pub witness: KeyId,
    pub service: String,
    pub round: u64,
    /// Hex SHA-256 of the request's signed bytes (`REQUEST_DOMAIN || payload`).
    pub request_hash: String,
    pub verdict: Verdict,
    pub evidence: Evidence,
    /// When the witness finished its probe (Unix ms).
    pub probed_at_ms: u64,
}

/// The witness's view of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Up,
    Down,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Up => "up",
            Verdict::Down => "down",
        })
    }
}

/// Short printable identity of a public key: the first 8 bytes of SHA-256 of the 32 key
/// bytes, as 16 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        KeyId(hex::encode(&digest[..8]))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a request's signed bytes; what a vote must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestHash(pub [u8; 32]);

impl RequestHash {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for RequestHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Why a message was refused. Each cause is its own variant so callers (and the witness's
/// HTTP status mapping) can branch on it; the text names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {found} (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("unknown coordinator key id {0}: not in this witness's trusted list")]
    UnknownCoordinator(KeyId),
    #[error("signature does not verify with the key of {0}")]
    BadSignature(KeyId),
    #[error("request is stale: issued {skew_ms} ms from now, allowed skew is {max_skew_ms} ms")]
    Stale { skew_ms: i64, max_skew_ms: u64 },
    #[error("nonce {0} was already used by this coordinator")]
    Replayed(String),
    #[error("vote was signed by witness {found}, expected {expected}")]
    WrongWitness { expected: KeyId, found: KeyId },
    #[error("vote answers request {found}, not this one ({expected})")]
    WrongRequest { expected: String, found: String },
    #[error(
        "vote is for service {found:?} round {found_round}, expected {expected:?} round {expected_round}"
    )]
    WrongRound {
        expected: String,
        expected_round: u64,
        found: String,
        found_round: u64,
    },
    #[error("verdict {verdict} contradicts its evidence")]
    InconsistentVerdict { verdict: Verdict },
    #[error("too many requests from {0} within the replay window")]
    Overloaded(KeyId),
}

impl ProtocolError {
    /// A stable, short code for metrics labels, JSON error bodies and history rows.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::Malformed(_) => "malformed",
            ProtocolError::UnsupportedVersion { .. } => "unsupported_version",
            ProtocolError::UnknownCoordinator(_) => "unknown_coordinator",
            ProtocolError::BadSignature(_) => "bad_signature",
            ProtocolError::Stale { .. } => "stale",
            ProtocolError::Replayed(_) => "replayed",
            ProtocolError::WrongWitness { .. } => "wrong_witness",
            ProtocolError::WrongRequest { .. } => "wrong_request",
            ProtocolError::WrongRound { .. } => "wrong_round",
            ProtocolError::InconsistentVerdict { .. } => "inconsistent_verdict",
            ProtocolError::Overloaded(_) => "overloaded",
        }
    }
}

fn signed_bytes(domain: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(domain.len() + payload.len());
    m.extend_from_slice(domain);
    m.extend_from_slice(payload);
    m
}

fn seal(domain: &[u8], key: &SigningKey, payload: Vec<u8>) -> Envelope {
    let sig = key.sign(&signed_bytes(domain, &payload));
    Envelope {
        payload: B64.encode(&payload),
        signature: B64.encode(sig.to_bytes()),
    }
}

impl Envelope {
    /// Parses an envelope from wire bytes, bounded by [`MAX_ENVELOPE_BYTES`].
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, ProtocolError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(ProtocolError::Malformed(format!(
                "envelope is {} bytes, limit is {MAX_ENVELOPE_BYTES}",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| ProtocolError::Malformed(format!("envelope: {e}")))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope of two strings always serialises")
    }

    /// The decoded payload and signature, both checked for shape.
    fn open(&self) -> Result<(Vec<u8>, Signature), ProtocolError> {
        let payload = B64
            .decode(&self.payload)
            .map_err(|e| ProtocolError::Malformed(format!("payload is not base64: {e}")))?;
        let sig = B64
            .decode(&self.signature)
            .map_err(|e| ProtocolError::Malformed(format!("signature is not base64: {e}")))?;
        let sig: [u8; 64] = sig.try_into().map_err(|s: Vec<u8>| {
            ProtocolError::Malformed(format!("signature is {} bytes, expected 64", s.len()))
        })?;
        Ok((payload, Signature::from_bytes(&sig)))
    }

    /// The hash a vote must name if this envelope is a request (does not verify anything).
    pub fn request_hash(&self) -> Result<RequestHash, ProtocolError> {
        let (payload, _) = self.open()?;
        Ok(hash_request_bytes(&payload))
    }
}

fn hash_request_bytes(payload: &[u8]) -> RequestHash {
    RequestHash(Sha256::digest(signed_bytes(REQUEST_DOMAIN, payload)).into())
}

fn check_version(v: u32) -> Result<(), ProtocolError> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedVersion { found: v })
    }
}

/// Reads only `version`, so a payload from another protocol version (which may carry fields
/// this build does not know) is refused as `UnsupportedVersion` rather than as malformed.
fn check_payload_version(payload: &[u8]) -> Result<(), ProtocolError> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    match serde_json::from_slice::<Versioned>(payload) {
        Ok(v) => check_version(v.version),
        // The full parse that follows names what is wrong.
        Err(_) => Ok(()),
    }
}

fn verify(
    domain: &[u8],
    key: &VerifyingKey,
    who: &KeyId,
    payload: &[u8],
    sig: &Signature,
) -> Result<(), ProtocolError> {
    key.verify_strict(&signed_bytes(domain, payload), sig)
        .map_err(|_| ProtocolError::BadSignature(who.clone()))
}

impl VoteRequest {
    /// Checks the fields a signer controls; run by both sides.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.version)?;
        check_service(&self.service)?;
        if self.nonce.len() != NONCE_LEN * 2 || hex::decode(&self.nonce).is_err() {
            return Err(ProtocolError::Malformed(format!(
                "nonce must be {} hex digits",
                NONCE_LEN * 2
            )));
        }
        self.target
            .validate()
            .map_err(|e| ProtocolError::Malformed(format!("target: {e}")))
    }

    /// Signs the request; returns the envelope to send and the hash votes must name.
    pub fn sign(&self, key: &SigningKey) -> (Envelope, RequestHash) {
        let payload = serde_json::to_vec(self).expect("a vote request always serialises");
        let hash = hash_request_bytes(&payload);
        (seal(REQUEST_DOMAIN, key, payload), hash)
    }
}

fn check_service(s: &str) -> Result<(), ProtocolError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_SERVICE_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::Malformed(format!(
            "service name must be 1..={MAX_SERVICE_LEN} characters of [A-Za-z0-9._-]"
        )))
    }
}

/// What a witness learns from a request that passed every check.
#[derive(Clone, Debug)]
pub struct OpenedRequest {
    pub request: VoteRequest,
    pub hash: RequestHash,
}

/// The witness's check of an incoming request: shape, version, trusted signer, signature,
/// freshness. Replay is checked afterwards by [`ReplayGuard`], which holds state.
pub fn open_request(
    envelope: &Envelope,
    trusted: impl Fn(&KeyId) -> Option<VerifyingKey>,
    now_ms: u64,
    max_skew_ms: u64,
) -> Result<OpenedRequest, ProtocolError> {
    let (payload, sig) = envelope.open()?;
    check_payload_version(&payload)?;
    let request: VoteRequest = serde_json::from_slice(&payload)
        .map_err(|e| ProtocolError::Malformed(format!("vote request: {e}")))?;
    check_version(request.version)?;
    let key = trusted(&request.coordinator)
        .ok_or_else(|| ProtocolError::UnknownCoordinator(request.coordinator.clone()))?;
    verify(REQUEST_DOMAIN, &key, &request.coordinator, &payload, &sig)?;
    request.validate()?;
    // i128: `issued_at_ms` is any u64 the signer chose; i64 arithmetic would overflow.
    let skew_ms = i128::from(request.issued_at_ms) - i128::from(now_ms);
    if skew_ms.unsigned_abs() > u128::from(max_skew_ms) {
        return Err(ProtocolError::Stale {
            skew_ms: skew_ms.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            max_skew_ms,
        });
    }
    Ok(OpenedRequest {
        request,
        hash: hash_request_bytes(&payload),
    })
}

impl Vote {
    /// Signs the vote with the witness's key.
    pub fn sign(&self, key: &SigningKey) -> Envelope {
        let payload = serde_json::to_vec(self).expect("a vote always serialises");
        seal(VOTE_DOMAIN, key, payload)
    }

    fn check_consistent(&self) -> Result<(), ProtocolError> {
        let evidence_up = self.evidence.error.is_none();
        if evidence_up != (self.verdict == Verdict::Up) {
            return Err(ProtocolError::InconsistentVerdict {
                verdict: self.verdict,
            });
        }
        Ok(())
    }
}

/// What the coordinator expects a vote to answer.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    pub witness_key: &'a VerifyingKey,
    pub request_hash: &'a RequestHash,
    pub service: &'a str,
    pub round: u64,
}

/// The coordinator's (and the offline verifier's) check of a vote: shape, version, signature
/// by the pinned witness key, bound to this very request, for this service and round.
pub fn open_vote(envelope: &Envelope, expected: &Expected<'_>) -> Result<Vote, ProtocolError> {
    let (payload, sig) = envelope.open()?;
    check_payload_version(&payload)?;
    let vote: Vote = serde_json::from_slice(&payload)
        .map_err(|e| ProtocolError::Malformed(format!("vote: {e}")))?;
    check_version(vote.version)?;
    let expected_id = KeyId::of(expected.witness_key);
    if vote.witness != expected_id {
        return Err(ProtocolError::WrongWitness {
            expected: expected_id,
            found: vote.witness,
        });
    }
    verify(
        VOTE_DOMAIN,
        expected.witness_key,
        &vote.witness,
        &payload,
        &sig,
    )?;
    let want = expected.request_hash.hex();
    if vote.request_hash != want {
        return Err(ProtocolError::WrongRequest {
            expected: want,
            found: vote.request_hash,
        });
    }
    if vote.service != expected.service || vote.round != expected.round {
        return Err(ProtocolError::WrongRound {
            expected: expected.service.to_string(),
            expected_round: expected.round,
            found: vote.service,
            found_round: vote.round,
        });
    }
    vote.check_consistent()?;
    Ok(vote)
}

/// Remembers recently seen nonces per coordinator so a request is answered at most once.
///
/// Bounded: entries older than the skew window are dropped (a request that old is refused as
/// stale anyway), and each coordinator holds at most `per_key_capacity` nonces; when full,
/// new requests are refused rather than old nonces forgotten early (which would reopen the
/// replay window). The witness's rate limit keeps honest coordinators far below the cap.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    per_key_capacity: usize,
    seen: HashMap<KeyId, KeyNonces>,
}

#[derive(Debug, Default)]
struct KeyNonces {
    order: VecDeque<(u64, String)>,
    set: std::collections::HashSet<String>,
}

impl ReplayGuard {
    /// `window_ms` must cover the whole acceptance window (2 × max skew).
    pub fn new(window_ms: u64, per_key_capacity: usize) -> ReplayGuard {
        ReplayGuard {
            window_ms,
            per_key_capacity,
            seen: HashMap::new(),
        }
    }

    /// Records the nonce, or refuses it if it was seen within the window.
    pub fn check_and_insert(
        &mut self,
        coordinator: &KeyId,
        nonce: &str,
        now_ms: u64,
    ) -> Result<(), ProtocolError> {
        let entry = self.seen.entry(coordinator.clone()).or_default();
        while let Some((t, _)) = entry.order.front() {
            if now_ms.saturating_sub(*t) > self.window_ms {
                let (_, n) = entry.order.pop_front().expect("front exists");
                entry.set.remove(&n);
            } else {
                break;
            }
        }
        if entry.set.contains(nonce) {
            return Err(ProtocolError::Replayed(nonce.to_string()));
        }
        if entry.order.len() >= self.per_key_capacity {
            return Err(ProtocolError::Overloaded(coordinator.clone()));
        }
        entry.order.push_back((now_ms, nonce.to_string()));
        entry.set.insert(nonce.to_string());
        Ok(())
    }
}

