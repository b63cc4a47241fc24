//! Keys that interoperate: a key file written by the real `quorate-witness init` is read by
//! OpenSSL and by Python's `cryptography`, and a vote the witness signed with it verifies with
//! both, by running the "verify it yourself" block of `docs/protocol.md` (§12.1) verbatim.
//! `openssl` and `python3-cryptography` must be installed (`tests/run.sh` installs them): the
//! test fails without them, it never skips.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use shared::probe::{ProbeSpec, TcpProbe};
use shared::protocol::{Envelope, Expected, KeyId, Verdict, VoteRequest, open_vote};
use tower::ServiceExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_quorate-witness");

/// The heading of the section whose `sh` block is run.
const SECTION: &str = "### 12.1 Verify it yourself (OpenSSL and Python)";

/// The first ```sh block after [`SECTION`] in docs/protocol.md.
fn doc_block() -> String {
    let doc = include_str!("../../docs/protocol.md");
    let section = doc
        .split_once(SECTION)
        .unwrap_or_else(|| panic!("docs/protocol.md lacks the heading {SECTION:?}"))
        .1;
    let block = section
        .split_once("\n```sh\n")
        .expect("a ```sh block in the section")
        .1;
    block
        .split_once("\n```\n")
        .expect("the block's closing ```")
        .0
        .to_string()
}

/// Runs `script` in bash (exit on the first failing command or pipe) in `dir`.
fn bash(script: &str, dir: &Path, env: &[(&str, &Path)], pub_key: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PUB", pub_key);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The third-party tools the test needs, with the fix when one is missing.
fn require_tools() {
    for (what, script) in [
        ("openssl", "openssl version"),
        (
            "python3-cryptography",
            "python3 -c 'import cryptography.hazmat.primitives.asymmetric.ed25519'",
        ),
    ] {
        let out = bash(script, Path::new("."), &[], "");
        assert!(
            out.status.success(),
            "{what} is needed to check that keys interoperate; install it: apt-get install -y openssl python3-cryptography (tests/run.sh does)\n{}",
            text(&out)
        );
    }
}

#[tokio::test]
async fn openssl_and_python_read_an_init_key_and_verify_its_witness_vote() {
    require_tools();
    shared::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let witness_dir = dir.path().join("witness");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();

    // The target the witness probes: a TCP listener (the kernel completes the handshake).
    let site = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let site_addr = site.local_addr().unwrap();

    // `quorate-witness init`, trusting a test coordinator and allowing the site.
    let coordinator = shared::keys::generate();
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(&witness_dir)
        .args(["--listen", "127.0.0.1:8443", "--name", "127.0.0.1"])
        .args(["--allow", &format!("127.0.0.1/32={}", site_addr.port())])
        .args([
            "--coordinator",
            &format!(
                "test={}",
                shared::keys::format_public_key(&coordinator.verifying_key())
            ),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let pub_key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public_key = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("init printed no public_key:\n{stdout}"))
        .to_string();
    let key_file = witness_dir.join(witness::init::KEY_FILE);
    // The RFC 8410 v1 form: its base64 starts with the 16-byte header 302e0201003005…
    let pem = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"),
        "{pem}"
    );

    // The witness, as configured by init, signs a vote about the site.
    let config = witness::config::load(&witness_dir.join(witness::init::CONFIG_FILE)).unwrap();
    let app = witness::router(witness::AppState::new(&config));
    let request = VoteRequest {
        version: shared::protocol::PROTOCOL_VERSION,
        coordinator: KeyId::of(&coordinator.verifying_key()),
        service: "www".into(),
        round: 7,
        nonce: "00112233445566778899aabbccddeeff".into(),
        issued_at_ms: shared::unix_ms(SystemTime::now()),
        target: ProbeSpec::Tcp(TcpProbe {
            address: site_addr,
            timeout_ms: 2000,
        }),
    };
    let (envelope, hash) = request.sign(&coordinator);
    let resp = app
        .oneshot(
            Request::post("/v1/vote")
                .header("content-type", "application/json")
                .body(Body::from(envelope.to_json()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let vote_bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&vote_bytes)
    );
    let witness_key = shared::keys::parse_public_key(&pub_key).unwrap();
    let vote = open_vote(
        &Envelope::from_json(&vote_bytes[..]).unwrap(),
        &Expected {
            witness_key: &witness_key,
            request_hash: &hash,
            service: "www",
            round: 7,
        },
    )
    .unwrap();
    assert_eq!(vote.verdict, Verdict::Up);
    let vote_file = dir.path().join("vote.json");
    std::fs::write(&vote_file, &vote_bytes).unwrap();

    // The doc's block, verbatim: OpenSSL and Python read the key and verify the vote.
    let block = doc_block();
    let env = [("KEY", key_file.as_path()), ("VOTE", vote_file.as_path())];
    let out = bash(&block, &scratch, &env, &pub_key);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "openssl: key file holds {pub_key}\n\
             Signature Verified Successfully\n\
             python: key file holds {pub_key}\n\
             python: vote verified: service www round 7 verdict up\n"
        )
    );

    // The same block refuses a vote whose signature was tampered with.
    let mut forged: serde_json::Value = serde_json::from_slice(&vote_bytes).unwrap();
    let sig = forged["signature"].as_str().unwrap().to_string();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    forged["signature"] = format!("{flipped}{}", &sig[1..]).into();
    let forged_file = dir.path().join("forged.json");
    std::fs::write(&forged_file, forged.to_string()).unwrap();
    let env = [("KEY", key_file.as_path()), ("VOTE", forged_file.as_path())];
    let out = bash(&block, &scratch, &env, &pub_key);
    assert!(
        !out.status.success(),
        "a forged vote verified: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("openssl: key file holds"),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Signature Verification Failure"),
        "{}",
        text(&out)
    );
    // And so does its Python part on its own.
    let python = &block[block.find("python3 - ").expect("the Python part")..];
    let out = bash(python, &scratch, &env, &pub_key);
    assert!(
        !out.status.success(),
        "a forged vote verified: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("InvalidSignature")
            && !String::from_utf8_lossy(&out.stdout).contains("vote verified"),
        "{}",
        text(&out)
    );
}
