//! `quorate-coordinator`: parses arguments, sets up logging, loads and validates the config
//! (before anything binds), then hands over to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coordinator::store::{ListFilter, RoundFilter, Store};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "quorate-coordinator",
    version,
    about = "Quorate coordinator: DNS failover decided by a quorum of signed witness votes"
)]
struct Cli {
    /// Log format: human (default) or json.
    #[arg(long, global = true, default_value = "human")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// A self-contained failover drill on loopback (no config needed).
    Demo {
        /// Run the drill once and exit 0 only if failover and failback were both seen in DNS.
        #[arg(long)]
        once: bool,
        /// Where the API listens (default 127.0.0.1:8053).
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
    },
    /// Run the coordinator.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a config file without running anything; prints every error.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the coordinator's signing key (mode 0600) and print the line witnesses trust.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the example configuration.
    ExampleConfig,
    /// Show each service's state from the history database.
    Status {
        #[arg(long)]
        config: PathBuf,
    },
    /// A human-readable timeline of one service: rounds, events and DNS changes.
    History {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Re-verify every stored vote against the witnesses' public keys; exit 1 on any problem.
    VerifyHistory {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service: Option<String>,
    },
    /// Set a service's maintenance mode through the running coordinator's API.
    Override {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        /// auto, pin-primary or pin-backup
        #[arg(long)]
        mode: String,
    },
    /// Fail back now (services with failback = "manual"), through the API.
    Failback {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The drill prints its own timeline; logs only for warnings unless asked.
    let default_filter = if matches!(cli.cmd, Cmd::Demo { .. }) {
        "warn"
    } else {
        "info,hyper=warn,reqwest=warn,rustls=warn"
    };
    if let Err(e) = init_tracing(&cli.log_format, default_filter) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    shared::install_crypto_provider();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str, default_filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUORATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "human" => b.init(),
        "json" => b.json().init(),
        o => anyhow::bail!("--log-format: expected human or json, got {o:?}"),
    }
    Ok(())
}

fn load(path: &Path) -> anyhow::Result<coordinator::config::Config> {
    coordinator::config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Demo { once, api } => {
            let ok = coordinator::demo::run(coordinator::demo::DemoOptions { once, api }).await?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Run { config } => {
            let cfg = load(&config)?;
            let listener = std::net::TcpListener::bind(cfg.api_listen)
                .with_context(|| format!("cannot listen on {} (api.listen)", cfg.api_listen))?;
            let shutdown = CancellationToken::new();
            tokio::spawn(signals(shutdown.clone()));
            coordinator::run(cfg, listener, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { config } => match coordinator::config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} services, {} witnesses, dns backend {}, key id {})",
                    config.display(),
                    cfg.services.len(),
                    cfg.witnesses.len(),
                    cfg.dns.backend.kind(),
                    cfg.key_id
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Keygen { out } => {
            let key = shared::keys::generate();
            shared::keys::write_signing_key(&out, &key)?;
            let vk = key.verifying_key();
            println!("wrote {} (mode 0600)", out.display());
            println!("key id: {}", shared::protocol::KeyId::of(&vk));
            println!("\nAdd this to each witness's config:\n");
            println!(
                "[[coordinator]]\nname = \"coordinator\"\npublic_key = \"{}\"",
                shared::keys::format_public_key(&vk)
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ExampleConfig => {
            print!("{}", coordinator::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { config } => {
            let cfg = load(&config)?;
            let store = Store::open_read_only(&cfg.database)?;
            let states = store.all_states()?;
            for svc in &cfg.services {
                let state = states.iter().find(|(n, _, _)| n == &svc.name);
                let (label, updated) = match state {
                    Some((_, s, at)) => (
                        format!("{} (override {})", s.label(), s.override_.as_str()),
                        *at,
                    ),
                    None => ("primary-active (never switched)".to_string(), 0),
                };
                let pending = store.pending_dns_changes(&svc.name)?.len();
                println!(
                    "{:<20} {:<40} updated {}  pending dns changes: {pending}",
                    svc.name,
                    label,
                    fmt_ms(updated)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::History {
            config,
            service,
            limit,
        } => {
            let cfg = load(&config)?;
            let store = Store::open_read_only(&cfg.database)?;
            print!("{}", history(&store, &service, limit)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::VerifyHistory { config, service } => {
            let cfg = load(&config)?;
            let store = Store::open_read_only(&cfg.database)?;
            let rep =
                coordinator::verify::verify_history(&store, service.as_deref(), &cfg.witnesses)?;
            println!(
                "rounds {}  votes {}  valid and verified {}  invalid as recorded {}  no answer {}",
                rep.rounds, rep.votes, rep.valid_ok, rep.invalid_confirmed, rep.no_answer
            );
            for p in &rep.problems {
                println!("PROBLEM {p}");
            }
            Ok(if rep.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Override {
            config,
            service,
            mode,
        } => {
            let cfg = load(&config)?;
            api_post(
                &cfg,
                &format!("/v1/services/{service}/override"),
                serde_json::json!({ "mode": mode }),
            )
            .await
        }
        Cmd::Failback { config, service } => {
            let cfg = load(&config)?;
            api_post(
                &cfg,
                &format!("/v1/services/{service}/failback"),
                serde_json::json!({}),
            )
            .await
        }
    }
}

async fn api_post(
    cfg: &coordinator::config::Config,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<ExitCode> {
    let url = format!("http://{}{path}", cfg.api_listen);
    let resp = reqwest::Client::builder()
        .tls_backend_preconfigured(shared::tls::webpki_client_config())
        .build()?
        .post(&url)
        .bearer_auth(&cfg.api_token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach the coordinator's API at {url}"))?;
    let ok = resp.status().is_success();
    println!("{}", resp.text().await.unwrap_or_default());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Rounds, events and DNS changes of one service, merged oldest first.
fn history(store: &Store, service: &str, limit: u32) -> anyhow::Result<String> {
    let limit = limit.clamp(1, 10_000);
    let mut lines: Vec<(u64, i64, String)> = Vec::new();
    let rf = RoundFilter {
        service: Some(service.into()),
        limit,
        ..Default::default()
    };
    for r in store.list_rounds(&rf)? {
        let x = &r.round;
        lines.push((
            x.at_ms,
            0,
            format!(
                "round {:>6}  {:<24} trigger {:<14} votes {} down / {} up / {} invalid / {} missing  {}",
                r.id, x.outcome, x.trigger, x.votes_down, x.votes_up, x.votes_invalid, x.votes_missing, x.reason
            ),
        ));
    }
    let lf = ListFilter {
        service: Some(service.into()),
        limit,
        ..Default::default()
    };
    for e in store.list_events(&lf)? {
        lines.push((
            e.at_ms,
            1,
            format!("event         {:<24} {}", e.kind, e.message),
        ));
    }
    for c in store.list_dns_changes(&lf)? {
        lines.push((
            c.created_ms,
            2,
            format!(
                "dns change {:>3} to {:<8} {:<10} attempts {} {}",
                c.id,
                c.to_side,
                c.status,
                c.attempts,
                c.last_error.unwrap_or_default()
            ),
        ));
    }
    lines.sort();
    let mut out = String::new();
    for (t, _, l) in lines {
        out.push_str(&format!("{}  {l}\n", fmt_ms(t)));
    }
    if out.is_empty() {
        out = format!("no history for service {service:?}\n");
    }
    Ok(out)
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
