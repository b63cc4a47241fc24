//! Helpers shared by the coordinator's integration tests: a lab folder with the coordinator's
//! key and API token (mode 0600), a config written as TOML and loaded through the real
//! `config::load` → `validate` path, in-process HTTPS witnesses, stand-in web servers that can
//! be stopped (connections refused) and restarted on the same address, and polling with a
//! deadline.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

/// Polls `f` every 25 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A temporary folder holding the coordinator's key and API token.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
    pub token: String,
}

impl Lab {
    pub fn new() -> Lab {
        shared::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let key = shared::keys::generate();
        shared::keys::write_signing_key(&dir.path().join("coordinator.key"), &key).unwrap();
        let token = format!(
            "test-token-{}",
            hex::encode(&key.verifying_key().as_bytes()[..8])
        );
        shared::keys::write_private_file(&dir.path().join("api.token"), token.as_bytes()).unwrap();
        Lab { dir, key, token }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` as `coordinator.toml` and loads it the way `quorate-coordinator run` does.
    pub fn config(&self, text: &str) -> coordinator::config::Config {
        let path = self.write_config(text);
        match coordinator::config::load(&path) {
            Ok(c) => c,
            Err(e) => panic!("test config does not validate:\n{e}\n---\n{text}"),
        }
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path().join("coordinator.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The knobs of the one-service config the tests use; everything else is fixed.
pub struct Opts {
    pub api_listen: String,
    /// `[[witness]]` blocks.
    pub witnesses: Vec<String>,
    /// The body of the `[dns]` table.
    pub dns: String,
    pub service: String,
    pub primary: IpAddr,
    pub backup: IpAddr,
    pub port: u16,
    /// `http` or `https`.
    pub probe_kind: String,
    pub interval: String,
    pub fail_after: u32,
    pub recover_after: u32,
    pub quorum: u32,
    pub probe_ca_file: Option<PathBuf>,
    pub probe_timeout: String,
    /// `[history] checkpoint_every`; each checkpoint also closes the spells of identical
    /// rounds (`store::spells`), so a test that counts them sets it short.
    pub checkpoint_every: Option<String>,
}

impl Opts {
    pub fn new(witnesses: Vec<String>, primary: IpAddr, backup: IpAddr, port: u16) -> Opts {
        Opts {
            api_listen: "127.0.0.1:0".into(),
            witnesses,
            dns: "type = \"dryrun\"\n".into(),
            service: "web".into(),
            primary,
            backup,
            port,
            probe_kind: "http".into(),
            interval: "300ms".into(),
            fail_after: 2,
            recover_after: 5,
            quorum: 2,
            probe_ca_file: None,
            probe_timeout: "250ms".into(),
            checkpoint_every: None,
        }
    }

    pub fn toml(&self) -> String {
        let ca = match &self.probe_ca_file {
            Some(p) => format!("probe_ca_file = {:?}\n", p.display().to_string()),
            None => String::new(),
        };
        format!(
            r#"[coordinator]
key_file = "coordinator.key"
database = "history.sqlite"
interval = "{interval}"
{ca}
[api]
listen = "{api}"
token_file = "api.token"

{witnesses}
[dns]
{dns}
[[service]]
name = "{service}"
zone = "example.test"
names = ["www", "@"]
ttl = 30
primary = {{ addresses = ["{primary}"] }}
backup = {{ addresses = ["{backup}"] }}
probe = {{ kind = "{kind}", port = {port}, path = "/health", expect_status = [200], timeout = "{probe_timeout}" }}
fail_after = {fail_after}
recover_after = {recover_after}
quorum = {quorum}
{history}"#,
            interval = self.interval,
            api = self.api_listen,
            witnesses = self.witnesses.join("\n"),
            dns = self.dns,
            service = self.service,
            primary = self.primary,
            backup = self.backup,
            kind = self.probe_kind,
            port = self.port,
            fail_after = self.fail_after,
            recover_after = self.recover_after,
            quorum = self.quorum,
            probe_timeout = self.probe_timeout,
            history = self
                .checkpoint_every
                .as_ref()
                .map(|t| format!("\n[history]\ncheckpoint_every = \"{t}\"\n"))
                .unwrap_or_default(),
        )
    }
}

/// The `[[witness]]` block for a witness, with a 2 s request timeout (a loaded test machine
/// must not turn slow answers into missing votes).
pub fn witness_block(
    name: &str,
    url: &str,
    key: &VerifyingKey,
    cert_sha256: Option<&str>,
) -> String {
    witness_block_with(name, url, key, cert_sha256, Some("2s"))
}

/// The `[[witness]]` block; `timeout: None` leaves the request timeout to its default.
pub fn witness_block_with(
    name: &str,
    url: &str,
    key: &VerifyingKey,
    cert_sha256: Option<&str>,
    timeout: Option<&str>,
) -> String {
    let timeout = timeout
        .map(|t| format!("timeout = \"{t}\"\n"))
        .unwrap_or_default();
    let pin = cert_sha256
        .map(|c| format!("cert_sha256 = \"{c}\"\n"))
        .unwrap_or_default();
    format!(
        "[[witness]]\nname = \"{name}\"\nurl = \"{url}\"\npublic_key = \"{}\"\n{timeout}{pin}",
        shared::keys::format_public_key(key)
    )
}

/// A real witness (the `witness` crate's HTTPS server) running in this process on
/// 127.0.0.1, with its own key and self-signed certificate.
pub struct TestWitness {
    pub name: String,
    pub url: String,
    pub key: SigningKey,
    pub cert_sha256: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Three witnesses `w1..w3` trusting the lab's coordinator; `roots[i]` are wi's extra CA roots.
pub fn start_witnesses(
    lab: &Lab,
    port: u16,
    roots: [Vec<rustls::pki_types::CertificateDer<'static>>; 3],
) -> Vec<TestWitness> {
    roots
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            TestWitness::start(&format!("w{}", i + 1), lab.key.verifying_key(), &[port], r)
        })
        .collect()
}

impl TestWitness {
    /// How many vote requests this witness answered with `outcome` (`up`, `down` or a refusal
    /// code such as `replayed`), from its own `/metrics` over its pinned TLS.
    pub async fn requests(&self, outcome: &str) -> f64 {
        let pin = shared::tls::parse_fingerprint(&self.cert_sha256).unwrap();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(shared::tls::pinned_client_config(Some(pin)))
            .build()
            .unwrap();
        let text = http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let want = format!("quorate_witness_vote_requests_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&want))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// Trusts `coordinator`, allows probes of 127.0.0.0/8 on `ports`; `extra_roots` are CA
    /// certificates its HTTPS probes trust.
    pub fn start(
        name: &str,
        coordinator: VerifyingKey,
        ports: &[u16],
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> TestWitness {
        shared::install_crypto_provider();
        let key = shared::keys::generate();
        let (cert, tls_key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        let mut config = witness::Config::from_parts(
            key.clone(),
            vec![witness::TrustedCoordinator::new(
                "test-coordinator",
                coordinator,
            )],
            witness::Allowlist(vec![witness::AllowRule {
                net: witness::config::parse_cidr("127.0.0.0/8").unwrap(),
                ports: ports.to_vec(),
            }]),
            cert,
            tls_key,
        )
        .unwrap();
        config.extra_roots = extra_roots;
        let cert_sha256 = config.tls.cert_sha256.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(witness::run(config, listener, stop.clone()));
        TestWitness {
            name: name.into(),
            url: format!("https://{addr}"),
            key,
            cert_sha256,
            stop,
            task: Some(task),
        }
    }

    /// The block without a request timeout (the coordinator's default applies).
    pub fn block_default_timeout(&self) -> String {
        witness_block_with(
            &self.name,
            &self.url,
            &self.key.verifying_key(),
            Some(&self.cert_sha256),
            None,
        )
    }

    pub fn block(&self) -> String {
        witness_block(
            &self.name,
            &self.url,
            &self.key.verifying_key(),
            Some(&self.cert_sha256),
        )
    }

    /// Stops the witness; afterwards its port refuses connections.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), t)
                .await
                .expect("witness stops within 15 s")
                .unwrap()
                .unwrap();
        }
        let addr: SocketAddr = self.url.trim_start_matches("https://").parse().unwrap();
        assert_refused(addr).await;
    }
}

impl Drop for TestWitness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Panics unless TCP connects to `addr` are refused within 5 s. A server's task can end a
/// moment before its listening socket is closed (a connect then gets a reset, or is
/// accepted), so this polls until the refusal, or the deadline.
pub async fn assert_refused(addr: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = tokio::net::TcpStream::connect(addr).await;
        match got {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            other if tokio::time::Instant::now() >= deadline => {
                panic!("expected {addr} to refuse connections, got {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A stand-in web site (the primary or the backup): answers `GET /health` with 200 over HTTP
/// or HTTPS. `stop` really closes the port (connections are refused); `start` binds the same
/// address again.
pub struct Site {
    pub addr: SocketAddr,
    tls: Option<(String, String)>,
    running: Option<(axum_server::Handle<SocketAddr>, tokio::task::JoinHandle<()>)>,
}

impl Site {
    pub fn http(addr: SocketAddr) -> Site {
        Site {
            addr,
            tls: None,
            running: None,
        }
    }

    /// HTTPS with this certificate and key (PEM).
    pub fn https(addr: SocketAddr, cert_pem: String, key_pem: String) -> Site {
        Site {
            addr,
            tls: Some((cert_pem, key_pem)),
            running: None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    pub async fn start(&mut self) {
        assert!(self.running.is_none(), "site {} already running", self.addr);
        // Rust's listener sets SO_REUSEADDR, so the same port binds again right after a stop.
        let listener = std::net::TcpListener::bind(self.addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok\n" }));
        let handle = axum_server::Handle::<SocketAddr>::new();
        let h = handle.clone();
        let task = match &self.tls {
            None => {
                let server = axum_server::from_tcp(listener).unwrap().handle(h);
                tokio::spawn(async move {
                    let _ = server.serve(app.into_make_service()).await;
                })
            }
            Some((cert, key)) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                    cert.clone().into_bytes(),
                    key.clone().into_bytes(),
                )
                .await
                .unwrap();
                let server = axum_server::tls_rustls::from_tcp_rustls(listener, config)
                    .unwrap()
                    .handle(h);
                tokio::spawn(async move {
                    let _ = server.serve(app.into_make_service()).await;
                })
            }
        };
        self.running = Some((handle, task));
    }

    /// Closes the listener and every connection; afterwards connects are refused.
    pub async fn stop(&mut self) {
        if let Some((handle, task)) = self.running.take() {
            handle.shutdown();
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("site stops within 10 s")
                .unwrap();
        }
        assert_refused(self.addr).await;
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some((handle, _)) = &self.running {
            handle.shutdown();
        }
    }
}

/// Two loopback addresses (127.0.0.2 for the primary, 127.0.0.3 for the backup) that share
/// a free port: the probe table names one port for both sides.
/// Never the same port twice in one test binary: the port is released before the sites bind
/// it, so two tests running at once could otherwise be handed the same one (and a stopped
/// primary would still "answer" through the other test's site).
pub fn two_sites_port() -> (SocketAddr, SocketAddr) {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let p_ip: IpAddr = "127.0.0.2".parse().unwrap();
    let b_ip: IpAddr = "127.0.0.3".parse().unwrap();
    for _ in 0..50 {
        let l = std::net::TcpListener::bind((p_ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind((b_ip, port)).is_ok() {
            given.push(port);
            return (SocketAddr::new(p_ip, port), SocketAddr::new(b_ip, port));
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3 after 50 tries");
}

/// A free port on 127.0.0.1 (bound and released; the caller binds it again soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hung server: accepts TCP connections and never answers (like a primary whose process is
/// wedged, or a host behind a path that drops packets). Probes of it end by timeout, not by a
/// refusal. Holds at most 256 connections; everything closes when dropped.
pub struct Tarpit {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Tarpit {
    pub async fn start(addr: SocketAddr) -> Tarpit {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while held.len() < 256 {
                match listener.accept().await {
                    Ok((tcp, _)) => held.push(tcp),
                    Err(_) => return,
                }
            }
            std::future::pending::<()>().await;
        });
        Tarpit { addr, task }
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The real `quorate-coordinator run --config config`, logging at info to `log`.
pub fn run_binary(config: &Path, log: PathBuf) -> testkit::Daemon {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"));
    command
        .args(["run", "--config"])
        .arg(config)
        .env("QUORATE_LOG", "info");
    testkit::Daemon::spawn("coordinator", command, log)
}

/// `GET {api}{path}` with the bearer token: the JSON body when it answers 200.
pub async fn api_get(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    path: &str,
) -> Option<serde_json::Value> {
    let resp = http
        .get(format!("{api}{path}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.json().await.ok()
}

/// What the real-binary tests start before a coordinator: a primary and a backup web site on
/// one port, three witnesses that may probe it, and the options of a config asking them, its API
/// on a free port. Keep it alive as long as the test runs (dropping it stops the sites).
pub struct BinarySetup {
    pub primary: Site,
    pub backup: Site,
    pub witnesses: Vec<TestWitness>,
    pub opts: Opts,
    pub api_port: u16,
}

pub async fn binary_setup(lab: &Lab) -> BinarySetup {
    let (p_addr, b_addr) = two_sites_port();
    let mut primary = Site::http(p_addr);
    let mut backup = Site::http(b_addr);
    primary.start().await;
    backup.start().await;
    let witnesses = start_witnesses(lab, p_addr.port(), [vec![], vec![], vec![]]);
    let api_port = free_port();
    let mut opts = Opts::new(
        witnesses.iter().map(|w| w.block()).collect(),
        p_addr.ip(),
        b_addr.ip(),
        p_addr.port(),
    );
    opts.api_listen = format!("127.0.0.1:{api_port}");
    BinarySetup {
        primary,
        backup,
        witnesses,
        opts,
        api_port,
    }
}
