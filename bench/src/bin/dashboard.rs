//! `quorate-bench-dashboard`: the dashboard's overview with N services (default 100). Starts
//! a coordinator in this process (dry-run DNS, services whose interval is an hour so they stay
//! quiet, witnesses on closed ports), stores one round with three votes per service, logs in
//! and fetches `/ui/` over loopback many times. Prints one JSON object: the page's weight (the
//! HTML and the assets it loads) and the time to answer it (server-side render plus a loopback
//! round trip: an upper bound of the render time), min / p50 / p99 / max.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use coordinator::failover::{Outcome, Trigger};
use coordinator::store::{Decision, NewRound, Store, VoteRecord};

#[derive(Parser)]
#[command(about = "Dashboard overview benchmark: page weight and time with many services")]
struct Args {
    #[arg(long, default_value_t = 100)]
    services: u32,
    /// Fetches measured (after 10 unmeasured).
    #[arg(long, default_value_t = 200)]
    fetches: u32,
}

const WITNESSES: [&str; 3] = ["w1", "w2", "w3"];

fn config(services: u32, closed: u16) -> String {
    let mut t = String::from(
        "[coordinator]\nkey_file = \"coordinator.key\"\ndatabase = \"history.sqlite\"\ninterval = \"1h\"\n\n[api]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"api.token\"\n\n[dns]\ntype = \"dryrun\"\n\n",
    );
    for w in WITNESSES {
        let key = shared::keys::generate();
        t.push_str(&format!(
            "[[witness]]\nname = \"{w}\"\nurl = \"https://127.0.0.1:{closed}\"\npublic_key = \"{}\"\n\n",
            shared::keys::format_public_key(&key.verifying_key())
        ));
    }
    for i in 0..services {
        t.push_str(&format!(
            "[[service]]\nname = \"service-{i:03}\"\nzone = \"example.test\"\nnames = [\"www{i}\"]\nttl = 30\nprimary = {{ addresses = [\"192.0.2.1\"] }}\nbackup = {{ addresses = [\"192.0.2.2\"] }}\nprobe = {{ kind = \"tcp\", port = {closed}, timeout = \"250ms\" }}\nfail_after = 2\nrecover_after = 5\nquorum = 2\n\n"
        ));
    }
    t
}

/// One stored round per service, three votes each (one of them missing).
fn fill(store: &Store, services: u32, now_ms: u64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Handle::current();
    for i in 0..services {
        let service = format!("service-{i:03}");
        let votes: Vec<VoteRecord> = WITNESSES
            .iter()
            .enumerate()
            .map(|(k, w)| VoteRecord {
                witness: (*w).into(),
                witness_key_id: "00".repeat(8),
                request_envelope: "{}".into(),
                vote_envelope: (k < 2).then(|| b"{}".to_vec()),
                valid: k < 2,
                verdict: (k < 2).then(|| "up".into()),
                error: (k == 2).then(|| "timeout".into()),
                latency_ms: Some(12.0),
            })
            .collect();
        let d = Decision {
            service: service.clone(),
            at_ms: now_ms,
            round: Some(NewRound {
                service,
                at_ms: now_ms,
                trigger: Trigger::PrimaryDown,
                outcome: Outcome::parse("insufficient-votes").context("outcome")?,
                reason: "bench fixture".into(),
                primary_up: false,
                backup_up: true,
                votes_up: 2,
                votes_down: 0,
                votes_invalid: 0,
                votes_missing: 1,
                changed_dns: false,
                policy: None,
                spell: None,
            }),
            votes,
            ..Default::default()
        };
        tokio::task::block_in_place(|| rt.block_on(store.record_decision(d)))?;
    }
    Ok(())
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    shared::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let key = shared::keys::generate();
    shared::keys::write_signing_key(&dir.path().join("coordinator.key"), &key)?;
    let token = hex::encode(&key.verifying_key().as_bytes()[..16]);
    shared::keys::write_private_file(&dir.path().join("api.token"), token.as_bytes())?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let path = dir.path().join("coordinator.toml");
    std::fs::write(&path, config(args.services, closed))?;
    let config = coordinator::config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    {
        let store = Store::open(&dir.path().join("history.sqlite"))?;
        fill(
            &store,
            args.services,
            shared::unix_ms(std::time::SystemTime::now()),
        )?;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let coord = coordinator::start(config, listener, None, shutdown.clone()).await?;
    let base = format!("http://{}", coord.api_addr);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("the login set no cookie")?
        .to_string();
    let mut html_bytes = 0;
    let mut times = Vec::with_capacity(args.fetches as usize);
    for n in 0..(args.fetches + 10) {
        let t = Instant::now();
        let res = http
            .get(format!("{base}/ui/"))
            .header("cookie", &cookie)
            .send()
            .await?;
        if res.status() != 200 {
            bail!("GET /ui/ answered {}", res.status());
        }
        let body = res.bytes().await?;
        let took = t.elapsed();
        if n >= 10 {
            times.push(took);
        }
        html_bytes = body.len();
        let rows = body
            .windows(15)
            .filter(|w| w == b"data-service=\"s")
            .count();
        if rows != args.services as usize {
            bail!(
                "the overview lists {rows} services, expected {}",
                args.services
            );
        }
    }
    let mut assets = serde_json::Map::new();
    let mut total = html_bytes;
    for a in [
        "htmx-2.0.11.min.js",
        "htmx-ext-sse-2.2.4.min.js",
        "dashboard.css",
    ] {
        let n = http
            .get(format!("{base}/ui/assets/{a}"))
            .send()
            .await?
            .bytes()
            .await?
            .len();
        total += n;
        assets.insert(a.into(), n.into());
    }
    times.sort();
    let out = serde_json::json!({
        "services": args.services,
        "fetches": args.fetches,
        "html_bytes": html_bytes,
        "assets_bytes": assets,
        "page_weight_bytes": total,
        "response_ms": {
            "min": quantile(&times, 0.0),
            "p50": quantile(&times, 0.5),
            "p99": quantile(&times, 0.99),
            "max": quantile(&times, 1.0),
        },
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    shutdown.cancel();
    coord.wait(Duration::from_secs(10)).await;
    Ok(())
}
