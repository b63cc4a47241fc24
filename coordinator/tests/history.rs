//! The auditable history on real SQLite files: a history is written through the store as the
//! daemon writes it (real signed requests and votes, a failover with its DNS change, events,
//! checkpoints), copied, tampered with by SQL on the copy, and verified with the public keys
//! alone. Each kind of tampering must be detected and located; a clean copy passes; the real
//! binary's `verify-history --db --keys` agrees.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coordinator::audit::{Report, audit_all};
use coordinator::dns::Change;
use coordinator::failover::{FailbackMode, Outcome, Policy, Side, Trigger, VetoRule};
use coordinator::ledger::chain::ChainReport;
use coordinator::ledger::{KeySet, PublicKey};
use coordinator::store::{
    ChangeStatus, Decision, EventKind, HistoryWrite, NewEvent, NewRound, PendingChange, Store,
    VoteRecord,
};
use ed25519_dalek::SigningKey;
use shared::probe::{Evidence, ProbeSpec, TcpProbe};
use shared::protocol::{KeyId, PROTOCOL_VERSION, Verdict, Vote, VoteRequest};

const T: u64 = 1_795_552_697_114;

struct Keys {
    coordinator: SigningKey,
    witnesses: Vec<SigningKey>,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            coordinator: SigningKey::from_bytes(&[1; 32]),
            witnesses: (0..3u8)
                .map(|i| SigningKey::from_bytes(&[10 + i; 32]))
                .collect(),
        }
    }

    fn public(&self) -> KeySet {
        let pk = |name: &str, k: &SigningKey| PublicKey {
            name: name.into(),
            key: k.verifying_key(),
            key_id: KeyId::of(&k.verifying_key()),
            retired_at_ms: None,
        };
        KeySet {
            coordinators: vec![pk("coordinator", &self.coordinator)],
            witnesses: self
                .witnesses
                .iter()
                .enumerate()
                .map(|(i, k)| pk(&format!("w{}", i + 1), k))
                .collect(),
        }
    }

    fn votes(&self, at_ms: u64, verdicts: &[Option<Verdict>]) -> Vec<VoteRecord> {
        let req = VoteRequest {
            version: PROTOCOL_VERSION,
            coordinator: KeyId::of(&self.coordinator.verifying_key()),
            service: "www".into(),
            round: at_ms,
            nonce: format!("{at_ms:032x}"),
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
                let w = &self.witnesses[i];
                let envelope = verdict.map(|verdict| {
                    Vote {
                        version: PROTOCOL_VERSION,
                        witness: KeyId::of(&w.verifying_key()),
                        service: "www".into(),
                        round: at_ms,
                        request_hash: hash.hex(),
                        verdict,
                        evidence: Evidence {
                            probe: "tcp".into(),
                            latency_us: 900,
                            status: None,
                            error: (verdict == Verdict::Down)
                                .then_some(shared::probe::ProbeError::Timeout),
                            detail: None,
                        },
                        probed_at_ms: at_ms + 3,
                    }
                    .sign(w)
                    .to_json()
                });
                VoteRecord {
                    witness: format!("w{}", i + 1),
                    witness_key_id: KeyId::of(&w.verifying_key()).0,
                    request_envelope: request_envelope.clone(),
                    valid: envelope.is_some(),
                    verdict: verdict.map(|v| v.to_string()),
                    error: envelope.is_none().then(|| "no answer: timeout".into()),
                    vote_envelope: envelope,
                    latency_ms: Some(2.25),
                }
            })
            .collect()
    }
}

fn policy() -> Policy {
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

fn decision(k: &Keys, at_ms: u64, outcome: Outcome, verdicts: &[Option<Verdict>]) -> Decision {
    let votes = k.votes(at_ms, verdicts);
    let count = |v: &str| {
        votes
            .iter()
            .filter(|r| r.verdict.as_deref() == Some(v))
            .count() as u32
    };
    let failover = outcome == Outcome::Failover;
    Decision {
        service: "www".into(),
        at_ms,
        state: None,
        round: Some(NewRound {
            service: "www".into(),
            at_ms,
            trigger: Trigger::PrimaryDown,
            outcome,
            reason: format!("test {outcome}"),
            primary_up: false,
            backup_up: true,
            votes_up: count("up"),
            votes_down: count("down"),
            votes_invalid: 0,
            votes_missing: votes.iter().filter(|v| v.vote_envelope.is_none()).count() as u32,
            changed_dns: failover,
            policy: Some(policy()),
            spell: None,
        }),
        votes,
        events: if failover {
            vec![(
                EventKind::Transition,
                "primary-active -> backup-active".into(),
            )]
        } else {
            vec![(EventKind::Alert, format!("{outcome}"))]
        },
        dns_change: failover.then(|| PendingChange {
            to_side: Side::Backup,
            backend: "dryrun".into(),
            change: Change {
                zone: "example.test.".into(),
                from: vec![],
                to: vec![],
            },
        }),
    }
}

use Verdict::{Down, Up};

/// The history every test copies: rounds 1–2 no-ops, round 3 a failover with DNS change 1
/// (applied, verified), a checkpoint, rounds 4–5, a second checkpoint, round 6 after it.
/// Returns the folder and the file.
async fn written_history() -> (tempfile::TempDir, PathBuf, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.sqlite");
    let k = Keys::new();
    let store = Store::open(&path).unwrap();
    let key = Arc::new(k.coordinator.clone());
    store
        .record_decision(decision(
            &k,
            T + 1000,
            Outcome::Disputed,
            &[Some(Down), Some(Down), Some(Up)],
        ))
        .await
        .unwrap();
    store
        .record_decision(decision(
            &k,
            T + 2000,
            Outcome::InsufficientVotes,
            &[Some(Down), None, None],
        ))
        .await
        .unwrap();
    let (_, change) = store
        .record_decision(decision(
            &k,
            T + 3000,
            Outcome::Failover,
            &[Some(Down), Some(Down), None],
        ))
        .await
        .unwrap();
    let change = change.unwrap();
    store
        .write(HistoryWrite::DnsFinish {
            id: change,
            at_ms: T + 3100,
            status: ChangeStatus::Applied,
            error: None,
            event: Some(NewEvent {
                service: "www".into(),
                at_ms: T + 3100,
                kind: EventKind::DnsApplied,
                message: format!("change {change} applied"),
            }),
        })
        .await
        .unwrap();
    store
        .write(HistoryWrite::DnsVerified {
            id: change,
            verification: serde_json::json!({"servers": [{"server": "192.0.2.53:53", "serves": true}]}),
            alert: None,
        })
        .await
        .unwrap();
    store
        .checkpoint(key.clone(), T + 3200, "dns-change")
        .await
        .unwrap()
        .unwrap();
    store
        .record_decision(decision(
            &k,
            T + 4000,
            Outcome::Disputed,
            &[Some(Up), Some(Down), None],
        ))
        .await
        .unwrap();
    store
        .record_decision(decision(
            &k,
            T + 5000,
            Outcome::Disputed,
            &[Some(Down), Some(Up), None],
        ))
        .await
        .unwrap();
    store
        .checkpoint(key.clone(), T + 5100, "periodic")
        .await
        .unwrap()
        .unwrap();
    store
        .record_decision(decision(
            &k,
            T + 6000,
            Outcome::CoordinatorIsolated,
            &[None, None, None],
        ))
        .await
        .unwrap();
    // Closing the last connection folds the WAL into the file: one file to copy.
    drop(store);
    (dir, path, k)
}

/// A copy of `path` in a fresh folder, edited by `sql` (run on a plain connection).
fn tampered(path: &Path, sql: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.sqlite");
    std::fs::copy(path, &copy).unwrap();
    if !sql.is_empty() {
        let conn = rusqlite::Connection::open(&copy).unwrap();
        conn.execute_batch(sql).unwrap();
    }
    (dir, copy)
}

fn verify(path: &Path, keys: &KeySet) -> (Report, ChainReport) {
    let store = Store::open_read_only(path).unwrap();
    audit_all(&store, None, keys).unwrap()
}

fn problems(r: &(Report, ChainReport)) -> String {
    let mut all = r.0.problems.clone();
    all.extend(r.1.problems.clone());
    all.join("\n")
}

fn assert_names(r: &(Report, ChainReport), fragments: &[&str]) {
    let all = problems(r);
    for f in fragments {
        assert!(all.contains(f), "expected {f:?} among the problems:\n{all}");
    }
}

#[tokio::test]
async fn a_clean_history_passes_with_public_keys_only() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(&path, "");
    let r = verify(&copy, &k.public());
    assert!(problems(&r).is_empty(), "{}", problems(&r));
    assert_eq!(
        (r.0.rounds, r.0.outcomes_checked, r.0.requests_ok),
        (6, 6, 6)
    );
    assert_eq!(r.1.checkpoints_ok, 2);
    // Genesis, 6 rounds, 6 events (one per round) + dns-applied, 1 change, its status and
    // its verification.
    assert_eq!(r.1.links, 1 + 6 + 7 + 3);
    // The second checkpoint came before round 6 and its event.
    assert_eq!(r.1.unproven_links, 2);
}

#[tokio::test]
async fn an_edited_outcome_is_located() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(
        &path,
        "UPDATE rounds SET outcome = 'failover' WHERE id = 2;",
    );
    let r = verify(&copy, &k.public());
    assert_names(
        &r,
        &[
            "(round 2): rounds row 2 was changed after it was written",
            "round 2 (www): failover backed by too few valid votes: 1 valid down",
        ],
    );
}

#[tokio::test]
async fn a_deleted_round_is_located_with_or_without_its_link() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(
        &path,
        "DELETE FROM votes WHERE round_id = 4; DELETE FROM rounds WHERE id = 4;",
    );
    assert_names(
        &verify(&copy, &k.public()),
        &["(round 4): rounds row 4 is missing: deleted"],
    );

    let (_c, copy) = tampered(
        &path,
        "DELETE FROM votes WHERE round_id = 4; DELETE FROM rounds WHERE id = 4;
         DELETE FROM chain WHERE kind = 'round' AND ref_id = 4;",
    );
    let r = verify(&copy, &k.public());
    let seq: i64 = {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row(
            "SELECT seq FROM chain WHERE kind = 'round' AND ref_id = 4",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_names(
        &r,
        &[&format!("chain links {seq}..{seq} are missing: deleted")],
    );
}

#[tokio::test]
async fn a_changed_vote_byte_is_located() {
    let (_d, path, k) = written_history().await;
    // One byte inside the base64 payload of witness w2's vote in round 1.
    let (_c, copy) = tampered(
        &path,
        "UPDATE votes SET vote_envelope = CAST(substr(CAST(vote_envelope AS TEXT), 1, 40) || \
             CASE substr(CAST(vote_envelope AS TEXT), 41, 1) WHEN 'A' THEN 'B' ELSE 'A' END || \
             substr(CAST(vote_envelope AS TEXT), 42) AS BLOB) \
         WHERE round_id = 1 AND witness = 'w2';",
    );
    assert_names(
        &verify(&copy, &k.public()),
        &[
            "(round 1): rounds row 1 was changed after it was written",
            "round 1 (www), witness w2: stored as valid but now fails",
        ],
    );
}

#[tokio::test]
async fn two_reordered_rounds_are_located() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(
        &path,
        "PRAGMA foreign_keys = OFF;
         UPDATE votes SET round_id = -4 WHERE round_id = 4;
         UPDATE rounds SET id = -4 WHERE id = 4;
         UPDATE votes SET round_id = 4 WHERE round_id = 5;
         UPDATE rounds SET id = 4 WHERE id = 5;
         UPDATE votes SET round_id = 5 WHERE round_id = -4;
         UPDATE rounds SET id = 5 WHERE id = -4;",
    );
    assert_names(
        &verify(&copy, &k.public()),
        &[
            "(round 4): rounds row 4 was changed after it was written",
            "(round 5): rounds row 5 was changed after it was written",
        ],
    );
}

#[tokio::test]
async fn a_truncated_tail_is_located_up_to_the_last_checkpoint() {
    let (_d, path, k) = written_history().await;
    // Rounds 4–6 and everything chained after round 3's DNS change removed, links too.
    let (_c, copy) = tampered(
        &path,
        "DELETE FROM votes WHERE round_id >= 4; DELETE FROM rounds WHERE id >= 4;
         DELETE FROM events WHERE at_ms >= 1795552701114;
         DELETE FROM chain WHERE seq > (SELECT seq FROM checkpoints WHERE id = 1);",
    );
    let r = verify(&copy, &k.public());
    assert_names(
        &r,
        &["checkpoint 2 (signed at", "the tail was truncated (links"],
    );

    // The checkpoints deleted as well: nothing signed is left to contradict the tail, and
    // the report says so instead of passing it as proven.
    let (_c, copy) = tampered(
        &path,
        "DELETE FROM votes WHERE round_id >= 4; DELETE FROM rounds WHERE id >= 4;
         DELETE FROM events WHERE at_ms >= 1795552701114;
         DELETE FROM chain WHERE seq > (SELECT seq FROM checkpoints WHERE id = 1);
         DELETE FROM checkpoints WHERE id = 2;",
    );
    let r = verify(&copy, &k.public());
    assert!(problems(&r).is_empty(), "{}", problems(&r));
    assert_eq!(r.1.checkpoints_ok, 1);
    assert_eq!(r.1.unproven_links, 0);
    let proven = r.1.proven_through.unwrap();
    assert_eq!(
        proven.1,
        T + 3200,
        "proves the history as of the first checkpoint only"
    );
}

#[tokio::test]
async fn truncation_after_the_last_checkpoint_is_not_detectable_and_the_report_says_so() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(
        &path,
        "DELETE FROM votes WHERE round_id = 6; DELETE FROM rounds WHERE id = 6;
         DELETE FROM events WHERE at_ms = 1795552703114;
         DELETE FROM chain WHERE seq > (SELECT seq FROM checkpoints WHERE id = 2);",
    );
    let r = verify(&copy, &k.public());
    assert!(problems(&r).is_empty(), "{}", problems(&r));
    let text = coordinator::cli::render_chain(&r.1).text;
    assert!(
        text.contains("proves links 1..") && text.contains("0 later link(s) are not covered yet"),
        "{text}"
    );
    // The untouched history has two links the newest checkpoint does not cover.
    let (_c, clean) = tampered(&path, "");
    let text = coordinator::cli::render_chain(&verify(&clean, &k.public()).1).text;
    assert!(
        text.contains(
            "2 later link(s) are not covered yet: a truncation among them cannot be detected"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn retention_keeps_the_chain_verifiable_and_deleting_a_kept_row_is_not_retention() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(&path, "");
    {
        let store = Store::open(&copy).unwrap();
        // Everything before round 3's time goes: rounds 1–2 and their alert events.
        let deleted = store
            .retain(T + 2500, 0, Arc::new(k.coordinator.clone()))
            .await
            .unwrap();
        assert_eq!(deleted, 2);
    }
    let r = verify(&copy, &k.public());
    assert!(problems(&r).is_empty(), "{}", problems(&r));
    assert_eq!(r.1.pruned, 4, "two rounds and their two events");
    assert_eq!(r.0.rounds, 4);

    // A row retention keeps (round 3 changed DNS) deleted by hand is not a pruning.
    let conn = rusqlite::Connection::open(&copy).unwrap();
    conn.execute_batch(
        "DELETE FROM votes WHERE round_id = 3; UPDATE dns_changes SET round_id = NULL; DELETE FROM rounds WHERE id = 3;",
    )
    .unwrap();
    drop(conn);
    assert_names(
        &verify(&copy, &k.public()),
        &["(round 3): rounds row 3 is missing: deleted"],
    );
}

#[tokio::test]
async fn an_edited_dns_change_status_is_located() {
    let (_d, path, k) = written_history().await;
    let (_c, copy) = tampered(
        &path,
        "UPDATE dns_changes SET status = 'failed' WHERE id = 1;",
    );
    assert_names(
        &verify(&copy, &k.public()),
        &["dns_changes row 1: status \"failed\", but its last chained status is \"applied\""],
    );
}

#[tokio::test]
async fn the_binary_verifies_with_a_keys_file_and_nothing_else() {
    let (_d, path, k) = written_history().await;
    let (dir, copy) = tampered(&path, "");
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, k.public().to_toml()).unwrap();
    let run = |db: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
            .args(["verify-history", "--db"])
            .arg(db)
            .arg("--keys")
            .arg(&keys)
            .env("QUORATE_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run(&copy);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("rounds 6") && text.contains("checkpoints verified 2"),
        "{text}"
    );

    let (_c, bad) = tampered(
        &path,
        "UPDATE rounds SET outcome = 'failover' WHERE id = 2;",
    );
    let out = run(&bad);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("PROBLEM round 2 (www): failover backed by too few valid votes"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// incident proofs

fn binary(args: &[&std::ffi::OsStr], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(args)
        .current_dir(dir)
        .env("QUORATE_LOG", "warn")
        .output()
        .unwrap()
}

/// Exports round `round` of `db` with the binary (the bundle on stdout).
fn export(db: &Path, k: &Keys, round: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, k.public().to_toml()).unwrap();
    binary(
        &[
            "export-incident".as_ref(),
            "--db".as_ref(),
            db.as_os_str(),
            "--round".as_ref(),
            round.as_ref(),
            "--keys".as_ref(),
            keys.as_os_str(),
        ],
        dir.path(),
    )
}

/// Writes `bundle` alone into a fresh folder and verifies it from there with the binary
/// (plus `extra` arguments); returns (exit code, stdout).
fn verify_bundle(bundle: &str, extra: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("incident.json"), bundle).unwrap();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "verify-history".as_ref(),
        "--incident".as_ref(),
        "incident.json".as_ref(),
    ];
    args.extend_from_slice(extra);
    let out = binary(&args, dir.path());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

async fn exported_failover() -> (tempfile::TempDir, Keys, String) {
    let (d, path, k) = written_history().await;
    let out = export(&path, &k, "3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (d, k, String::from_utf8(out.stdout).unwrap())
}

#[tokio::test]
async fn an_exported_failover_verifies_alone_in_an_empty_folder() {
    let (_d, k, bundle) = exported_failover().await;
    let json: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(json["format"], "quorate-incident");
    assert_eq!(json["round"]["outcome"], "failover");
    assert_eq!(json["votes"].as_array().unwrap().len(), 3);
    assert_eq!(json["dns_change"]["status"], "applied");
    assert!(
        json["dns_change"]["verification_json"]
            .as_str()
            .unwrap()
            .contains("192.0.2.53:53")
    );
    // From the round's link to the dns-change checkpoint, which covers the change's updates.
    let chain = json["chain"].as_array().unwrap();
    assert_eq!(chain[0]["kind"], "round");
    assert!(
        chain.iter().any(|l| l["kind"] == "dns-verified"),
        "{bundle}"
    );

    let (code, text) = verify_bundle(&bundle, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("round 3 (www)")
            && text.contains("valid and verified 2")
            && text.contains("outcome re-derived yes")
            && text.contains("dns change 1 to backup via dryrun: applied")
            && text.contains("signed")
            && text.contains(": verified")
            && text.contains("compare them with keys you got out of band")
            && !text.contains("PROBLEM"),
        "{text}"
    );

    // Pinned keys: the same keys pass; other keys fail on every signature.
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.toml");
    std::fs::write(&same, k.public().to_toml()).unwrap();
    let (code, text) = verify_bundle(&bundle, &["--keys".as_ref(), same.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    let mut other = Keys::new();
    other.coordinator = SigningKey::from_bytes(&[2; 32]);
    let forged = dir.path().join("other.toml");
    std::fs::write(&forged, other.public().to_toml()).unwrap();
    let (code, text) = verify_bundle(&bundle, &["--keys".as_ref(), forged.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("PROBLEM checkpoint") && text.contains("not in the keys"),
        "{text}"
    );
}

#[tokio::test]
async fn a_flipped_vote_byte_in_a_bundle_is_named() {
    let (_d, _k, bundle) = exported_failover().await;
    let mut json: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64
        .decode(json["votes"][1]["vote_envelope_base64"].as_str().unwrap())
        .unwrap();
    // One byte of the vote's base64 payload: its signature no longer matches.
    let at = raw.iter().position(|&b| b == b'"').unwrap() + 15;
    raw[at] = if raw[at] == b'A' { b'B' } else { b'A' };
    json["votes"][1]["vote_envelope_base64"] = b64.encode(&raw).into();
    let (code, text) = verify_bundle(&json.to_string(), &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("PROBLEM round 3 (www), witness w2: stored as valid but now fails")
            && text.contains("failover backed by too few valid votes: 1 valid down")
            && text.contains("PROBLEM round 3 (or one of its votes) does not match its chain link"),
        "{text}"
    );
}

#[tokio::test]
async fn a_changed_outcome_or_link_in_a_bundle_is_named() {
    let (_d, _k, bundle) = exported_failover().await;
    let mut json: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    json["round"]["outcome"] = "insufficient-votes".into();
    let (code, text) = verify_bundle(&json.to_string(), &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("recorded outcome insufficient-votes does not follow from its votes")
            && text.contains("PROBLEM round 3 (or one of its votes) does not match its chain link"),
        "{text}"
    );

    // A link's digest edited (as if the DNS change had been swapped): its hash no longer
    // matches, and the checkpoint still names the original head.
    let mut json: serde_json::Value = serde_json::from_str(&bundle).unwrap();
    let chain = json["chain"].as_array_mut().unwrap();
    let i = chain
        .iter()
        .position(|l| l["kind"] == "dns-change")
        .unwrap();
    let seq = chain[i]["seq"].as_i64().unwrap();
    chain[i]["digest"] = "00".repeat(32).into();
    let (code, text) = verify_bundle(&json.to_string(), &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "PROBLEM chain link {seq} (dns-change 1): its hash does not match its fields"
        )) && text.contains("dns change 1 does not match its chain link"),
        "{text}"
    );
}

#[tokio::test]
async fn exporting_an_unknown_round_names_the_round_and_the_file() {
    let (_d, path, k) = written_history().await;
    let out = export(&path, &k, "99");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "no bundle is written");
    assert!(
        err.contains("round 99 is not in the history") && err.contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn export_incident_out_writes_the_same_bundle_as_stdout_and_leaves_the_file_alone() {
    let (_d, path, k) = written_history().await;
    let before = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, k.public().to_toml()).unwrap();
    let file = dir.path().join("round-3.json");
    let out = binary(
        &[
            "export-incident".as_ref(),
            "--db".as_ref(),
            path.as_os_str(),
            "--round".as_ref(),
            "3".as_ref(),
            "--keys".as_ref(),
            keys.as_os_str(),
            "--out".as_ref(),
            file.as_os_str(),
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let stdout = export(&path, &k, "3").stdout;
    assert_eq!(std::fs::read(&file).unwrap(), stdout);
    // Read-only: the history file is byte for byte what it was.
    assert!(
        std::fs::read(&path).unwrap() == before,
        "export changed the history file"
    );
}

#[tokio::test]
async fn a_round_with_no_checkpoint_after_it_cannot_be_exported() {
    // Round 6 was written after the last checkpoint: nothing signed covers it yet.
    let (_d, path, k) = written_history().await;
    let out = export(&path, &k, "6");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "no bundle is written");
    assert!(
        err.contains("no checkpoint signed by a listed coordinator key covers round 6")
            && err.contains(&path.display().to_string()),
        "{err}"
    );
}
