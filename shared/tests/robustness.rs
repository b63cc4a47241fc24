//! Parser robustness: random bytes, random mutations of the committed protocol-v1 envelopes,
//! and random JSON edits of their payloads re-signed with the trusted keys (so they get past
//! the signature and reach field validation) go through `Envelope::from_json`,
//! `open_request` and `open_vote`. Nothing may panic, and whatever is accepted must be the
//! committed message itself or a request/vote that passes every check on its own.
//!
//! Uses only the public API, the way a third-party client would.

#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;
use shared::protocol::{
    Envelope, Expected, KeyId, OpenedRequest, ProtocolError, REQUEST_DOMAIN, RequestHash,
    VOTE_DOMAIN, Verdict, Vote, open_request, open_vote,
};

const REQUEST_ENVELOPE: &[u8] =
    include_bytes!("../../tests/data/protocol-v1/request.envelope.json");
const VOTE_ENVELOPE: &[u8] = include_bytes!("../../tests/data/protocol-v1/vote.envelope.json");
const COORDINATOR_SEED: &str = include_str!("../../tests/data/protocol-v1/coordinator.seed.hex");
const WITNESS_SEED: &str = include_str!("../../tests/data/protocol-v1/witness.seed.hex");
const REQUEST_HASH: &str = include_str!("../../tests/data/protocol-v1/request.hash.hex");
/// `issued_at_ms` of the committed request: the clock every check here runs at.
const NOW_MS: u64 = 1_700_000_000_000;
const SKEW_MS: u64 = 30_000;
/// Cases per property; the re-signed JSON properties sign and verify every case, which is slow
/// in a debug build, so they run fewer.
const CASES: u32 = 2000;
const SIGNED_CASES: u32 = 1000;

fn key_from(seed_hex: &str) -> SigningKey {
    SigningKey::from_bytes(&hex::decode(seed_hex.trim()).unwrap().try_into().unwrap())
}

// Deriving a key is a scalar multiplication, slow in a debug build: do it once per key.
static COORDINATOR: LazyLock<SigningKey> = LazyLock::new(|| key_from(COORDINATOR_SEED));
static WITNESS: LazyLock<SigningKey> = LazyLock::new(|| key_from(WITNESS_SEED));

fn request_hash() -> RequestHash {
    RequestHash(
        hex::decode(REQUEST_HASH.trim())
            .unwrap()
            .try_into()
            .unwrap(),
    )
}

fn open_req(envelope: &Envelope) -> Result<OpenedRequest, ProtocolError> {
    let trusted: VerifyingKey = COORDINATOR.verifying_key();
    let trusted_id = KeyId::of(&trusted);
    open_request(
        envelope,
        |k| (*k == trusted_id).then_some(trusted),
        NOW_MS,
        SKEW_MS,
    )
}

fn open_v(envelope: &Envelope) -> Result<Vote, ProtocolError> {
    let pinned = WITNESS.verifying_key();
    open_vote(
        envelope,
        &Expected {
            witness_key: &pinned,
            request_hash: &request_hash(),
            service: "www",
            round: 7,
        },
    )
}

/// Signs arbitrary payload bytes the way the protocol does: over `domain || payload`.
fn seal(domain: &[u8], key: &SigningKey, payload: &[u8]) -> Envelope {
    let mut signed = domain.to_vec();
    signed.extend_from_slice(payload);
    Envelope {
        payload: B64.encode(payload),
        signature: B64.encode(key.sign(&signed).to_bytes()),
    }
}

fn payload_of(envelope_json: &[u8]) -> Vec<u8> {
    B64.decode(Envelope::from_json(envelope_json).unwrap().payload)
        .unwrap()
}

/// Runs wire bytes through everything a witness or coordinator would do with them.
fn check_wire_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(envelope) = Envelope::from_json(bytes) else {
        return Ok(());
    };
    let _ = envelope.request_hash();
    if open_req(&envelope).is_ok() {
        let committed = Envelope::from_json(REQUEST_ENVELOPE).unwrap();
        prop_assert_eq!(
            &envelope,
            &committed,
            "accepted a request that is not the committed one"
        );
    }
    if open_v(&envelope).is_ok() {
        let committed = Envelope::from_json(VOTE_ENVELOPE).unwrap();
        prop_assert_eq!(
            &envelope,
            &committed,
            "accepted a vote that is not the committed one"
        );
    }
    Ok(())
}

// ---- byte-level mutations ----

#[derive(Clone, Debug)]
enum ByteEdit {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize, usize),
    Duplicate(usize, usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        select(b"{}[]\":,\\ 0123456789-+.eEtrufalsn=/+AZaz\x00\x7f\xff".to_vec()),
    ]
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, m)| ByteEdit::Flip(i, m)),
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| ByteEdit::Remove(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| ByteEdit::Duplicate(i, n)),
    ]
}

fn apply_byte_edit(bytes: &mut Vec<u8>, edit: &ByteEdit) {
    let len = bytes.len();
    if len == 0 {
        if let ByteEdit::Insert(_, b) = edit {
            bytes.push(*b);
        }
        return;
    }
    match *edit {
        ByteEdit::Flip(i, m) => bytes[i % len] ^= m,
        ByteEdit::Set(i, b) => bytes[i % len] = b,
        ByteEdit::Truncate(i) => bytes.truncate(i % len),
        ByteEdit::Insert(i, b) => bytes.insert(i % (len + 1), b),
        ByteEdit::Remove(i, n) => {
            let start = i % len;
            bytes.drain(start..(start + n).min(len));
        }
        ByteEdit::Duplicate(i, n) => {
            let start = i % len;
            let piece = bytes[start..(start + n).min(len)].to_vec();
            bytes.splice(start..start, piece);
        }
    }
}

// ---- JSON-level mutations ----

const FIELD_NAMES: &[&str] = &[
    "version",
    "coordinator",
    "service",
    "round",
    "nonce",
    "issued_at_ms",
    "target",
    "kind",
    "address",
    "server",
    "name",
    "rtype",
    "tls",
    "host",
    "path",
    "method",
    "expect_status",
    "body_contains",
    "tls_verify",
    "timeout_ms",
    "witness",
    "request_hash",
    "verdict",
    "evidence",
    "probe",
    "latency_us",
    "status",
    "error",
    "detail",
    "probed_at_ms",
];

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![select(FIELD_NAMES).prop_map(String::from), "[a-z_]{0,12}"]
}

fn leaf_value() -> impl Strategy<Value = Value> {
    let edge_numbers: Vec<u64> = vec![
        0,
        1,
        2,
        6,
        7,
        8,
        200,
        599,
        600,
        2000,
        30_000,
        30_001,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        i64::MAX as u64,
        1 << 63,
        u64::MAX,
        NOW_MS - SKEW_MS - 1,
        NOW_MS - SKEW_MS,
        NOW_MS + SKEW_MS,
        NOW_MS + SKEW_MS + 1,
    ];
    let strings: Vec<&str> = vec![
        "",
        "up",
        "down",
        "GET",
        "HEAD",
        "POST",
        "http",
        "https",
        "tcp",
        "dns",
        "192.0.2.10:80",
        "[2001:db8::1]:443",
        "127.0.0.1:0",
        "999.1.1.1:80",
        "timeout",
        "refused",
        "dns_rcode",
        "www",
        "www.example.test",
        "www.example.test.",
        "/",
        "/health?x=1",
        "A",
        "AAAA",
        "MX",
        "00112233445566778899aabbccddeeff",
        "34750f98bd59fcfc",
        "6a3803d5f059902a",
        "10e391f9a71d2d3fdb5ab6eaaaa0503469ab65e72c535ae4996b8ef6976429cb",
    ];
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        2 => select(edge_numbers).prop_map(Value::from),
        // Around the present, and where `u64 as i64` arithmetic on a timestamp would overflow.
        1 => (NOW_MS - 2 * SKEW_MS..NOW_MS + 2 * SKEW_MS).prop_map(Value::from),
        1 => ((1u64 << 63)..(1u64 << 63) + NOW_MS).prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        2 => select(strings).prop_map(Value::from),
        1 => "\\PC{0,40}".prop_map(Value::from),
        1 => (0usize..300).prop_map(|n| Value::from("x".repeat(n))),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf_value().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

#[derive(Clone, Debug)]
enum JsonOp {
    /// Replaces the n-th leaf (scalar or empty container) of the whole document, wherever it is.
    SetLeaf(usize, Value),
    /// Replaces the node the path leads to.
    Replace(Value),
    RemoveChild(usize),
    AddField(String, Value),
    Rename(usize, String),
}

#[derive(Clone, Debug)]
struct JsonEdit {
    /// Which child to step into at each level (modulo the number of children).
    path: Vec<usize>,
    op: JsonOp,
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let op = prop_oneof![
        4 => (any::<usize>(), leaf_value()).prop_map(|(i, v)| JsonOp::SetLeaf(i, v)),
        2 => leaf_value().prop_map(JsonOp::Replace),
        1 => json_value().prop_map(JsonOp::Replace),
        1 => any::<usize>().prop_map(JsonOp::RemoveChild),
        1 => (field_name(), json_value()).prop_map(|(k, v)| JsonOp::AddField(k, v)),
        1 => (any::<usize>(), field_name()).prop_map(|(i, k)| JsonOp::Rename(i, k)),
    ];
    (prop::collection::vec(any::<usize>(), 0..4), op).prop_map(|(path, op)| JsonEdit { path, op })
}

fn node_at<'a>(v: &'a mut Value, path: &[usize]) -> &'a mut Value {
    let Some((step, rest)) = path.split_first() else {
        return v;
    };
    let n = match v {
        Value::Object(m) => m.len(),
        Value::Array(a) => a.len(),
        _ => 0,
    };
    if n == 0 {
        return v;
    }
    match v {
        Value::Object(m) => {
            let child = m.values_mut().nth(step % n).unwrap();
            node_at(child, rest)
        }
        Value::Array(a) => node_at(&mut a[step % n], rest),
        _ => unreachable!("only containers have children"),
    }
}

fn leaves_mut<'a>(v: &'a mut Value, out: &mut Vec<&'a mut Value>) {
    let is_leaf = match &*v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    };
    if is_leaf {
        out.push(v);
        return;
    }
    match v {
        Value::Object(m) => m.values_mut().for_each(|c| leaves_mut(c, out)),
        Value::Array(a) => a.iter_mut().for_each(|c| leaves_mut(c, out)),
        _ => {}
    }
}

fn apply_json_edit(root: &mut Value, edit: &JsonEdit) {
    if let JsonOp::SetLeaf(i, v) = &edit.op {
        let mut leaves = Vec::new();
        leaves_mut(root, &mut leaves);
        let n = leaves.len();
        *leaves.swap_remove(i % n) = v.clone();
        return;
    }
    let node = node_at(root, &edit.path);
    match (&edit.op, node) {
        (JsonOp::Replace(v), node) => *node = v.clone(),
        (JsonOp::RemoveChild(i), Value::Object(m)) if !m.is_empty() => {
            let k = m.keys().nth(i % m.len()).unwrap().clone();
            m.remove(&k);
        }
        (JsonOp::RemoveChild(i), Value::Array(a)) if !a.is_empty() => {
            let len = a.len();
            a.remove(i % len);
        }
        (JsonOp::AddField(k, v), Value::Object(m)) => {
            m.insert(k.clone(), v.clone());
        }
        (JsonOp::AddField(_, v), Value::Array(a)) => a.push(v.clone()),
        (JsonOp::Rename(i, k), Value::Object(m)) if !m.is_empty() => {
            let old = m.keys().nth(i % m.len()).unwrap().clone();
            let v = m.remove(&old).unwrap();
            m.insert(k.clone(), v);
        }
        _ => {}
    }
}

/// A request that got past every check must be one the protocol would accept on its own.
fn check_accepted_request(
    opened: &OpenedRequest,
    envelope: &Envelope,
) -> Result<(), TestCaseError> {
    prop_assert!(opened.request.validate().is_ok());
    prop_assert!(opened.request.issued_at_ms.abs_diff(NOW_MS) <= SKEW_MS);
    prop_assert_eq!(opened.hash, envelope.request_hash().unwrap());
    prop_assert_eq!(
        &opened.request.coordinator,
        &KeyId::of(&COORDINATOR.verifying_key())
    );
    Ok(())
}

/// A vote that got past every check must answer this request, from this witness, consistently.
fn check_accepted_vote(vote: &Vote) -> Result<(), TestCaseError> {
    prop_assert_eq!(&vote.witness, &KeyId::of(&WITNESS.verifying_key()));
    prop_assert_eq!(&vote.request_hash, REQUEST_HASH.trim());
    prop_assert_eq!(vote.service.as_str(), "www");
    prop_assert_eq!(vote.round, 7);
    prop_assert_eq!(vote.verdict == Verdict::Up, vote.evidence.is_up());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_wire_bytes(&bytes)?;
    }

    #[test]
    fn random_envelopes_are_refused(
        payload in prop::collection::vec(any::<u8>(), 0..512),
        signature in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let envelope = Envelope { payload: B64.encode(&payload), signature: B64.encode(&signature) };
        prop_assert!(open_req(&envelope).is_err());
        prop_assert!(open_v(&envelope).is_err());
        check_wire_bytes(&envelope.to_json())?;
    }

    #[test]
    fn mutated_committed_envelopes_never_panic(
        use_vote in any::<bool>(),
        edits in prop::collection::vec(byte_edit(), 1..8),
    ) {
        let mut bytes = if use_vote { VOTE_ENVELOPE } else { REQUEST_ENVELOPE }.to_vec();
        for e in &edits {
            apply_byte_edit(&mut bytes, e);
        }
        check_wire_bytes(&bytes)?;
    }

    #[test]
    fn mutated_request_payload_bytes_resigned_never_panic(
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        let mut payload = payload_of(REQUEST_ENVELOPE);
        for e in &edits {
            apply_byte_edit(&mut payload, e);
        }
        let envelope = seal(REQUEST_DOMAIN, &COORDINATOR, &payload);
        match open_req(&envelope) {
            Ok(opened) => check_accepted_request(&opened, &envelope)?,
            Err(e) => prop_assert!(!matches!(e, ProtocolError::BadSignature(_)), "{e}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(SIGNED_CASES))]

    #[test]
    fn json_edits_of_a_resigned_request_reach_field_validation(
        edits in prop::collection::vec(json_edit(), 1..4),
    ) {
        let mut v: Value = serde_json::from_slice(&payload_of(REQUEST_ENVELOPE)).unwrap();
        for e in &edits {
            apply_json_edit(&mut v, e);
        }
        let envelope = seal(REQUEST_DOMAIN, &COORDINATOR, &serde_json::to_vec(&v).unwrap());
        match open_req(&envelope) {
            Ok(opened) => check_accepted_request(&opened, &envelope)?,
            // Signed by the trusted key over exactly these bytes: any refusal is about content.
            Err(e) => prop_assert!(!matches!(e, ProtocolError::BadSignature(_)), "{e}"),
        }
    }

    #[test]
    fn json_edits_of_a_resigned_vote_reach_field_validation(
        edits in prop::collection::vec(json_edit(), 1..4),
    ) {
        let mut v: Value = serde_json::from_slice(&payload_of(VOTE_ENVELOPE)).unwrap();
        for e in &edits {
            apply_json_edit(&mut v, e);
        }
        let envelope = seal(VOTE_DOMAIN, &WITNESS, &serde_json::to_vec(&v).unwrap());
        match open_v(&envelope) {
            Ok(vote) => check_accepted_vote(&vote)?,
            Err(e) => prop_assert!(!matches!(e, ProtocolError::BadSignature(_)), "{e}"),
        }
    }
}

/// The generators above do reach the interesting outcomes; without this, a mutation strategy
/// that only ever produced unparsable JSON would pass every property vacuously.
#[test]
fn the_json_mutations_reach_every_outcome() {
    use proptest::strategy::ValueTree as _;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = prop::collection::vec(json_edit(), 1..4);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..500 {
        let edits = strategy.new_tree(&mut runner).unwrap().current();
        let mut v: Value = serde_json::from_slice(&payload_of(REQUEST_ENVELOPE)).unwrap();
        for e in &edits {
            apply_json_edit(&mut v, e);
        }
        let envelope = seal(
            REQUEST_DOMAIN,
            &COORDINATOR,
            &serde_json::to_vec(&v).unwrap(),
        );
        seen.insert(match open_req(&envelope) {
            Ok(_) => "accepted",
            Err(e) => e.code(),
        });
    }
    for outcome in [
        "accepted",
        "malformed",
        "unsupported_version",
        "unknown_coordinator",
        "stale",
    ] {
        assert!(
            seen.contains(outcome),
            "no mutation produced {outcome}; saw {seen:?}"
        );
    }
}
