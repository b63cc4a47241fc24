//! `quorate-witness`: parses arguments, sets up logging, loads and validates the config
//! before binding anything, then calls [`witness::run`] until SIGTERM or SIGINT (signals are
//! handled by `shared::shutdown`, the same module as the coordinator's; SIGHUP is logged and
//! ignored).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shared::cli_docs::Generated;
use witness::config::LogFormat;

/// mimalloc rather than glibc's malloc: allocation was about a tenth of the CPU under load
/// (docs/benchmarks.md, run 6).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "quorate-witness",
    version,
    about = "Answers signed vote requests from trusted Quorate coordinators"
)]
struct Cli {
    /// Log format: human (default, or the config's log_format) or json.
    #[arg(long, global = true)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a signing key, a self-signed TLS certificate and a config in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        /// Host name or IP address for the certificate (repeatable).
        #[arg(long = "name")]
        names: Vec<String>,
        /// A target network and ports this witness may probe, as CIDR=PORTS,
        /// e.g. 203.0.113.10/32=80,443 (repeatable).
        #[arg(long)]
        allow: Vec<String>,
        /// A coordinator to trust, as NAME=ed25519:KEY (repeatable); `quorate-coordinator
        /// init` prints this.
        #[arg(long)]
        coordinator: Vec<String>,
        /// Who owns the private keys: the user the witness runs as (the package's unit:
        /// quorate-witness); default: you.
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
    /// Serve vote requests.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate the config (and the files it names) without running.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quorate-witness: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    shared::install_crypto_provider();
    match cli.command {
        Command::Init {
            dir,
            listen,
            names,
            allow,
            coordinator,
            owner,
        } => {
            let out = witness::init::init(&witness::init::InitOptions {
                dir,
                listen,
                names,
                allow,
                coordinators: coordinator,
                owner,
            })?;
            print!("{}", out.instructions());
            Ok(())
        }
        Command::Generate { what, dir } => generate(what, &dir),
        Command::Check { config } => {
            let cfg = witness::config::load(&config)?;
            println!(
                "{}: ok (listen {}, {} coordinator(s), {} allow rule(s), certificate sha256 {})",
                config.display(),
                cfg.listen,
                cfg.coordinators.len(),
                cfg.allow.0.len(),
                cfg.tls.cert_sha256
            );
            Ok(())
        }
        Command::Run { config } => {
            // Everything is validated before anything binds.
            let cfg = witness::config::load(&config)?;
            init_tracing(cli.log_format.unwrap_or(cfg.log_format)).map_err(anyhow::Error::msg)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(cfg))
        }
    }
}

/// `generate man|completions DIR` (`deploy/package.sh`), from the clap definitions above.
fn generate(what: Generated, dir: &std::path::Path) -> anyhow::Result<()> {
    use clap::CommandFactory as _;
    shared::cli_docs::generate(Cli::command(), "quorate-witness", what, dir)
        .map_err(anyhow::Error::msg)
}

async fn serve(cfg: witness::Config) -> anyhow::Result<()> {
    // Before anything binds: from here on SIGHUP is logged, not fatal.
    let shutdown = shared::shutdown::on_signals()?;
    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    witness::run(cfg, listener, shutdown).await
}

/// Logs as `shared::logging` sets them up (filter from `QUORATE_LOG`, colour only on a
/// terminal).
fn init_tracing(format: LogFormat) -> Result<(), String> {
    shared::logging::init(format, "info")
}
