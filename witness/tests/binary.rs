//! The real `quorate-witness` binary: `init` writes a working directory, the config is edited
//! to trust a test coordinator, `run` serves HTTPS on loopback, and signed votes about a local
//! HTTP server verify with the key `init` printed: up while it runs, down once it stops.
//! Also: refusing group-readable key files, and SIGTERM shutting down cleanly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use ed25519_dalek::SigningKey;
use shared::probe::{HttpMethod, HttpProbe, ProbeSpec};
use shared::protocol::{Envelope, Expected, KeyId, Verdict, Vote, VoteRequest, open_vote};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod common;
use common::{free_port, printed};

const BIN: &str = env!("CARGO_BIN_EXE_quorate-witness");

/// A minimal HTTP server answering 200 "site ok" until `stop` is cancelled; the returned
/// handle finishes once the listener is closed.
async fn site(stop: CancellationToken) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for _ in 0..64 {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = stop.cancelled() => return,
            };
            let Ok((mut tcp, _)) = accepted else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nsite ok",
                    )
                    .await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Runs `quorate-witness init` and returns its stdout.
fn init(dir: &Path, listen: &str, extra: &[&str]) -> String {
    let out = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir)
        .args(["--listen", listen, "--name", "127.0.0.1"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running witness process, killed on drop.
struct Running {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, log: PathBuf) -> Running {
        let child = tokio::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn client(cert_sha256: &str) -> reqwest::Client {
    let pin = shared::tls::parse_fingerprint(cert_sha256).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(shared::tls::pinned_client_config(Some(pin)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn wait_ready(client: &reqwest::Client, base: &str, w: &mut Running) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        if let Ok(Some(status)) = w.child.try_wait() {
            panic!("witness exited early ({status}):\n{}", w.log());
        }
        assert!(Instant::now() < deadline, "witness not ready:\n{}", w.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn nonce() -> String {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).unwrap();
    hex::encode(b)
}

async fn ask(
    client: &reqwest::Client,
    base: &str,
    coordinator: &SigningKey,
    witness_key: &ed25519_dalek::VerifyingKey,
    target: SocketAddr,
    round: u64,
) -> Vote {
    let request = VoteRequest {
        version: shared::protocol::PROTOCOL_VERSION,
        coordinator: KeyId::of(&coordinator.verifying_key()),
        service: "www".into(),
        round,
        nonce: nonce(),
        issued_at_ms: shared::unix_ms(SystemTime::now()),
        target: ProbeSpec::Http(HttpProbe {
            address: target,
            tls: false,
            host: Some("www.example.test".into()),
            path: "/".into(),
            method: HttpMethod::Get,
            expect_status: vec![],
            body_contains: Some("site ok".into()),
            tls_verify: true,
            timeout_ms: 2000,
        }),
    };
    let (envelope, hash) = request.sign(coordinator);
    let resp = client
        .post(format!("{base}/v1/vote"))
        .header("content-type", "application/json")
        .body(envelope.to_json())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let vote: Envelope = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    open_vote(
        &vote,
        &Expected {
            witness_key,
            request_hash: &hash,
            service: "www",
            round,
        },
    )
    .unwrap()
}

#[tokio::test]
async fn real_binary_votes_up_then_down_and_stops_on_sigterm() {
    shared::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let (site_addr, site_task) = site(stop.clone()).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let stdout = init(
        dir.path(),
        &listen,
        &["--allow", &format!("127.0.0.1/32={}", site_addr.port())],
    );
    let public_key = printed(&stdout, "public_key");
    let cert_sha256 = printed(&stdout, "cert_sha256");
    assert_eq!(printed(&stdout, "url"), format!("https://127.0.0.1:{port}"));
    let witness_key = shared::keys::parse_public_key(&public_key).unwrap();
    // The printed key is the one in the key file.
    let from_file = shared::keys::load_signing_key(&dir.path().join("witness.key")).unwrap();
    assert_eq!(from_file.verifying_key(), witness_key);

    // Without a trusted coordinator the config does not validate, and says what is missing.
    let config = dir.path().join("witness.toml");
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let err = String::from_utf8_lossy(&check.stderr);
    assert!(
        err.contains("witness.toml") && err.contains("coordinator"),
        "{err}"
    );

    // Edit the config as an operator would: trust the test coordinator.
    let coordinator = shared::keys::generate();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[coordinator]]\nname = \"test\"\npublic_key = \"{}\"\n",
        shared::keys::format_public_key(&coordinator.verifying_key())
    ));
    std::fs::write(&config, text).unwrap();
    let check = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut w = Running::start(&config, dir.path().join("witness.log"));
    let base = format!("https://127.0.0.1:{port}");
    let client = client(&cert_sha256);
    wait_ready(&client, &base, &mut w).await;

    let identity: serde_json::Value = client
        .get(format!("{base}/v1/identity"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(identity["public_key"], public_key);
    assert_eq!(identity["cert_sha256"], cert_sha256);

    let vote = ask(&client, &base, &coordinator, &witness_key, site_addr, 1).await;
    assert_eq!(vote.verdict, Verdict::Up, "{vote:?}");
    assert_eq!(vote.evidence.status, Some(200));

    stop.cancel();
    site_task.await.unwrap(); // the listener is closed now
    let vote = ask(&client, &base, &coordinator, &witness_key, site_addr, 2).await;
    assert_eq!(vote.verdict, Verdict::Down, "{vote:?}");
    assert_eq!(
        vote.evidence.error,
        Some(shared::probe::ProbeError::Refused)
    );

    // A client pinning another certificate is refused at the TLS layer.
    let (other, _) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
    let other = shared::tls::parse_cert_pem(other.as_bytes(), Path::new("other")).unwrap();
    let err = self::client(&other.sha256_hex)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // SIGTERM: a clean exit within the grace period.
    let pid = w.child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), w.child.wait())
        .await
        .expect("witness did not stop after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}:\n{}", w.log());
    let log = w.log();
    assert!(
        log.contains("SIGTERM received") && log.contains("witness stopped"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

fn expect_refusal(args: &[&str], config: &Path, needles: &[&str]) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: missing {n:?} in: {err}");
    }
}

#[test]
fn group_readable_key_files_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let coordinator = shared::keys::generate();
    init(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        &[
            "--allow",
            "127.0.0.1/32=80",
            "--coordinator",
            &format!(
                "c1={}",
                shared::keys::format_public_key(&coordinator.verifying_key())
            ),
        ],
    );
    let config = dir.path().join("witness.toml");
    for (file, key) in [("witness.key", "key_file"), ("tls.key", "tls_key_file")] {
        let path = dir.path().join(file);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        for cmd in [&["check", "--config"][..], &["run", "--config"][..]] {
            expect_refusal(cmd, &config, &[key, file, "0640", "chmod 600"]);
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // Nothing was bound by the refused `run`: the port is still free.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

#[test]
fn init_refuses_to_overwrite_and_rejects_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), "127.0.0.1:8443", &[]);
    let key_before = std::fs::read(dir.path().join("witness.key")).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read(dir.path().join("witness.key")).unwrap(),
        key_before
    );
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let fresh = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(fresh.path())
        .args(["--allow", "10.0.0.0/8=http"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow") && err.contains("ports"), "{err}");
    assert!(
        !fresh.path().join("witness.key").exists(),
        "nothing is written on bad flags"
    );
}
