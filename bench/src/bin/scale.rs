//! `quorate-bench-scale`: one real coordinator guarding N services (default 1,000) with three
//! real witnesses each, at a 1 s interval, against a stand-in HTTP target on loopback. After a
//! warm-up it measures, over a window: the coordinator's and one witness's CPU (share of one
//! core) and peak RSS, vote round trips (p50/p99 from the coordinator's
//! `quorate_vote_latency_seconds` histogram), probe intervals run and intervals started more
//! than one interval late (`quorate_late_ticks_total`), missing and invalid votes. Prints
//! one JSON object. Run it inside a private network namespace (bench/scale.sh does).

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use quorate_bench::{
    Guard, coordinator_keygen, get_text, histogram_buckets, histogram_quantile, init_witness,
    metric_sum, proc_sample, stand_in_target, wait_tcp,
};

#[derive(Parser)]
#[command(about = "Coordinator scale benchmark: many services, three witnesses each")]
struct Args {
    /// Folder with quorate-coordinator and quorate-witness.
    #[arg(long)]
    bin: PathBuf,
    /// Work folder (created; must not exist).
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = 1000)]
    services: u32,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Warm-up before the window, seconds.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Probe interval of every service, ms.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

const TARGET_PORT: u16 = 18080;
const API: &str = "127.0.0.1:18088";
const DNS: &str = "127.0.0.1:15353";

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Primary and backup of service `i`: spread over 127.1.x.y / 127.2.x.y so no address pair
/// runs out of ephemeral ports.
fn service_addrs(i: u32) -> (String, String) {
    let (a, b) = ((i / 250) % 250, i % 250 + 1);
    (format!("127.1.{a}.{b}"), format!("127.2.{a}.{b}"))
}

fn coordinator_config(args: &Args, witnesses: &[quorate_bench::WitnessSetup]) -> String {
    let mut c = format!(
        "[coordinator]\nkey_file = \"coordinator.key\"\ndatabase = \"history.sqlite\"\ninterval = \"{}ms\"\n\n\
         [api]\nlisten = \"{API}\"\ntoken_file = \"api.token\"\n\n",
        args.interval_ms
    );
    for (i, w) in witnesses.iter().enumerate() {
        c.push_str(&format!(
            "[[witness]]\nname = \"w{}\"\nurl = \"https://{}\"\npublic_key = \"{}\"\ncert_sha256 = \"{}\"\n\n",
            i + 1,
            w.listen,
            w.public_key,
            w.cert_sha256
        ));
    }
    c.push_str(&format!(
        "[dns]\ntype = \"builtin\"\nlisten = [\"{DNS}\"]\nzone = \"scale.test.\"\nns = [\"ns1.scale.test.\"]\n\
         records = [{{ name = \"ns1\", type = \"A\", value = \"127.0.0.1\" }}]\n\n"
    ));
    for i in 0..args.services {
        let (p, b) = service_addrs(i);
        c.push_str(&format!(
            "[[service]]\nname = \"s{i:05}\"\nzone = \"scale.test\"\nnames = [\"s{i:05}\"]\nttl = 60\n\
             primary = {{ addresses = [\"{p}\"] }}\nbackup = {{ addresses = [\"{b}\"] }}\n\
             probe = {{ kind = \"http\", port = {TARGET_PORT}, host = \"s{i:05}.scale.test\", path = \"/\", timeout = \"800ms\" }}\n\
             fail_after = 2\nrecover_after = 60\n\n"
        ));
    }
    c
}

struct Snapshot {
    at: Instant,
    coord: quorate_bench::ProcSample,
    witness: quorate_bench::ProcSample,
    metrics: String,
    /// Witness w1's own metrics (vote requests it received).
    witness_metrics: String,
}

async fn snapshot(
    http: &reqwest::Client,
    w1_http: &reqwest::Client,
    w1_url: &str,
    coord: u32,
    witness: u32,
) -> anyhow::Result<Snapshot> {
    let metrics = get_text(http, &format!("http://{API}/metrics")).await?;
    let witness_metrics = get_text(w1_http, w1_url).await?;
    Ok(Snapshot {
        at: Instant::now(),
        coord: proc_sample(coord)?,
        witness: proc_sample(witness)?,
        metrics,
        witness_metrics,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::install_crypto_provider();
    let args = Args::parse();
    if args.services == 0 || args.services > 62_500 {
        bail!("--services: expected 1..=62500, got {}", args.services);
    }
    if args.seconds == 0 || args.seconds > 3600 || args.warmup > 600 {
        bail!("--seconds: expected 1..=3600; --warmup at most 600");
    }
    std::fs::create_dir(&args.work)
        .with_context(|| format!("creating {} (it must not exist)", args.work.display()))?;
    let work = args.work.canonicalize()?;

    stand_in_target(SocketAddr::from(([0, 0, 0, 0], TARGET_PORT))).await?;

    let ckey = coordinator_keygen(&args.bin, &work.join("coordinator.key"))?;
    write_private(&work.join("api.token"), &hex::encode([7u8; 24]))?;
    let limits = "rate_per_coordinator = 10000\nburst = 20000\nmax_concurrent = 4096";
    let mut witnesses = Vec::new();
    for i in 1..=3u16 {
        let listen = SocketAddr::from(([127, 0, 0, 1], 19440 + i));
        witnesses.push(init_witness(
            &args.bin,
            &work.join(format!("w{i}")),
            listen,
            &format!("127.0.0.0/8={TARGET_PORT}"),
            &[format!("scale={ckey}")],
            limits,
        )?);
    }
    let config = work.join("coordinator.toml");
    std::fs::write(&config, coordinator_config(&args, &witnesses))?;

    let mut guards = Vec::new();
    for (i, w) in witnesses.iter().enumerate() {
        let cfg = w.config.display().to_string();
        guards.push(Guard::spawn(
            &format!("witness w{}", i + 1),
            &args.bin.join("quorate-witness"),
            &["run", "--config", &cfg],
            &work.join(format!("w{}.log", i + 1)),
        )?);
    }
    for w in &witnesses {
        wait_tcp(w.listen, Duration::from_secs(10))?;
    }
    let cfg = config.display().to_string();
    let mut coord = Guard::spawn(
        "coordinator",
        &args.bin.join("quorate-coordinator"),
        &["run", "--config", &cfg],
        &work.join("coordinator.log"),
    )?;
    let api: SocketAddr = API.parse()?;
    wait_tcp(api, Duration::from_secs(60)).context("coordinator API")?;
    let started = Instant::now();

    let http = reqwest::Client::builder().build()?;
    // Witness w1's /metrics over its pinned TLS, as the coordinator reaches it.
    let pin = shared::tls::parse_fingerprint(&witnesses[0].cert_sha256)?;
    let w1_http = reqwest::Client::builder()
        .tls_backend_preconfigured(shared::tls::pinned_client_config(Some(pin)))
        .build()?;
    let w1_url = format!("https://{}/metrics", witnesses[0].listen);
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    coord.check_alive()?;
    let w1 = guards[0].pid();
    let a = snapshot(&http, &w1_http, &w1_url, coord.pid(), w1).await?;
    let mut peak_rss_coord = a.coord.rss_kb;
    let mut peak_rss_w1 = a.witness.rss_kb;
    let end = a.at + Duration::from_secs(args.seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(1).min(end - Instant::now())).await;
        coord.check_alive()?;
        for g in &mut guards {
            g.check_alive()?;
        }
        peak_rss_coord = peak_rss_coord.max(proc_sample(coord.pid())?.rss_kb);
        peak_rss_w1 = peak_rss_w1.max(proc_sample(w1)?.rss_kb);
    }
    let b = snapshot(&http, &w1_http, &w1_url, coord.pid(), w1).await?;
    let wall = (b.at - a.at).as_secs_f64();

    let delta = |name: &str| metric_sum(&b.metrics, name) - metric_sum(&a.metrics, name);
    let hist = "quorate_vote_latency_seconds";
    let (ha, hb) = (
        histogram_buckets(&a.metrics, hist),
        histogram_buckets(&b.metrics, hist),
    );
    let ms = |q: f64| histogram_quantile(&ha, &hb, q).map(|s| s * 1000.0);
    let ticks = delta("quorate_ticks_total");
    let expected_ticks = f64::from(args.services) * wall * 1000.0 / args.interval_ms as f64;
    // Witness load: vote requests w1 received per service per interval (1.0 in steady state:
    // mesh-speed detection spreads the requests over the interval, it does not add any).
    let w1_requests = metric_sum(&b.witness_metrics, "quorate_witness_vote_requests_total")
        - metric_sum(&a.witness_metrics, "quorate_witness_vote_requests_total");
    let result = serde_json::json!({
        "description": format!(
            "{} services x 3 witnesses, interval {} ms, HTTP probes to a stand-in target on loopback; window {:.0} s after {} s warm-up",
            args.services, args.interval_ms, wall, args.warmup
        ),
        "services": args.services,
        "interval_ms": args.interval_ms,
        "window_s": wall,
        "startup_to_window_s": (a.at - started).as_secs_f64(),
        "coordinator": {
            "cpu_share_of_one_core": (b.coord.cpu_s - a.coord.cpu_s) / wall,
            "rss_mb_end": b.coord.rss_kb as f64 / 1024.0,
            "peak_rss_mb": (b.coord.hwm_kb.max(peak_rss_coord)) as f64 / 1024.0,
        },
        "witness_w1": {
            "cpu_share_of_one_core": (b.witness.cpu_s - a.witness.cpu_s) / wall,
            "rss_mb_end": b.witness.rss_kb as f64 / 1024.0,
            "peak_rss_mb": (b.witness.hwm_kb.max(peak_rss_w1)) as f64 / 1024.0,
            "vote_requests": w1_requests,
            "vote_requests_per_service_per_interval": w1_requests / expected_ticks,
        },
        "vote_rtt_ms_bucket_upper_bound": { "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0) },
        "votes_answered": delta("quorate_vote_latency_seconds_count"),
        "votes_missing": delta("quorate_votes_missing_total"),
        "votes_invalid": delta("quorate_invalid_votes_total"),
        "ticks": ticks,
        "ticks_expected": expected_ticks,
        "late_ticks": delta("quorate_late_ticks_total"),
        "rounds_recorded": delta("quorate_rounds_total"),
        "confirmation_rounds": delta("quorate_confirmation_rounds_total"),
        "services_primary_up_at_end": metric_sum(&b.metrics, "quorate_service_primary_up"),
    });
    println!("{}", serde_json::to_string_pretty(&result)?);
    drop(coord);
    drop(guards);
    Ok(())
}
