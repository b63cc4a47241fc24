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

use crate::probe::spec::{Evidence, ProbeSpec};

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

/// Checks a service name: 1..=128 characters of `[A-Za-z0-9._-]`.
pub fn check_service(s: &str) -> Result<(), ProtocolError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! Every refusal has its own variant, checked exactly; the committed test vectors in
    //! `tests/data/protocol-v1/` are reproduced byte for byte.

    use super::*;
    use crate::keys::format_public_key;
    use crate::probe::spec::{HttpMethod, HttpProbe, ProbeError};

    /// The vectors' clock: the request was issued at this instant.
    const ISSUED_AT_MS: u64 = 1_700_000_000_000;
    const SKEW_MS: u64 = 30_000;

    macro_rules! vector {
        ($name:literal) => {
            include_str!(concat!("../../tests/data/protocol-v1/", $name))
        };
    }

    fn seed(hex_text: &str) -> SigningKey {
        let bytes: [u8; 32] = hex::decode(hex_text.trim()).unwrap().try_into().unwrap();
        SigningKey::from_bytes(&bytes)
    }
    fn coordinator_key() -> SigningKey {
        seed(vector!("coordinator.seed.hex"))
    }
    fn witness_key() -> SigningKey {
        seed(vector!("witness.seed.hex"))
    }
    /// Neither trusted as a coordinator nor pinned as a witness.
    fn stranger_key() -> SigningKey {
        SigningKey::from_bytes(&[0x03; 32])
    }
    fn id(key: &SigningKey) -> KeyId {
        KeyId::of(&key.verifying_key())
    }

    fn vector_request() -> VoteRequest {
        VoteRequest {
            version: PROTOCOL_VERSION,
            coordinator: id(&coordinator_key()),
            service: "www".into(),
            round: 7,
            nonce: "00112233445566778899aabbccddeeff".into(),
            issued_at_ms: ISSUED_AT_MS,
            target: ProbeSpec::Http(HttpProbe {
                address: "192.0.2.10:80".parse().unwrap(),
                tls: false,
                host: Some("www.example.test".into()),
                path: "/".into(),
                method: HttpMethod::Get,
                expect_status: vec![],
                body_contains: None,
                tls_verify: true,
                timeout_ms: 2000,
            }),
        }
    }

    fn vector_vote(hash: &RequestHash) -> Vote {
        Vote {
            version: PROTOCOL_VERSION,
            witness: id(&witness_key()),
            service: "www".into(),
            round: 7,
            request_hash: hash.hex(),
            verdict: Verdict::Down,
            evidence: Evidence {
                probe: "http".into(),
                latency_us: 2_000_417,
                status: None,
                error: Some(ProbeError::Timeout),
                detail: Some("no response within 2000 ms".into()),
            },
            probed_at_ms: ISSUED_AT_MS + 2_013,
        }
    }

    /// The witness's check, trusting only the vector coordinator key.
    fn open_req(envelope: &Envelope, now_ms: u64) -> Result<OpenedRequest, ProtocolError> {
        let key = coordinator_key().verifying_key();
        let key_id = KeyId::of(&key);
        open_request(envelope, |k| (*k == key_id).then_some(key), now_ms, SKEW_MS)
    }

    /// The coordinator's check, expecting the vector witness, service "www", round 7.
    fn open_v(envelope: &Envelope, hash: &RequestHash) -> Result<Vote, ProtocolError> {
        let key = witness_key().verifying_key();
        open_vote(
            envelope,
            &Expected {
                witness_key: &key,
                request_hash: hash,
                service: "www",
                round: 7,
            },
        )
    }

    fn signed_request(edit: impl FnOnce(&mut VoteRequest)) -> (Envelope, RequestHash) {
        let mut r = vector_request();
        edit(&mut r);
        r.sign(&coordinator_key())
    }

    fn vector_hash() -> RequestHash {
        vector_request().sign(&coordinator_key()).1
    }

    fn signed_vote(edit: impl FnOnce(&mut Vote)) -> Envelope {
        let mut v = vector_vote(&vector_hash());
        edit(&mut v);
        v.sign(&witness_key())
    }

    /// Replaces `from` with `to` inside the decoded payload, keeping the old signature.
    fn tamper_payload(envelope: &Envelope, from: &str, to: &str) -> Envelope {
        let payload = String::from_utf8(B64.decode(&envelope.payload).unwrap()).unwrap();
        assert!(payload.contains(from), "{payload} lacks {from}");
        Envelope {
            payload: B64.encode(payload.replacen(from, to, 1)),
            signature: envelope.signature.clone(),
        }
    }

    fn flip_signature_bit(envelope: &Envelope, byte: usize) -> Envelope {
        let mut sig = B64.decode(&envelope.signature).unwrap();
        sig[byte] ^= 0x01;
        Envelope {
            payload: envelope.payload.clone(),
            signature: B64.encode(sig),
        }
    }

    fn malformed(r: Result<impl fmt::Debug, ProtocolError>, mentions: &str) {
        match r {
            Err(ProtocolError::Malformed(m)) => {
                assert!(m.contains(mentions), "{m:?} lacks {mentions:?}")
            }
            other => panic!("expected malformed mentioning {mentions:?}, got {other:?}"),
        }
    }

    // ---- round trips ----

    #[test]
    fn request_round_trips_through_the_wire() {
        let (env, hash) = signed_request(|_| {});
        let wire = Envelope::from_json(&env.to_json()).unwrap();
        let opened = open_req(&wire, ISSUED_AT_MS).unwrap();
        assert_eq!(opened.request, vector_request());
        assert_eq!(opened.hash, hash);
        assert_eq!(wire.request_hash().unwrap(), hash);
    }

    #[test]
    fn vote_round_trips_through_the_wire() {
        let hash = vector_hash();
        let env = vector_vote(&hash).sign(&witness_key());
        let wire = Envelope::from_json(&env.to_json()).unwrap();
        assert_eq!(open_v(&wire, &hash).unwrap(), vector_vote(&hash));
    }

    // ---- signatures ----

    #[test]
    fn tampered_request_payload_is_a_bad_signature() {
        let (env, _) = signed_request(|_| {});
        let env = tamper_payload(&env, "\"round\":7", "\"round\":8");
        assert_eq!(
            open_req(&env, ISSUED_AT_MS).unwrap_err(),
            ProtocolError::BadSignature(id(&coordinator_key()))
        );
    }

    #[test]
    fn tampered_vote_payload_is_a_bad_signature() {
        let env = tamper_payload(&signed_vote(|_| {}), "2000417", "2000418");
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::BadSignature(id(&witness_key()))
        );
    }

    #[test]
    fn tampered_signatures_are_bad_signatures() {
        let (req, _) = signed_request(|_| {});
        let vote = signed_vote(|_| {});
        // A bit in R (first half) and one in S (second half) of each signature.
        for byte in [0, 40] {
            assert_eq!(
                open_req(&flip_signature_bit(&req, byte), ISSUED_AT_MS).unwrap_err(),
                ProtocolError::BadSignature(id(&coordinator_key()))
            );
            assert_eq!(
                open_v(&flip_signature_bit(&vote, byte), &vector_hash()).unwrap_err(),
                ProtocolError::BadSignature(id(&witness_key()))
            );
        }
    }

    #[test]
    fn request_signed_by_another_key_under_the_trusted_id_is_a_bad_signature() {
        let (env, _) = vector_request().sign(&stranger_key());
        assert_eq!(
            open_req(&env, ISSUED_AT_MS).unwrap_err(),
            ProtocolError::BadSignature(id(&coordinator_key()))
        );
    }

    #[test]
    fn vote_signed_by_another_key_under_the_pinned_id_is_a_bad_signature() {
        let env = vector_vote(&vector_hash()).sign(&stranger_key());
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::BadSignature(id(&witness_key()))
        );
    }

    #[test]
    fn signatures_are_domain_separated() {
        // The request's own bytes and the coordinator's own key, but under the vote domain.
        let payload = serde_json::to_vec(&vector_request()).unwrap();
        let env = seal(VOTE_DOMAIN, &coordinator_key(), payload);
        assert_eq!(
            open_req(&env, ISSUED_AT_MS).unwrap_err(),
            ProtocolError::BadSignature(id(&coordinator_key()))
        );
        let payload = serde_json::to_vec(&vector_vote(&vector_hash())).unwrap();
        let env = seal(REQUEST_DOMAIN, &witness_key(), payload);
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::BadSignature(id(&witness_key()))
        );
        // And one message is never mistaken for the other.
        let (req, hash) = signed_request(|_| {});
        malformed(open_v(&req, &hash), "vote");
        malformed(open_req(&signed_vote(|_| {}), ISSUED_AT_MS), "vote request");
    }

    #[test]
    fn unknown_coordinator_is_refused_before_any_signature_check() {
        let stranger = stranger_key();
        let (env, _) = signed_request(|r| r.coordinator = id(&stranger));
        assert_eq!(
            open_req(&env, ISSUED_AT_MS).unwrap_err(),
            ProtocolError::UnknownCoordinator(id(&stranger))
        );
    }

    // ---- freshness and replay ----

    #[test]
    fn requests_outside_the_skew_window_are_stale_both_ways() {
        let (env, _) = signed_request(|_| {});
        // Witness clock ahead: the request looks old.
        assert_eq!(
            open_req(&env, ISSUED_AT_MS + SKEW_MS + 1).unwrap_err(),
            ProtocolError::Stale {
                skew_ms: -(SKEW_MS as i64 + 1),
                max_skew_ms: SKEW_MS
            }
        );
        // Witness clock behind: the request comes from the future.
        assert_eq!(
            open_req(&env, ISSUED_AT_MS - SKEW_MS - 1).unwrap_err(),
            ProtocolError::Stale {
                skew_ms: SKEW_MS as i64 + 1,
                max_skew_ms: SKEW_MS
            }
        );
        // The window's edges are inside it.
        open_req(&env, ISSUED_AT_MS + SKEW_MS).unwrap();
        open_req(&env, ISSUED_AT_MS - SKEW_MS).unwrap();
    }

    #[test]
    fn extreme_timestamps_are_stale_not_an_overflow() {
        for issued in [0, i64::MAX as u64, 1 << 63, (1 << 63) + 1, u64::MAX] {
            let (env, _) = signed_request(|r| r.issued_at_ms = issued);
            for now in [0, ISSUED_AT_MS, u64::MAX] {
                match open_req(&env, now) {
                    Err(ProtocolError::Stale {
                        skew_ms,
                        max_skew_ms,
                    }) => {
                        assert_eq!(max_skew_ms, SKEW_MS);
                        assert_eq!(skew_ms.signum(), if issued > now { 1 } else { -1 });
                    }
                    Ok(_) => assert!(issued.abs_diff(now) <= SKEW_MS, "{issued} at {now}"),
                    Err(e) => panic!("{issued} at {now}: {e}"),
                }
            }
        }
    }

    #[test]
    fn a_replayed_nonce_is_refused() {
        let (env, _) = signed_request(|_| {});
        let mut guard = ReplayGuard::new(2 * SKEW_MS, 100);
        let first = open_req(&env, ISSUED_AT_MS).unwrap().request;
        guard
            .check_and_insert(&first.coordinator, &first.nonce, ISSUED_AT_MS)
            .unwrap();
        // The same envelope again, a second later: valid in itself, refused as a replay.
        let again = open_req(&env, ISSUED_AT_MS + 1000).unwrap().request;
        assert_eq!(
            guard
                .check_and_insert(&again.coordinator, &again.nonce, ISSUED_AT_MS + 1000)
                .unwrap_err(),
            ProtocolError::Replayed(first.nonce.clone())
        );
        // The same nonce from another coordinator is that coordinator's business.
        guard
            .check_and_insert(&id(&stranger_key()), &first.nonce, ISSUED_AT_MS + 1000)
            .unwrap();
    }

    #[test]
    fn replay_guard_forgets_a_nonce_only_after_its_window() {
        let window = 2 * SKEW_MS;
        let c = id(&coordinator_key());
        let mut guard = ReplayGuard::new(window, 100);
        guard.check_and_insert(&c, "n1", 1_000).unwrap();
        assert_eq!(
            guard
                .check_and_insert(&c, "n1", 1_000 + window)
                .unwrap_err(),
            ProtocolError::Replayed("n1".into())
        );
        guard
            .check_and_insert(&c, "n1", 1_000 + window + 1)
            .unwrap();
        assert_eq!(
            guard
                .check_and_insert(&c, "n1", 1_000 + window + 2)
                .unwrap_err(),
            ProtocolError::Replayed("n1".into())
        );
    }

    #[test]
    fn the_nonce_cache_spans_the_whole_acceptance_window() {
        // Seen at the earliest moment the request is fresh, replayed at the latest: still
        // remembered, so a 2 x skew cache closes the replay window.
        let (env, _) = signed_request(|_| {});
        let mut guard = ReplayGuard::new(2 * SKEW_MS, 100);
        let (first, last) = (ISSUED_AT_MS - SKEW_MS, ISSUED_AT_MS + SKEW_MS);
        let r = open_req(&env, first).unwrap().request;
        guard
            .check_and_insert(&r.coordinator, &r.nonce, first)
            .unwrap();
        let r = open_req(&env, last).unwrap().request;
        assert_eq!(
            guard
                .check_and_insert(&r.coordinator, &r.nonce, last)
                .unwrap_err(),
            ProtocolError::Replayed(r.nonce.clone())
        );
    }

    #[test]
    fn replay_guard_is_bounded_per_key() {
        let window = 1_000;
        let (c, other) = (id(&coordinator_key()), id(&stranger_key()));
        let mut guard = ReplayGuard::new(window, 3);
        for n in ["a", "b", "c"] {
            guard.check_and_insert(&c, n, 10).unwrap();
        }
        assert_eq!(
            guard.check_and_insert(&c, "d", 20).unwrap_err(),
            ProtocolError::Overloaded(c.clone())
        );
        // A replay is still reported as a replay, not hidden behind the cap.
        assert_eq!(
            guard.check_and_insert(&c, "a", 20).unwrap_err(),
            ProtocolError::Replayed("a".into())
        );
        // Another coordinator has its own budget.
        guard.check_and_insert(&other, "d", 20).unwrap();
        // Once the old nonces age out, room is made again.
        guard.check_and_insert(&c, "d", 10 + window + 1).unwrap();
    }

    // ---- votes bound to their request ----

    #[test]
    fn a_vote_for_another_request_is_refused() {
        let (_, other_hash) =
            signed_request(|r| r.nonce = "ffeeddccbbaa99887766554433221100".into());
        let env = vector_vote(&other_hash).sign(&witness_key());
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::WrongRequest {
                expected: vector_hash().hex(),
                found: other_hash.hex()
            }
        );
    }

    #[test]
    fn a_vote_from_another_witness_is_refused() {
        let stranger = stranger_key();
        let mut vote = vector_vote(&vector_hash());
        vote.witness = id(&stranger);
        let env = vote.sign(&stranger);
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::WrongWitness {
                expected: id(&witness_key()),
                found: id(&stranger)
            }
        );
    }

    #[test]
    fn a_vote_for_another_service_or_round_is_refused() {
        let env = signed_vote(|v| v.service = "api".into());
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::WrongRound {
                expected: "www".into(),
                expected_round: 7,
                found: "api".into(),
                found_round: 7
            }
        );
        let env = signed_vote(|v| v.round = 6);
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::WrongRound {
                expected: "www".into(),
                expected_round: 7,
                found: "www".into(),
                found_round: 6
            }
        );
    }

    #[test]
    fn a_verdict_contradicting_its_evidence_is_refused() {
        let env = signed_vote(|v| v.verdict = Verdict::Up);
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::InconsistentVerdict {
                verdict: Verdict::Up
            }
        );
        let env = signed_vote(|v| v.evidence.error = None);
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::InconsistentVerdict {
                verdict: Verdict::Down
            }
        );
        // Consistent the other way round: up with no error.
        let env = signed_vote(|v| {
            v.verdict = Verdict::Up;
            v.evidence.error = None;
            v.evidence.status = Some(200);
        });
        assert_eq!(open_v(&env, &vector_hash()).unwrap().verdict, Verdict::Up);
    }

    // ---- versions ----

    #[test]
    fn other_protocol_versions_are_unsupported() {
        for version in [0, 2, u32::MAX] {
            let (env, _) = signed_request(|r| r.version = version);
            assert_eq!(
                open_req(&env, ISSUED_AT_MS).unwrap_err(),
                ProtocolError::UnsupportedVersion { found: version }
            );
            let env = signed_vote(|v| v.version = version);
            assert_eq!(
                open_v(&env, &vector_hash()).unwrap_err(),
                ProtocolError::UnsupportedVersion { found: version }
            );
        }
    }

    #[test]
    fn a_newer_version_with_new_fields_is_unsupported_not_malformed() {
        let mut v = serde_json::to_value(vector_request()).unwrap();
        v["version"] = 2.into();
        v["priority"] = "high".into();
        let env = seal(
            REQUEST_DOMAIN,
            &coordinator_key(),
            serde_json::to_vec(&v).unwrap(),
        );
        assert_eq!(
            open_req(&env, ISSUED_AT_MS).unwrap_err(),
            ProtocolError::UnsupportedVersion { found: 2 }
        );
        let mut v = serde_json::to_value(vector_vote(&vector_hash())).unwrap();
        v["version"] = 2.into();
        v["region"] = "eu".into();
        let env = seal(VOTE_DOMAIN, &witness_key(), serde_json::to_vec(&v).unwrap());
        assert_eq!(
            open_v(&env, &vector_hash()).unwrap_err(),
            ProtocolError::UnsupportedVersion { found: 2 }
        );
    }

    // ---- malformed input ----

    #[test]
    fn malformed_envelopes_are_refused_with_the_reason() {
        malformed(Envelope::from_json(b"not json"), "envelope");
        malformed(Envelope::from_json(b"{\"payload\":\"\"}"), "signature");
        malformed(
            Envelope::from_json(b"{\"payload\":\"\",\"signature\":\"\",\"x\":1}"),
            "unknown field",
        );
        let (good, hash) = signed_request(|_| {});
        let bad_payload = Envelope {
            payload: "!!!".into(),
            signature: good.signature.clone(),
        };
        malformed(
            open_req(&bad_payload, ISSUED_AT_MS),
            "payload is not base64",
        );
        malformed(open_v(&bad_payload, &hash), "payload is not base64");
        malformed(bad_payload.request_hash(), "payload is not base64");
        let bad_sig = Envelope {
            payload: good.payload.clone(),
            signature: "%%%".into(),
        };
        malformed(open_req(&bad_sig, ISSUED_AT_MS), "signature is not base64");
        let short_sig = Envelope {
            payload: good.payload.clone(),
            signature: B64.encode([0u8; 63]),
        };
        malformed(open_req(&short_sig, ISSUED_AT_MS), "63 bytes, expected 64");
        malformed(open_v(&short_sig, &hash), "63 bytes, expected 64");
    }

    #[test]
    fn malformed_payloads_are_refused_even_when_signed() {
        let key = coordinator_key();
        let sealed = |bytes: &[u8]| seal(REQUEST_DOMAIN, &key, bytes.to_vec());
        malformed(open_req(&sealed(b"\xff\xfe"), ISSUED_AT_MS), "vote request");
        malformed(open_req(&sealed(b"[1,2]"), ISSUED_AT_MS), "vote request");
        let mut v = serde_json::to_value(vector_request()).unwrap();
        v["extra"] = 1.into();
        malformed(
            open_req(&sealed(&serde_json::to_vec(&v).unwrap()), ISSUED_AT_MS),
            "unknown field `extra`",
        );
        let mut v = serde_json::to_value(vector_request()).unwrap();
        v.as_object_mut().unwrap().remove("nonce");
        malformed(
            open_req(&sealed(&serde_json::to_vec(&v).unwrap()), ISSUED_AT_MS),
            "missing field `nonce`",
        );
        let mut v = serde_json::to_value(vector_request()).unwrap();
        v["target"]["port"] = 80.into();
        malformed(
            open_req(&sealed(&serde_json::to_vec(&v).unwrap()), ISSUED_AT_MS),
            "unknown field `port`",
        );
        let mut v = serde_json::to_value(vector_request()).unwrap();
        v["target"]["kind"] = "ftp".into();
        malformed(
            open_req(&sealed(&serde_json::to_vec(&v).unwrap()), ISSUED_AT_MS),
            "ftp",
        );
    }

    #[test]
    fn signed_requests_with_out_of_bounds_fields_are_malformed() {
        type Edit = fn(&mut VoteRequest);
        let cases: [(&str, Edit); 6] = [
            ("nonce", |r| r.nonce = "0011".into()),
            ("nonce", |r| {
                r.nonce = "zz112233445566778899aabbccddeeff".into()
            }),
            ("service", |r| r.service = String::new()),
            ("service", |r| r.service = "www/../etc".into()),
            ("service", |r| r.service = "s".repeat(MAX_SERVICE_LEN + 1)),
            ("target: timeout_ms", |r| {
                if let ProbeSpec::Http(h) = &mut r.target {
                    h.timeout_ms = 0;
                }
            }),
        ];
        for (field, edit) in cases {
            let (env, _) = signed_request(edit);
            malformed(open_req(&env, ISSUED_AT_MS), field);
        }
        // The longest service name allowed is allowed.
        let (env, _) = signed_request(|r| r.service = "s".repeat(MAX_SERVICE_LEN));
        open_req(&env, ISSUED_AT_MS).unwrap();
    }

    #[test]
    fn oversized_envelopes_are_refused_before_parsing() {
        let too_big = vec![b' '; MAX_ENVELOPE_BYTES + 1];
        malformed(Envelope::from_json(&too_big), "limit is 16384");
        // Exactly at the limit is parsed (white space padding is valid JSON).
        let mut at_limit = signed_request(|_| {}).0.to_json();
        at_limit.resize(MAX_ENVELOPE_BYTES, b' ');
        let env = Envelope::from_json(&at_limit).unwrap();
        open_req(&env, ISSUED_AT_MS).unwrap();
    }

    #[test]
    fn error_codes_are_distinct_and_documented() {
        let k = KeyId("k".into());
        let all = [
            ProtocolError::Malformed(String::new()),
            ProtocolError::UnsupportedVersion { found: 2 },
            ProtocolError::UnknownCoordinator(k.clone()),
            ProtocolError::BadSignature(k.clone()),
            ProtocolError::Stale {
                skew_ms: 0,
                max_skew_ms: 0,
            },
            ProtocolError::Replayed(String::new()),
            ProtocolError::WrongWitness {
                expected: k.clone(),
                found: k.clone(),
            },
            ProtocolError::WrongRequest {
                expected: String::new(),
                found: String::new(),
            },
            ProtocolError::WrongRound {
                expected: String::new(),
                expected_round: 0,
                found: String::new(),
                found_round: 0,
            },
            ProtocolError::InconsistentVerdict {
                verdict: Verdict::Up,
            },
            ProtocolError::Overloaded(k),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
        let doc = include_str!("../../docs/protocol.md");
        for code in codes {
            assert!(
                doc.contains(&format!("`{code}`")),
                "docs/protocol.md lacks `{code}`"
            );
        }
    }

    // ---- the committed test vectors ----

    fn hex_file(text: &str) -> Vec<u8> {
        hex::decode(text.trim()).unwrap()
    }

    #[test]
    fn vector_keys_match_their_public_forms() {
        assert_eq!(hex_file(vector!("coordinator.seed.hex")), [0x01; 32]);
        assert_eq!(hex_file(vector!("witness.seed.hex")), [0x02; 32]);
        assert_eq!(
            format_public_key(&coordinator_key().verifying_key()),
            vector!("coordinator.public.txt").trim()
        );
        assert_eq!(
            format_public_key(&witness_key().verifying_key()),
            vector!("witness.public.txt").trim()
        );
    }

    #[test]
    fn request_vector_is_reproduced_byte_for_byte() {
        let payload = vector!("request.payload.json").as_bytes();
        assert_eq!(serde_json::to_vec(&vector_request()).unwrap(), payload);
        let signed = hex_file(vector!("request.signed-bytes.hex"));
        assert_eq!(signed, signed_bytes(REQUEST_DOMAIN, payload));
        assert_eq!(&signed[..REQUEST_DOMAIN.len()], REQUEST_DOMAIN);

        let committed = Envelope::from_json(vector!("request.envelope.json").as_bytes()).unwrap();
        let (now, hash) = vector_request().sign(&coordinator_key());
        // ed25519 is deterministic: the same key and bytes give the same signature.
        assert_eq!(now, committed);
        assert_eq!(now.to_json(), vector!("request.envelope.json").as_bytes());
        assert_eq!(B64.decode(&committed.payload).unwrap(), payload);
        assert_eq!(hash.hex(), vector!("request.hash.hex").trim());
        assert_eq!(
            hex::encode(Sha256::digest(&signed)),
            vector!("request.hash.hex").trim()
        );

        let opened = open_req(&committed, ISSUED_AT_MS).unwrap();
        assert_eq!(opened.request, vector_request());
        assert_eq!(opened.hash, hash);
    }

    #[test]
    fn vote_vector_is_reproduced_byte_for_byte() {
        let hash = RequestHash(hex_file(vector!("request.hash.hex")).try_into().unwrap());
        let payload = vector!("vote.payload.json").as_bytes();
        assert_eq!(serde_json::to_vec(&vector_vote(&hash)).unwrap(), payload);
        assert_eq!(
            hex_file(vector!("vote.signed-bytes.hex")),
            signed_bytes(VOTE_DOMAIN, payload)
        );
        let committed = Envelope::from_json(vector!("vote.envelope.json").as_bytes()).unwrap();
        let now = vector_vote(&hash).sign(&witness_key());
        assert_eq!(now, committed);
        assert_eq!(now.to_json(), vector!("vote.envelope.json").as_bytes());
        assert_eq!(B64.decode(&committed.payload).unwrap(), payload);
        assert_eq!(open_v(&committed, &hash).unwrap(), vector_vote(&hash));
    }

    #[test]
    fn the_protocol_doc_quotes_the_vectors() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let doc = include_str!("../../docs/protocol.md");
        let pem = coordinator_key()
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        for quoted in [
            vector!("coordinator.public.txt").trim(),
            vector!("witness.public.txt").trim(),
            &id(&coordinator_key()).0,
            &id(&witness_key()).0,
            vector!("request.payload.json"),
            vector!("request.envelope.json"),
            vector!("request.hash.hex").trim(),
            vector!("vote.payload.json"),
            vector!("vote.envelope.json"),
            pem.as_str().trim(),
        ] {
            assert!(
                doc.contains(quoted),
                "docs/protocol.md does not quote {quoted}"
            );
        }
    }
}
