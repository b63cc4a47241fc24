//! `quorate-bench-witness-load`: drives one real `quorate-witness` at saturation with signed
//! vote requests from keep-alive HTTPS clients (each request a fresh nonce, an HTTP probe of a
//! local stand-in target) and reports signed votes per second, the witness's CPU over the
//! window, and votes per witness CPU-second ("per core"). Every answer must be HTTP 200 with
//! a vote envelope; one in `--verify-every` is checked against the witness's key and the
//! request it answers. Prints one JSON object. Run it inside a private network namespace.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Parser;
use quorate_bench::{Guard, init_witness, proc_sample, stand_in_target, wait_tcp};
use shared::probe::{HttpMethod, HttpProbe, ProbeSpec};
use shared::protocol::{Envelope, Expected, KeyId, NONCE_LEN, PROTOCOL_VERSION, VoteRequest};

#[derive(Parser)]
#[command(about = "Witness throughput: signed votes per second at saturation")]
struct Args {
    #[arg(long)]
    bin: PathBuf,
    /// Work folder (created; must not exist).
    #[arg(long)]
    work: PathBuf,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTPS connections (keep-alive clients); requests are spread over them.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    #[arg(long, default_value_t = 16)]
    verify_every: u64,
}

const TARGET: &str = "127.0.0.2:18081";
const WITNESS: &str = "127.0.0.1:19450";
/// Coordinator keys: the witness rate-limits per coordinator (at most 10,000/s each).
const KEYS: usize = 4;

fn nonce() -> anyhow::Result<String> {
    let mut n = [0u8; NONCE_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut n)
        .map_err(|_| anyhow::anyhow!("the OS random source failed"))?;
    Ok(hex::encode(n))
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    verified: AtomicU64,
    bad_signature: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::install_crypto_provider();
    let args = Args::parse();
    if args.concurrency == 0 || args.concurrency > 4096 || args.clients == 0 || args.clients > 256 {
        bail!("--concurrency 1..=4096, --clients 1..=256");
    }
    if args.seconds == 0 || args.seconds > 600 || args.verify_every == 0 {
        bail!("--seconds 1..=600, --verify-every at least 1");
    }
    std::fs::create_dir(&args.work)
        .with_context(|| format!("creating {} (it must not exist)", args.work.display()))?;
    let work = args.work.canonicalize()?;
    let target: SocketAddr = TARGET.parse()?;
    stand_in_target(target).await?;

    let keys: Vec<_> = (0..KEYS).map(|_| shared::keys::generate()).collect();
    let trusted: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                "load{i}={}",
                shared::keys::format_public_key(&k.verifying_key())
            )
        })
        .collect();
    let listen: SocketAddr = WITNESS.parse()?;
    let w = init_witness(
        &args.bin,
        &work.join("w"),
        listen,
        &format!("{}/32={}", target.ip(), target.port()),
        &trusted,
        "rate_per_coordinator = 10000\nburst = 20000\nmax_concurrent = 4096",
    )?;
    let wkey = shared::keys::parse_public_key(&w.public_key).map_err(anyhow::Error::msg)?;
    let pin: [u8; 32] = hex::decode(&w.cert_sha256)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("certificate pin is not 32 bytes"))?;
    let cfg = w.config.display().to_string();
    let mut witness = Guard::spawn(
        "witness",
        &args.bin.join("quorate-witness"),
        &["run", "--config", &cfg],
        &work.join("witness.log"),
    )?;
    wait_tcp(listen, Duration::from_secs(10))?;

    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(
            reqwest::Client::builder()
                .tls_backend_preconfigured(shared::tls::pinned_client_config(Some(pin)))
                .timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(1)
                .tcp_nodelay(true)
                .build()?,
        );
    }
    let url = format!("https://{listen}/v1/vote");
    let spec = ProbeSpec::Http(HttpProbe {
        address: target,
        tls: false,
        host: Some("load.test".into()),
        path: "/".into(),
        method: HttpMethod::Get,
        expect_status: vec![200],
        body_contains: None,
        tls_verify: true,
        timeout_ms: 1000,
    });
    let counts = Arc::new(Counts::default());
    let keys = Arc::new(keys);
    let stop_at = Instant::now() + Duration::from_secs(args.warmup + args.seconds);
    let mut tasks = Vec::new();
    for t in 0..args.concurrency {
        let (client, url, spec, counts, keys) = (
            clients[t % clients.len()].clone(),
            url.clone(),
            spec.clone(),
            counts.clone(),
            keys.clone(),
        );
        let verify_every = args.verify_every;
        tasks.push(tokio::spawn(async move {
            let key = &keys[t % KEYS];
            let key_id = KeyId::of(&key.verifying_key());
            let service = format!("load-{t}");
            let mut n: u64 = 0;
            while Instant::now() < stop_at {
                n += 1;
                let now = shared::unix_ms(SystemTime::now());
                let Ok(nonce) = nonce() else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let req = VoteRequest {
                    version: PROTOCOL_VERSION,
                    coordinator: key_id.clone(),
                    service: service.clone(),
                    round: now * 1000 + n % 1000,
                    nonce,
                    issued_at_ms: now,
                    target: spec.clone(),
                };
                let (env, hash) = req.sign(key);
                let body = Bytes::from(env.to_json());
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let raw = match resp {
                    Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                    _ => None,
                };
                let Some(raw) = raw else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let Ok(envelope) = Envelope::from_json(&raw) else {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                counts.ok.fetch_add(1, Ordering::Relaxed);
                if n.is_multiple_of(verify_every) {
                    let ok = shared::protocol::open_vote(
                        &envelope,
                        &Expected {
                            witness_key: &wkey,
                            request_hash: &hash,
                            service: &req.service,
                            round: req.round,
                        },
                    )
                    .is_ok();
                    let c = if ok {
                        &counts.verified
                    } else {
                        &counts.bad_signature
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    witness.check_alive()?;
    let (ok0, fail0) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let (w0, me0, t0) = (
        proc_sample(witness.pid())?,
        proc_sample(std::process::id())?,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (ok1, fail1) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let (w1, me1, wall) = (
        proc_sample(witness.pid())?,
        proc_sample(std::process::id())?,
        t0.elapsed().as_secs_f64(),
    );
    witness.check_alive()?;
    for t in tasks {
        let _ = t.await;
    }
    let votes = (ok1 - ok0) as f64;
    let wcpu = w1.cpu_s - w0.cpu_s;
    let result = serde_json::json!({
        "description": format!(
            "one witness, {} requests in flight over {} keep-alive HTTP/2 connections, HTTP probe of a stand-in target per vote, {:.0} s window",
            args.concurrency, args.clients, wall
        ),
        "votes_per_second": votes / wall,
        "failed_per_second": (fail1 - fail0) as f64 / wall,
        "witness_cpu_share_of_one_core": wcpu / wall,
        "votes_per_witness_cpu_second": if wcpu > 0.0 { votes / wcpu } else { 0.0 },
        "witness_peak_rss_mb": w1.hwm_kb as f64 / 1024.0,
        "load_generator_and_target_cpu_share": (me1.cpu_s - me0.cpu_s) / wall,
        "signatures_checked": counts.verified.load(Ordering::Relaxed),
        "signatures_bad": counts.bad_signature.load(Ordering::Relaxed),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    drop(witness);
    Ok(())
}
