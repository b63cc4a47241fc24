//! Issue 13: nobody can silence a witness cheaply. The real `quorate-witness` binary gets
//! 5,000 idle and slow connections from one address (127.0.0.2); a signed vote request from
//! the trusted coordinator's address (127.0.0.3) is still answered within 1 s, and the
//! witness's memory stays bounded. The witness runs under the shipped unit's
//! `LimitNOFILE=4096`.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use shared::probe::{ProbeSpec, TcpProbe};
use shared::protocol::{Envelope, Expected, KeyId, Verdict, VoteRequest, open_vote};
use testkit::{raise_nofile, vm_rss_kib};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};

mod common;
use common::{free_port, printed};

const BIN: &str = env!("CARGO_BIN_EXE_quorate-witness");
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const COORDINATOR: [u8; 4] = [127, 0, 0, 3];
const FLOOD: usize = 5_000;

/// A running witness, killed on drop.
struct Running {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `init` + a trusted coordinator + `run`, listening on 127.0.0.1; returns the process, the
/// coordinator's key, the witness's public key and the certificate pin.
fn start_witness(
    dir: &Path,
    port: u16,
    allow_port: u16,
) -> (Running, ed25519_dalek::SigningKey, String, String) {
    let coordinator = shared::keys::generate();
    let out = std::process::Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--name",
            "127.0.0.1",
        ])
        .args(["--allow", &format!("127.0.0.1/32={allow_port}")])
        .args([
            "--coordinator",
            &format!(
                "c1={}",
                shared::keys::format_public_key(&coordinator.verifying_key())
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let log = dir.join("witness.log");
    // The shipped unit's descriptor limit (deploy/systemd: LimitNOFILE=4096).
    let child = tokio::process::Command::new("prlimit")
        .args(["--nofile=4096:4096", "--", BIN, "run", "--config"])
        .arg(dir.join("witness.toml"))
        .env("QUORATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (
        Running { child, log },
        coordinator,
        printed(&stdout, "public_key"),
        printed(&stdout, "cert_sha256"),
    )
}

/// Connects from `source`, within 3 s.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> Option<TcpStream> {
    let s = TcpSocket::new_v4().ok()?;
    s.bind(SocketAddr::from((source, 0))).ok()?;
    tokio::time::timeout(Duration::from_secs(3), s.connect(to))
        .await
        .ok()?
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_and_slow_connections_from_one_address_do_not_silence_a_witness() {
    shared::install_crypto_provider();
    raise_nofile(FLOOD as u64 + 1_000);
    let dir = tempfile::tempdir().unwrap();
    // The probe target: a TCP port that accepts.
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_addr = target.local_addr().unwrap();
    let port = free_port();
    let (mut w, coordinator, public_key, cert_sha256) =
        start_witness(dir.path(), port, target_addr.port());
    let witness_key = shared::keys::parse_public_key(&public_key).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let base = format!("https://127.0.0.1:{port}");
    let pin = shared::tls::parse_fingerprint(&cert_sha256).unwrap();
    let client = |source: [u8; 4]| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(shared::tls::pinned_client_config(Some(pin)))
            .local_address(IpAddr::from(source))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };

    // Ready, as seen from the coordinator's address.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client(COORDINATOR)
            .get(format!("{base}/healthz"))
            .send()
            .await
            && r.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = w.child.try_wait() {
            panic!("witness exited early ({status}):\n{}", w.log());
        }
        assert!(Instant::now() < deadline, "witness not ready:\n{}", w.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = w.child.id().unwrap();
    let rss_before = vm_rss_kib(pid);

    // The flood: every other connection idle (TCP only), the others slow (half a TLS record
    // header, then nothing), 200 connects at a time.
    let started = Instant::now();
    let mut held = Vec::with_capacity(FLOOD);
    let mut failed = 0usize;
    for batch in 0..FLOOD / 200 {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let slow = (batch * 200 + i) % 2 == 1;
            set.spawn(async move {
                let mut s = connect_from(ATTACKER, addr).await?;
                if slow {
                    let _ = s.write_all(&[0x16, 0x03]).await;
                }
                Some(s)
            });
        }
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Some(s) => held.push(s),
                None => failed += 1,
            }
        }
    }
    let flood_took = started.elapsed();
    assert!(
        flood_took < Duration::from_secs(60),
        "opening {FLOOD} connections took {flood_took:?}"
    );

    // The trusted coordinator asks: answered, within 1 s, with a valid vote.
    let request = VoteRequest {
        version: shared::protocol::PROTOCOL_VERSION,
        coordinator: KeyId::of(&coordinator.verifying_key()),
        service: "www".into(),
        round: 1,
        nonce: "00112233445566778899aabbccddeeff".into(),
        issued_at_ms: shared::unix_ms(SystemTime::now()),
        target: ProbeSpec::Tcp(TcpProbe {
            address: target_addr,
            timeout_ms: 500,
        }),
    };
    let (envelope, hash) = request.sign(&coordinator);
    let asked = Instant::now();
    let resp = client(COORDINATOR)
        .post(format!("{base}/v1/vote"))
        .header("content-type", "application/json")
        .body(envelope.to_json())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "vote request got no answer under the flood: {e:?}\n{}",
                w.log()
            )
        });
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let answered_in = asked.elapsed();
    let vote = open_vote(
        &Envelope::from_json(&body).unwrap(),
        &Expected {
            witness_key: &witness_key,
            request_hash: &hash,
            service: "www",
            round: 1,
        },
    )
    .unwrap();
    assert_eq!(vote.verdict, Verdict::Up);
    let rss_after = vm_rss_kib(pid);
    println!(
        "flood: {} connections held open by the attacker's side, {failed} failed to connect, in {flood_took:?}; vote answered in {answered_in:?}; witness VmRSS {rss_before} KiB before, {rss_after} KiB after",
        held.len()
    );
    assert!(
        answered_in < Duration::from_secs(1),
        "vote answered in {answered_in:?} under the flood"
    );
    // Generous: the caps keep at most 1,024 connections (32 from the attacker) alive; before
    // the caps, the same flood grew the witness by about 60 MiB.
    assert!(
        rss_after < rss_before + 24 * 1024,
        "witness memory grew from {rss_before} KiB to {rss_after} KiB under the flood"
    );
    let log = w.log();
    assert!(
        log.contains("connection refused: limit reached")
            && log.contains("max_connections_per_address"),
        "the per-address cap did not refuse anything:\n{log}"
    );

    drop(held);
    drop(target);
    w.child.kill().await.unwrap();
}
