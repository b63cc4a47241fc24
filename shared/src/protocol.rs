//! The witness protocol, version 1: vote requests signed by a coordinator, votes signed by a
//! witness, and everything needed to check them. Pure: no I/O, no clock (callers pass `now`).
//!
//! Wire form of both messages is an [`Envelope`]: `{"payload": B64, "signature": B64}`. The
//! payload is the exact JSON bytes the signer produced; the signature covers
//! `DOMAIN || payload` where `DOMAIN` separates requests from votes. Verifiers check the bytes
//! they received and never re-serialise, so there is no canonicalisation to get wrong, and a
//! stored envelope can be re-verified byte for byte years later. See `docs/protocol.md`.
//!
//! Every piece of JSON that arrives from the network (an envelope, a request or vote payload,
//! an API body) is read by [`from_json_object`]: where a type is an object, the JSON must be an
//! object, at every level. serde's derived structs would also take an array of the field values
//! in order (`["<payload>","<signature>"]`), which a verifier written from the docs refuses.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
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

/// Why JSON from the network was not read: not JSON, not the type's fields, or an array (or
/// other value) where the type is an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonInputError(String);

/// The one way JSON from the network becomes a typed value: `T` as serde reads it, and in
/// addition a JSON object wherever `T` is one, at every level. A derived struct alone would
/// also accept an array of its field values; this refuses it, naming where (`` `target` ``).
///
/// How: the bytes are read as `T` (so serde's own errors, unknown and duplicate fields, stay
/// as they are) and as a plain JSON value; wherever `T` serialises to an object, the value sent
/// must be an object too. Works for any new type without an annotation to forget.
///
/// The one other shape serde_json reads a struct or map from is an array, so input without a
/// `[` byte anywhere is read once and the walk skipped: every signed vote and request (their
/// base64 envelopes and payloads have none), so a message costs one parse, not three (about
/// 5 % of the coordinator's and the witness's CPU at scale). This holds for derived types and
/// maps; a type with a hand-written `Deserialize` that reads an object from a string or number
/// would need the walk and must not be added to the protocol.
pub fn from_json_object<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
) -> Result<T, JsonInputError> {
    let typed: T = serde_json::from_slice(bytes).map_err(|e| JsonInputError(e.to_string()))?;
    if !bytes.contains(&b'[') {
        return Ok(typed);
    }
    let sent: Value = serde_json::from_slice(bytes).map_err(|e| JsonInputError(e.to_string()))?;
    let shape = serde_json::to_value(&typed).map_err(|e| JsonInputError(e.to_string()))?;
    objects_where_objects(&sent, &shape, "")?;
    Ok(typed)
}

/// Walks `shape` (what the typed value serialises to) and `sent` side by side.
fn objects_where_objects(sent: &Value, shape: &Value, path: &str) -> Result<(), JsonInputError> {
    match (shape, sent) {
        (Value::Object(fields), Value::Object(got)) => {
            for (key, inner) in fields {
                if let Some(g) = got.get(key) {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    objects_where_objects(g, inner, &p)?;
                }
            }
            Ok(())
        }
        (Value::Object(_), other) => {
            let what = if path.is_empty() {
                "the message".to_string()
            } else {
                format!("`{path}`")
            };
            Err(JsonInputError(format!(
                "{what} must be a JSON object, got {}; send the fields by name: {{\"name\": value, ..}}",
                json_kind(other)
            )))
        }
        (Value::Array(items), Value::Array(got)) => {
            for (i, (inner, g)) in items.iter().zip(got).enumerate() {
                objects_where_objects(g, inner, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
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
        from_json_object(bytes).map_err(|e| ProtocolError::Malformed(format!("envelope: {e}")))
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
    #[derive(Deserialize, Serialize)]
    struct Versioned {
        version: u32,
    }
    // Strict too: an array payload is malformed, whatever its first element says.
    match from_json_object::<Versioned>(payload) {
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
    let request: VoteRequest = from_json_object(&payload)
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
    let vote: Vote =
        from_json_object(&payload).map_err(|e| ProtocolError::Malformed(format!("vote: {e}")))?;
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

    // ---- objects where the protocol says object ----

    /// The request, vote and envelope as arrays of their field values, in field order: what
    /// serde's derived structs accepted before [`from_json_object`]. Built here from the
    /// vector messages; the committed files in `refused/` are compared against these bytes.
    fn array_forms() -> Vec<(&'static str, Vec<u8>)> {
        let j = |v: &dyn erased::Json| v.json();
        let r = vector_request();
        let ProbeSpec::Http(h) = &r.target else {
            panic!("the vector request probes HTTP")
        };
        let target_array = format!(
            "[\"http\",{},{},{},{},{},{},{},{},{}]",
            j(&h.address),
            j(&h.tls),
            j(&h.host),
            j(&h.path),
            j(&h.method),
            j(&h.expect_status),
            j(&h.body_contains),
            j(&h.tls_verify),
            j(&h.timeout_ms)
        );
        let request_fields = |target: &str| {
            format!(
                "{},{},{},{},{},{},{target}",
                j(&r.version),
                j(&r.coordinator),
                j(&r.service),
                j(&r.round),
                j(&r.nonce),
                j(&r.issued_at_ms)
            )
        };
        let request_array = format!("[{}]", request_fields(&j(&r.target)));
        let mut target_as_array = j(&r).into_bytes();
        let target_object = j(&r.target);
        let text = String::from_utf8(target_as_array).unwrap();
        assert!(text.contains(&target_object));
        target_as_array = text.replacen(&target_object, &target_array, 1).into_bytes();

        let v = vector_vote(&vector_hash());
        let e = &v.evidence;
        let evidence_array = format!(
            "[{},{},{},{},{}]",
            j(&e.probe),
            j(&e.latency_us),
            j(&e.status),
            j(&e.error),
            j(&e.detail)
        );
        let vote_array = format!(
            "[{},{},{},{},{},{},{},{}]",
            j(&v.version),
            j(&v.witness),
            j(&v.service),
            j(&v.round),
            j(&v.request_hash),
            j(&v.verdict),
            j(&v.evidence),
            j(&v.probed_at_ms)
        );
        let vote_text = j(&v);
        let evidence_object = j(&v.evidence);
        assert!(vote_text.contains(&evidence_object));
        let evidence_as_array = vote_text.replacen(&evidence_object, &evidence_array, 1);
        vec![
            ("request-payload-array", request_array.into_bytes()),
            ("request-target-array", target_as_array),
            ("vote-payload-array", vote_array.into_bytes()),
            ("vote-evidence-array", evidence_as_array.into_bytes()),
        ]
    }

    mod erased {
        /// Compact JSON of any serialisable value (field order as declared).
        pub trait Json {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

    /// The vote request payload for a target of each kind, votes, and an envelope.
    fn messages_of_every_shape() -> Vec<(&'static str, Vec<u8>)> {
        use crate::probe::spec::{DnsProbe, TcpProbe};
        let with_target = |t: ProbeSpec| {
            let mut r = vector_request();
            r.target = t;
            serde_json::to_vec(&r).unwrap()
        };
        // Every evidence field present, so its array form can be read by position.
        let mut full = vector_vote(&vector_hash());
        full.evidence.status = Some(503);
        full.evidence.error = Some(ProbeError::Status);
        full.evidence.detail = Some("status 503".into());
        vec![
            ("request", serde_json::to_vec(&vector_request()).unwrap()),
            (
                "request",
                with_target(ProbeSpec::Tcp(TcpProbe {
                    address: "192.0.2.10:443".parse().unwrap(),
                    timeout_ms: 1000,
                })),
            ),
            (
                "request",
                with_target(ProbeSpec::Dns(DnsProbe {
                    server: "192.0.2.53:53".parse().unwrap(),
                    name: "www.example.test.".into(),
                    rtype: "AAAA".into(),
                    timeout_ms: 1000,
                })),
            ),
            (
                "vote",
                serde_json::to_vec(&vector_vote(&vector_hash())).unwrap(),
            ),
            ("vote", serde_json::to_vec(&full).unwrap()),
            (
                "envelope",
                vector!("request.envelope.json").as_bytes().to_vec(),
            ),
        ]
    }

    /// JSON that keeps the order of object members (serde_json's `Value` sorts them), so an
    /// object can be turned into the array of its values in field order.
    #[derive(Clone, Debug)]
    enum Ordered {
        Object(Vec<(String, Ordered)>),
        Array(Vec<Ordered>),
        Leaf(Value),
    }

    impl<'de> Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Ordered;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON")
                }
                fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                    Ok(Ordered::Leaf(v.into()))
                }
                fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                    Ok(Ordered::Leaf(v.into()))
                }
                fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                    Ok(Ordered::Leaf(v.into()))
                }
                fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                    Ok(Ordered::Leaf(v.into()))
                }
                fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                    Ok(Ordered::Leaf(v.into()))
                }
                fn visit_unit<E>(self) -> Result<Ordered, E> {
                    Ok(Ordered::Leaf(Value::Null))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Ordered, A::Error> {
                    let mut items = Vec::new();
                    while let Some(i) = a.next_element()? {
                        items.push(i);
                    }
                    Ok(Ordered::Array(items))
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut a: A,
                ) -> Result<Ordered, A::Error> {
                    let mut members = Vec::new();
                    while let Some(m) = a.next_entry()? {
                        members.push(m);
                    }
                    Ok(Ordered::Object(members))
                }
            }
            d.deserialize_any(V)
        }
    }

    impl Serialize for Ordered {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{SerializeMap as _, SerializeSeq as _};
            match self {
                Ordered::Object(members) => {
                    let mut m = s.serialize_map(Some(members.len()))?;
                    for (k, v) in members {
                        m.serialize_entry(k, v)?;
                    }
                    m.end()
                }
                Ordered::Array(items) => {
                    let mut q = s.serialize_seq(Some(items.len()))?;
                    for i in items {
                        q.serialize_element(i)?;
                    }
                    q.end()
                }
                Ordered::Leaf(v) => v.serialize(s),
            }
        }
    }

    /// Every object in `o` turned, one at a time, into the array of its values: the copy and
    /// the object's path as the refusal names it.
    fn each_object_as_array(o: &Ordered, path: &str, out: &mut Vec<(String, Ordered)>) {
        let child = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        match o {
            Ordered::Object(members) => {
                let values = members.iter().map(|(_, v)| v.clone()).collect();
                out.push((path.to_string(), Ordered::Array(values)));
                for (i, (k, v)) in members.iter().enumerate() {
                    let mut inner = Vec::new();
                    each_object_as_array(v, &child(k), &mut inner);
                    for (p, edited) in inner {
                        let mut copy = members.clone();
                        copy[i].1 = edited;
                        out.push((p, Ordered::Object(copy)));
                    }
                }
            }
            Ordered::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let mut inner = Vec::new();
                    each_object_as_array(v, &format!("{path}[{i}]"), &mut inner);
                    for (p, edited) in inner {
                        let mut copy = items.clone();
                        copy[i] = edited;
                        out.push((p, Ordered::Array(copy)));
                    }
                }
            }
            Ordered::Leaf(_) => {}
        }
    }

    /// The unit test that walks each type: every object of every message (envelope, request
    /// with each kind of target, vote with its evidence), sent as the array of its values in
    /// field order, is read by serde's derived types as if it were the object, and refused by
    /// `from_json_object` (so by the witness and the coordinator) as malformed, naming where.
    #[test]
    fn every_object_of_every_message_sent_as_an_array_is_malformed() {
        let mut checked = std::collections::BTreeSet::new();
        for (kind, bytes) in messages_of_every_shape() {
            let original: Ordered = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(serde_json::to_vec(&original).unwrap(), bytes, "order kept");
            let mut cases = Vec::new();
            each_object_as_array(&original, "", &mut cases);
            assert!(!cases.is_empty());
            for (path, edited) in cases {
                let sent = serde_json::to_vec(&edited).unwrap();
                let text = String::from_utf8(sent.clone()).unwrap();
                let mentions = if path.is_empty() {
                    "the message must be a JSON object, got an array".to_string()
                } else {
                    format!("`{path}` must be a JSON object")
                };
                // What serde's derive alone makes of it: when it reads the array at all (an
                // object whose empty fields are left out cannot be read by position), it reads
                // the very same message.
                let (lenient, result) = match kind {
                    "request" => {
                        let lenient = serde_json::from_slice::<VoteRequest>(&sent).ok();
                        let same = lenient.map(|l| l == serde_json::from_slice(&bytes).unwrap());
                        let env = seal(REQUEST_DOMAIN, &coordinator_key(), sent.clone());
                        (same, open_req(&env, ISSUED_AT_MS).map(|_| ()))
                    }
                    "vote" => {
                        let lenient = serde_json::from_slice::<Vote>(&sent).ok();
                        let same = lenient.map(|l| l == serde_json::from_slice(&bytes).unwrap());
                        let env = seal(VOTE_DOMAIN, &witness_key(), sent.clone());
                        (same, open_v(&env, &vector_hash()).map(|_| ()))
                    }
                    _ => {
                        let lenient = serde_json::from_slice::<Envelope>(&sent).ok();
                        let same = lenient.map(|l| l == serde_json::from_slice(&bytes).unwrap());
                        (same, Envelope::from_json(&sent).map(|_| ()))
                    }
                };
                assert_ne!(lenient, Some(false), "{text}: derive read another message");
                match result {
                    Err(ProtocolError::Malformed(m)) if lenient.is_some() => {
                        assert!(m.contains(&mentions), "{text}: {m:?} lacks {mentions:?}")
                    }
                    Err(ProtocolError::Malformed(_)) => continue,
                    other => panic!("{text}: expected malformed, got {other:?}"),
                }
                checked.insert(format!("{kind} {path}"));
            }
        }
        // Every level the protocol has was reached by an array the derive reads as the object.
        for want in [
            "envelope ",
            "request ",
            "request target",
            "vote ",
            "vote evidence",
        ] {
            assert!(checked.contains(want), "{want:?} not walked: {checked:?}");
        }
    }

    /// The committed refusal vectors in `tests/data/protocol-v1/refused/`: each is signed
    /// correctly by the vector keys (a verifier that only checks signatures and reads fields
    /// positionally accepts it), and each is refused as `malformed`.
    #[test]
    fn refusal_vectors_are_signed_yet_refused_as_malformed() {
        let built: HashMap<&str, Vec<u8>> = array_forms().into_iter().collect();
        let signed = [
            (
                "request-payload-array",
                vector!("refused/request-payload-array.payload.json"),
                vector!("refused/request-payload-array.envelope.json"),
                "vote request: the message must be a JSON object, got an array",
            ),
            (
                "request-target-array",
                vector!("refused/request-target-array.payload.json"),
                vector!("refused/request-target-array.envelope.json"),
                "vote request: `target` must be a JSON object, got an array",
            ),
            (
                "vote-payload-array",
                vector!("refused/vote-payload-array.payload.json"),
                vector!("refused/vote-payload-array.envelope.json"),
                "vote: the message must be a JSON object, got an array",
            ),
            (
                "vote-evidence-array",
                vector!("refused/vote-evidence-array.payload.json"),
                vector!("refused/vote-evidence-array.envelope.json"),
                "vote: `evidence` must be a JSON object, got an array",
            ),
        ];
        assert_eq!(built.len(), signed.len());
        for (name, payload, envelope, mentions) in signed {
            assert_eq!(payload.as_bytes(), built[name].as_slice(), "{name}");
            let env = Envelope::from_json(envelope.as_bytes()).unwrap();
            let (bytes, sig) = env.open().unwrap();
            assert_eq!(bytes, payload.as_bytes(), "{name}");
            let is_request = name.starts_with("request");
            let (domain, key) = if is_request {
                (REQUEST_DOMAIN, coordinator_key())
            } else {
                (VOTE_DOMAIN, witness_key())
            };
            // The signature is good: only the shape is wrong.
            verify(domain, &key.verifying_key(), &id(&key), &bytes, &sig).unwrap();
            assert_eq!(
                seal(domain, &key, bytes.clone()).to_json(),
                envelope.as_bytes(),
                "{name}"
            );
            let refused = if is_request {
                // serde's derive alone reads it as the committed request.
                let lenient: VoteRequest = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(lenient, vector_request());
                open_req(&env, ISSUED_AT_MS).map(|_| ())
            } else {
                let lenient: Vote = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(lenient, vector_vote(&vector_hash()));
                open_v(&env, &vector_hash()).map(|_| ())
            };
            malformed(refused, mentions);
        }
        for (wire, committed) in [
            (
                vector!("refused/request-envelope-array.envelope.json"),
                vector!("request.envelope.json"),
            ),
            (
                vector!("refused/vote-envelope-array.envelope.json"),
                vector!("vote.envelope.json"),
            ),
        ] {
            let committed = Envelope::from_json(committed.as_bytes()).unwrap();
            assert_eq!(
                wire,
                format!(
                    "[{},{}]",
                    serde_json::to_string(&committed.payload).unwrap(),
                    serde_json::to_string(&committed.signature).unwrap()
                )
            );
            let lenient: Envelope = serde_json::from_str(wire).unwrap();
            assert_eq!(lenient, committed);
            malformed(
                Envelope::from_json(wire.as_bytes()),
                "envelope: the message must be a JSON object, got an array",
            );
        }
    }

    #[test]
    fn from_json_object_keeps_serde_errors_and_names_the_other_kinds() {
        // serde's own refusals are unchanged (the typed read comes first).
        let dup = br#"{"payload":"","payload":"","signature":""}"#;
        malformed(Envelope::from_json(dup), "duplicate field `payload`");
        // Not only arrays: any non-object where an object belongs.
        for (sent, kind) in [
            (&b"\"text\""[..], "a string"),
            (b"7", "a number"),
            (b"null", "null"),
        ] {
            let e = from_json_object::<HashMap<String, u8>>(sent).unwrap_err();
            assert!(e.to_string().contains("invalid type"), "{e}");
            let e = objects_where_objects(
                &serde_json::from_slice(sent).unwrap(),
                &serde_json::json!({}),
                "x",
            )
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "`x` must be a JSON object, got {kind}; send the fields by name: {{\"name\": value, ..}}"
                )
            );
        }
        // Arrays where the type has a list are fine, and objects inside them are checked.
        let ok: Vec<Envelope> = from_json_object(br#"[{"payload":"","signature":""}]"#).unwrap();
        assert_eq!(ok.len(), 1);
        let e = from_json_object::<Vec<Envelope>>(br#"[["",""]]"#).unwrap_err();
        assert!(e.to_string().contains("`[0]` must be a JSON object"), "{e}");
    }

    /// Keeps the rule true for new code: outside the tests, this file reads JSON only inside
    /// `from_json_object` (its two reads), so no message type can skip the object check.
    #[test]
    fn protocol_json_is_read_only_through_from_json_object() {
        let source = include_str!("protocol.rs");
        let production = &source[..source.find("#[cfg(test)]").unwrap()];
        let reads: Vec<_> = production
            .lines()
            .filter(|l| l.contains("serde_json::from_") || l.contains("Deserialize::deserialize"))
            .collect();
        assert_eq!(reads.len(), 2, "{reads:#?}");
        assert!(
            reads.iter().all(|l| l.contains("JsonInputError")),
            "{reads:#?}"
        );
    }
}
