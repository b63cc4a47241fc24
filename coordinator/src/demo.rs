//! `quorate-coordinator demo`: a self-contained failover drill on loopback. A stand-in
//! primary and backup web server, three real witnesses (HTTPS, signed votes, in-process), and
//! a coordinator whose DNS backend is the built-in authoritative server. It kills the
//! primary, shows the votes and the failover as DNS answers it, restores the primary and
//! shows the failback after the hold-down. `--once` exits with the verdict; otherwise the API
//! stays up to browse until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio_util::sync::CancellationToken;

use crate::dns::RecordType;
use crate::store::RoundFilter;

const ZONE: &str = "demo.test.";
const NAME: &str = "www.demo.test.";
const PRIMARY: [u8; 4] = [127, 0, 0, 11];
const BACKUP: [u8; 4] = [127, 0, 0, 12];
/// Probe interval of the drill.
const INTERVAL_MS: u64 = 500;
const FAIL_AFTER: u32 = 2;
const RECOVER_AFTER: u32 = 6;

/// Options of the drill.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Run the drill and exit: Ok only if both switches were seen in DNS answers.
    pub once: bool,
    /// API listen address (default 127.0.0.1:8053 when browsing, a free port with `once`).
    pub api: Option<SocketAddr>,
}

/// A stand-in web server that can be killed and restored on the same address.
struct Site {
    addr: SocketAddr,
    label: &'static str,
    stop: Option<CancellationToken>,
}

impl Site {
    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let stop = CancellationToken::new();
        let label = self.label;
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { format!("{label}\n") }),
        );
        let s2 = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s2.cancelled().await })
                .await;
        });
        self.stop = Some(stop);
    }

    fn kill(&mut self) {
        if let Some(s) = self.stop.take() {
            s.cancel();
        }
    }

    async fn restore(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("cannot restore the {} on {}: {e}", self.label, self.addr)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

fn free_udp_port() -> anyhow::Result<u16> {
    // The built-in server binds UDP and TCP on the same port; ask the OS for one that is free.
    for _ in 0..20 {
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = u.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port for the built-in DNS server")
}

fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    shared::keys::write_private_file(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn t(start: Instant) -> String {
    format!("[{:>5.1}s]", start.elapsed().as_secs_f64())
}

/// Runs the drill.
pub async fn run(opts: DemoOptions) -> anyhow::Result<bool> {
    let start = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary folder")?;
    let shutdown = CancellationToken::new();
    println!(
        "Quorate demo: a failover drill on loopback (files in {})\n",
        dir.path().display()
    );

    // The two sites.
    // Probes use one port for both sides: the backup takes the primary's.
    let mut primary = Site::start_on(PRIMARY, 0, "primary").await?;
    let port = primary.addr.port();
    let backup = Site::start_on(BACKUP, port, "backup").await?;

    // The coordinator's key, trusted by every witness.
    let ckey = shared::keys::generate();
    shared::keys::write_signing_key(&dir.path().join("coordinator.key"), &ckey)?;
    let token = hex::encode(shared::keys::generate().to_bytes());
    write_secret(&dir.path().join("api.token"), &token)?;

    // Three witnesses, each with its own key and self-signed certificate.
    let mut witness_blocks = String::new();
    for i in 1..=3 {
        let wkey = shared::keys::generate();
        let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()])?;
        let allow = witness::config::Allowlist(vec![witness::config::AllowRule {
            net: witness::config::parse_cidr("127.0.0.0/8").map_err(anyhow::Error::msg)?,
            ports: vec![port],
        }]);
        let trusted = vec![witness::config::TrustedCoordinator::new(
            "demo",
            ckey.verifying_key(),
        )];
        let cfg = witness::config::Config::from_parts(wkey, trusted, allow, cert, key)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("https://{}", listener.local_addr()?);
        witness_blocks.push_str(&cfg.identity_block(&format!("w{i}"), &url));
        witness_blocks.push('\n');
        let sd = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = witness::run(cfg, listener, sd).await {
                tracing::error!(error = %e, "demo witness stopped");
            }
        });
    }

    let dns_port = free_udp_port()?;
    let dns_addr = SocketAddr::from(([127, 0, 0, 1], dns_port));
    let api_listener = match opts.api {
        Some(a) => {
            std::net::TcpListener::bind(a).with_context(|| format!("cannot listen on {a}"))?
        }
        None if opts.once => std::net::TcpListener::bind("127.0.0.1:0")?,
        None => std::net::TcpListener::bind("127.0.0.1:8053")
            .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))?,
    };
    let api_addr = api_listener.local_addr()?;
    let p = IpAddr::from(PRIMARY);
    let b = IpAddr::from(BACKUP);
    let config_text = format!(
        r#"[coordinator]
key_file = "coordinator.key"
database = "history.sqlite"
interval = "{INTERVAL_MS}ms"

[api]
listen = "{api_addr}"
token_file = "api.token"

{witness_blocks}
[dns]
type = "builtin"
listen = ["{dns_addr}"]
zone = "{ZONE}"
ns = ["ns1.{ZONE}"]
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}]

[[service]]
name = "www"
zone = "{ZONE}"
names = ["www"]
ttl = 30
primary = {{ addresses = ["{p}"] }}
backup = {{ addresses = ["{b}"] }}
probe = {{ kind = "http", port = {port}, host = "www.demo.test", path = "/", timeout = "300ms" }}
fail_after = {FAIL_AFTER}
recover_after = {RECOVER_AFTER}
"#
    );
    let config_path = dir.path().join("coordinator.toml");
    std::fs::write(&config_path, &config_text)?;
    let config =
        crate::config::load(&config_path).map_err(|e| anyhow::anyhow!("demo config:\n{e}"))?;
    let coord = crate::start(config, api_listener, None, shutdown.clone()).await?;
    let store = coord.store.clone();

    println!(
        "{} primary {}:{port} and backup {}:{port} serving; 3 witnesses on HTTPS; built-in DNS on {dns_addr}",
        t(start),
        p,
        b
    );
    println!(
        "{} probe interval {INTERVAL_MS} ms, fail after {FAIL_AFTER} failed probes, quorum 2 of 3, hold-down {RECOVER_AFTER} probes",
        t(start)
    );

    let mut ok = true;
    let answer = wait_answer(dns_addr, p, Duration::from_secs(5)).await;
    report(start, "healthy", dns_addr, &answer, p);
    ok &= answer.as_ref().map(|a| a.contains(&p)).unwrap_or(false);

    // Fault.
    primary.kill();
    let t_kill = Instant::now();
    println!("\n{} primary web server killed", t(start));
    let answer = wait_answer(dns_addr, b, Duration::from_secs(10)).await;
    let failover_s = t_kill.elapsed().as_secs_f64();
    print_failover_round(&store, start).await;
    report(start, "failover", dns_addr, &answer, b);
    let switched_over = answer.as_ref().map(|a| a.contains(&b)).unwrap_or(false);
    ok &= switched_over;
    if switched_over {
        println!(
            "{} DNS answered the backup {failover_s:.2} s after the kill",
            t(start)
        );
    }

    // Repair.
    primary.restore().await?;
    let t_fix = Instant::now();
    println!(
        "\n{} primary restored; failback waits for {RECOVER_AFTER} healthy probes (the hold-down)",
        t(start)
    );
    let answer = wait_answer(dns_addr, p, Duration::from_secs(12)).await;
    let failback_s = t_fix.elapsed().as_secs_f64();
    report(start, "failback", dns_addr, &answer, p);
    let switched_back = answer.as_ref().map(|a| a.contains(&p)).unwrap_or(false);
    ok &= switched_back;
    if switched_back {
        println!(
            "{} DNS answered the primary {failback_s:.2} s after the repair",
            t(start)
        );
    }
    drop(backup);

    println!();
    if ok {
        println!(
            "{} drill passed: failover and failback both seen in DNS answers",
            t(start)
        );
    } else {
        println!("{} drill FAILED: see the lines above", t(start));
    }
    if opts.once {
        shutdown.cancel();
        coord.wait(Duration::from_secs(5)).await;
        return Ok(ok);
    }
    println!("\nThe coordinator keeps running. Try:");
    println!(
        "  dig @{} -p {} {NAME} A +norecurse",
        dns_addr.ip(),
        dns_addr.port()
    );
    println!("  curl -H 'Authorization: Bearer {token}' http://{api_addr}/v1/services");
    println!("  curl -H 'Authorization: Bearer {token}' 'http://{api_addr}/v1/rounds?service=www'");
    println!("  curl http://{api_addr}/metrics");
    println!("Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    shutdown.cancel();
    coord.wait(Duration::from_secs(5)).await;
    Ok(ok)
}

impl Site {
    async fn start_on(ip: [u8; 4], port: u16, label: &'static str) -> anyhow::Result<Site> {
        let want = SocketAddr::from((ip, port));
        let listener = tokio::net::TcpListener::bind(want)
            .await
            .with_context(|| format!("cannot bind the stand-in {label} on {want}"))?;
        let addr = listener.local_addr()?;
        let mut s = Site {
            addr,
            label,
            stop: None,
        };
        s.serve(listener);
        Ok(s)
    }
}

/// Polls the built-in server until it answers `want`, or the deadline passes; returns the
/// last answer seen.
async fn wait_answer(server: SocketAddr, want: IpAddr, within: Duration) -> Option<Vec<IpAddr>> {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(set) =
            crate::dns::served::query_rrset(server, NAME, RecordType::A, Duration::from_millis(300))
                .await
        {
            let hit = set.addrs.contains(&want);
            last = Some(set.addrs);
            if hit {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

fn report(
    start: Instant,
    what: &str,
    server: SocketAddr,
    answer: &Option<Vec<IpAddr>>,
    want: IpAddr,
) {
    match answer {
        Some(a) => {
            let list: Vec<String> = a.iter().map(|x| x.to_string()).collect();
            let mark = if a.contains(&want) { "ok" } else { "NOT YET" };
            println!(
                "{} {what}: dig @{server} {NAME} A  ->  {}  ({mark})",
                t(start),
                list.join(", ")
            );
        }
        None => println!("{} {what}: no answer from {server}", t(start)),
    }
}

async fn print_failover_round(store: &crate::store::Store, start: Instant) {
    let f = RoundFilter {
        service: Some("www".into()),
        outcome: Some(crate::failover::Outcome::Failover),
        limit: 1,
        ..Default::default()
    };
    let Ok(rounds) = store.call(move |s| s.list_rounds(&f)).await else {
        return;
    };
    let Some(r) = rounds.first() else {
        println!("{} no failover round recorded", t(start));
        return;
    };
    let id = r.id;
    println!(
        "{} round {id}: {} ({})",
        t(start),
        r.round.outcome,
        r.round.reason
    );
    if let Ok(Some((_, votes))) = store.call(move |s| s.round(id)).await {
        for v in votes {
            let evidence = v
                .vote_envelope
                .as_deref()
                .and_then(|raw| shared::protocol::Envelope::from_json(raw).ok())
                .and_then(|e| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(e.payload)
                        .ok()
                })
                .and_then(|p| serde_json::from_slice::<shared::protocol::Vote>(&p).ok())
                .map(|vote| match vote.evidence.error {
                    Some(e) => format!("{:?} after {} ms", e, vote.evidence.latency_us / 1000),
                    None => format!("HTTP {}", vote.evidence.status.unwrap_or(0)),
                })
                .unwrap_or_default();
            println!(
                "{}   witness {} (key {}): {} [{}] signature {}",
                t(start),
                v.witness,
                v.witness_key_id,
                v.verdict.as_deref().unwrap_or("no vote"),
                evidence,
                if v.valid {
                    "verified"
                } else {
                    v.error.as_deref().unwrap_or("invalid")
                }
            );
        }
    }
}
