//! `quorate-coordinator`: parses arguments, sets up logging and hands each subcommand to the
//! library — `run` to [`coordinator::run`] (config validated before anything binds, signals
//! and reload requests from `shared::shutdown`), the offline commands to `coordinator::cli`, `override`,
//! `failback` and `maintenance` to `coordinator::client`, `demo` to `coordinator::demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coordinator::cli;
use coordinator::client::ReadConfig;
use shared::cli_docs::Generated;

/// mimalloc rather than glibc's malloc: allocation was about a tenth of the CPU under load
/// (docs/benchmarks.md, run 6).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Validate a config file without running anything; prints every error. With --online,
    /// also prove every witness, the DNS credentials and every authoritative server with
    /// real, harmless traffic (docs/readiness.md); exit 1 on any failure.
    Check {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        online: bool,
    },
    /// Create the coordinator's signing key (mode 0600) and print the line witnesses trust.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// First run: the signing key, the admin and read-only API tokens, a self-signed TLS
    /// certificate for the API and a skeleton config in DIR (secrets mode 0600, owned by
    /// --owner); prints the public key for each witness's --coordinator, and the next steps.
    /// Never overwrites.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The name witnesses know this coordinator by (default: this host's name).
        #[arg(long)]
        name: Option<String>,
        /// The history database.
        #[arg(long, default_value = coordinator::init::DEFAULT_DATABASE)]
        database: PathBuf,
        /// Where the API listens (HTTPS, with the certificate init writes).
        #[arg(long, default_value = "127.0.0.1:8080")]
        api_listen: std::net::SocketAddr,
        /// A name or address the API's certificate is valid for, besides this host's name,
        /// localhost, 127.0.0.1, ::1 and --api-listen's address (repeatable).
        #[arg(long = "api-name")]
        api_names: Vec<String>,
        /// Who owns the secrets: the user the daemon runs as (the package's unit: quorate);
        /// default: you.
        #[arg(long)]
        owner: Option<String>,
    },
    /// For packagers: write the man pages or the bash, zsh and fish completions into DIR.
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        dir: PathBuf,
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
    /// Re-verify the history with public keys only (--db and --keys; or --config, which
    /// takes both from a coordinator config): request and vote signatures, each round's
    /// outcome from its votes; exit 1 on any problem.
    VerifyHistory {
        /// A coordinator config: the database and the keys it pins.
        #[arg(long, conflicts_with_all = ["db", "keys", "incident"])]
        config: Option<PathBuf>,
        /// The history database (read only).
        #[arg(long, requires = "keys", conflicts_with = "incident")]
        db: Option<PathBuf>,
        /// The public keys (`quorate-coordinator keys --config F` writes one); with
        /// --incident, the keys to verify the bundle with instead of its own.
        #[arg(long)]
        keys: Option<PathBuf>,
        #[arg(long, conflicts_with = "incident")]
        service: Option<String>,
        /// An incident bundle (`export-incident`): verified offline with nothing else.
        #[arg(long)]
        incident: Option<PathBuf>,
    },
    /// Write one round as a self-contained, offline-verifiable incident bundle (JSON): the
    /// round, its signed requests and votes, its DNS change, the chain links to the next
    /// signed checkpoint, that checkpoint and the public keys.
    ExportIncident {
        /// The history database (read only).
        #[arg(long)]
        db: PathBuf,
        /// The round id.
        #[arg(long)]
        round: i64,
        /// The public keys to carry (`quorate-coordinator keys --config F` writes one).
        #[arg(long)]
        keys: PathBuf,
        /// Where to write the bundle (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Decide the recorded rounds again under the policies of a proposed config (quorum, veto,
    /// fail_after, recover_after, failback, flap damping) and print every round it would have
    /// decided differently; exit 1 when there is one.
    Replay {
        /// The history database (read only).
        #[arg(long)]
        db: PathBuf,
        /// The proposed coordinator config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the public keys an auditor needs (the keys file of verify-history --keys).
    Keys {
        #[arg(long)]
        config: PathBuf,
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
    /// Fail back now (services with failback = "manual"), through the API. While a failback
    /// waits on a failing pre_failback gate, this skips the gate.
    Failback {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service: String,
    },
    /// Notification channels (docs/notifications.md).
    Notify {
        #[command(subcommand)]
        cmd: NotifyCmd,
    },
    /// Scheduled maintenance shown on the public status page, through the running
    /// coordinator's API (docs/dashboard.md).
    Maintenance {
        #[command(subcommand)]
        cmd: MaintenanceCmd,
    },
}

#[derive(Subcommand)]
enum MaintenanceCmd {
    /// Announce a maintenance window (admin token).
    Add {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        service: String,
        /// When it starts: RFC 3339 in UTC (2026-12-05T10:00:00Z); at most 1 h ago.
        #[arg(long)]
        start: String,
        /// When it ends: after start, at most 30 days later.
        #[arg(long)]
        end: String,
        /// One line, at most 120 characters.
        #[arg(long)]
        title: String,
        /// At most 2,000 characters.
        #[arg(long)]
        details: Option<String>,
    },
    /// List the announcements not yet ended (read-only token).
    List {
        #[arg(long)]
        config: PathBuf,
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
    },
    /// Remove an announcement by its id (admin token); the history keeps the event.
    Remove {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: i64,
    },
}

#[derive(Subcommand)]
enum NotifyCmd {
    /// Send a test notice through each channel (directly, not through a running daemon) and
    /// print what each receiver answered; exit 1 on any failure.
    Test {
        #[arg(long)]
        config: PathBuf,
        /// Only the channel with this name (`name`, or `webhook[0]`, `email[1]`, ...).
        #[arg(long)]
        channel: Option<String>,
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

/// Logs as `shared::logging` sets them up (filter from `QUORATE_LOG`, colour only on a
/// terminal).
fn init_tracing(format: &str, default_filter: &str) -> anyhow::Result<()> {
    let format: shared::logging::Format = format
        .parse()
        .map_err(|e| anyhow::anyhow!("--log-format: {e}"))?;
    shared::logging::init(format, default_filter).map_err(anyhow::Error::msg)
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Demo { once, api } => {
            let ok = coordinator::demo::run(coordinator::demo::DemoOptions { once, api }).await?;
            Ok(exit(ok))
        }
        Cmd::Run { config } => {
            let cfg = cli::load_config(&config)?;
            // One writer per history file, checked before anything binds or writes.
            let lock = coordinator::lock::DatabaseLock::acquire(&cfg.database)?;
            // Before anything binds: from here on SIGHUP asks for a reload, it is not fatal.
            let (shutdown, reloads) = shared::shutdown::on_signals_with_reload()?;
            let listener = std::net::TcpListener::bind(cfg.api_listen)
                .with_context(|| format!("cannot listen on {} (api.listen)", cfg.api_listen))?;
            coordinator::run(cfg, lock, listener, reloads, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { config, online } => match coordinator::config::load(&config) {
            Ok(cfg) => {
                println!("{}", cli::check_summary(&config, &cfg));
                // An API certificate that has expired or soon will: said offline too (the
                // online check counts an expired one as a failure).
                let now = std::time::SystemTime::now();
                if let Some(l) = coordinator::online::api_cert_line(cfg.api_tls.as_ref(), now)
                    .filter(|l| l.mark != coordinator::online::Mark::Ok)
                {
                    println!("{l}");
                }
                if !online {
                    return Ok(ExitCode::SUCCESS);
                }
                let lines = coordinator::online::check(&cfg).await;
                let (text, passed) = coordinator::online::render(&lines);
                print!("{text}");
                Ok(if passed {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Cmd::Keygen { out } => {
            print!("{}", cli::keygen(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init {
            dir,
            name,
            database,
            api_listen,
            api_names,
            owner,
        } => {
            let out = coordinator::init::init(&coordinator::init::InitOptions {
                dir,
                name: name.unwrap_or_else(coordinator::init::default_name),
                database,
                api_listen,
                api_names,
                owner,
            })?;
            print!("{}", out.instructions());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Generate { what, dir } => {
            generate(what, &dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ExampleConfig => {
            print!("{}", coordinator::config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { config } => {
            // No secret but the read-only token (client::ReadConfig).
            let cfg = ReadConfig::load(&config)?;
            print!("{}", cli::status(&cfg.database, &cfg.services)?);
            // Readiness is the running daemon's: ask its API, say so when it does not answer.
            let api = cfg.api_client(&cfg.read_token()?)?;
            match api.get("/v1/services").await {
                Ok(r) if r.success => {
                    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                    print!(
                        "\nreadiness (from the running coordinator):\n{}",
                        cli::readiness_lines(&v)
                    );
                }
                Ok(r) => println!("\nreadiness: the API refused: {}", r.body),
                Err(e) => println!("\nreadiness: unknown: {e:#} (is the coordinator running?)"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::History {
            config,
            service,
            limit,
        } => {
            let cfg = ReadConfig::load(&config)?;
            print!("{}", cli::history(&cfg.database, &service, limit)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::VerifyHistory {
            config,
            db,
            keys,
            service,
            incident,
        } => {
            if let Some(incident) = incident {
                let out = cli::verify_incident(&incident, keys.as_deref())?;
                print!("{}", out.text);
                return Ok(exit(out.success));
            }
            let (db, keys) = match (config, db, keys) {
                (Some(config), _, _) => {
                    let cfg = cli::load_config(&config)?;
                    let keys = coordinator::ledger::KeySet::from_config(&cfg);
                    (cfg.database, keys)
                }
                (None, Some(db), Some(keys)) => (db, coordinator::ledger::KeySet::load(&keys)?),
                _ => anyhow::bail!("verify-history: give --db and --keys, --config, or --incident"),
            };
            let out = cli::verify_history(&db, &keys, service.as_deref())?;
            print!("{}", out.text);
            Ok(exit(out.success))
        }
        Cmd::ExportIncident {
            db,
            round,
            keys,
            out,
        } => {
            let text = cli::export_incident(&db, round, &keys)?;
            match out {
                Some(path) => std::fs::write(&path, text).map_err(|e| {
                    anyhow::anyhow!("{}: cannot write the bundle: {e}", path.display())
                })?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay { db, config } => {
            let cfg = cli::load_config(&config)?;
            let out = cli::replay(&db, &config, &cfg)?;
            print!("{}", out.text);
            Ok(exit(out.success))
        }
        Cmd::Keys { config } => {
            let cfg = cli::load_config(&config)?;
            print!(
                "{}",
                coordinator::ledger::KeySet::from_config(&cfg).to_toml()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Override {
            config,
            service,
            mode,
        } => {
            let cfg = ReadConfig::load(&config)?;
            let client = cfg.api_client(&cfg.admin_token()?)?;
            let reply = client.set_override(&service, &mode).await?;
            println!("{}", reply.body);
            Ok(exit(reply.success))
        }
        Cmd::Notify {
            cmd: NotifyCmd::Test { config, channel },
        } => {
            let cfg = cli::load_config(&config)?;
            let (text, ok) =
                coordinator::notify::test_channels(&cfg.notify, channel.as_deref()).await;
            print!("{text}");
            Ok(exit(ok))
        }
        Cmd::Maintenance { cmd } => maintenance(cmd).await,
        Cmd::Failback { config, service } => {
            let cfg = ReadConfig::load(&config)?;
            let client = cfg.api_client(&cfg.admin_token()?)?;
            let reply = client.failback(&service).await?;
            println!("{}", reply.body);
            Ok(exit(reply.success))
        }
    }
}

/// `maintenance add|list|remove`, through the running coordinator's API: prints the API's
/// answer (JSON) and exits 1 unless it was a success.
async fn maintenance(cmd: MaintenanceCmd) -> anyhow::Result<ExitCode> {
    let reply = match cmd {
        MaintenanceCmd::Add {
            config,
            service,
            start,
            end,
            title,
            details,
        } => {
            let cfg = ReadConfig::load(&config)?;
            let client = cfg.api_client(&cfg.admin_token()?)?;
            let mut body = serde_json::json!({
                "service": service, "start": start, "end": end, "title": title,
            });
            if let Some(d) = details {
                body["details"] = serde_json::Value::String(d);
            }
            client.add_maintenance(body).await?
        }
        MaintenanceCmd::List { config, service } => {
            let cfg = ReadConfig::load(&config)?;
            let client = cfg.api_client(&cfg.read_token()?)?;
            let path = match service {
                Some(s) => format!("/v1/maintenance?service={}", url_component(&s)),
                None => "/v1/maintenance".to_string(),
            };
            client.get(&path).await?
        }
        MaintenanceCmd::Remove { config, id } => {
            let cfg = ReadConfig::load(&config)?;
            let client = cfg.api_client(&cfg.admin_token()?)?;
            client.remove_maintenance(id).await?
        }
    };
    println!("{}", reply.body);
    Ok(exit(reply.success))
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a query value.
fn url_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `generate man|completions DIR` (`deploy/package.sh`), from the clap definitions above.
fn generate(what: Generated, dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    shared::cli_docs::generate(Cli::command(), "quorate-coordinator", what, dir)
        .map_err(anyhow::Error::msg)
}

fn exit(success: bool) -> ExitCode {
    if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
