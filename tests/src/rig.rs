//! The readiness rig: every real process of one coordinator's world on loopback, with the
//! faults a readiness test needs as verbs (issue 12). No namespaces and no root: a real BIND
//! serving `example.test.` with TSIG key `quorate` (hmac-sha256), primary and backup web
//! stand-ins on 127.0.0.2 and 127.0.0.3 (one port, so one probe spec fits both), N real
//! `quorate-witness` processes, the real `quorate-coordinator` with a generated config, a
//! webhook sink recording every JSON body it receives, and the API with a token.
//!
//! ```text
//!   Rig::start(RigOptions)            all in one temp dir (printed at start)
//!   ├── BIND   127.0.0.1:P            www 60 A 127.0.0.2, NS ns1 (glue 127.0.0.1)
//!   ├── sites  127.0.0.2:S, .3:S      HTTP 200 on every path, stoppable
//!   ├── w1..wN 127.0.0.1:Wi           quorate-witness run, under faketime
//!   ├── sink   127.0.0.1:K            [[notify.webhook]] url_file → here
//!   └── coordinator API 127.0.0.1:A   quorate-coordinator run, under faketime
//! ```
//!
//! Lifetime: dropping the rig (also while panicking) kills and reaps every process it started
//! (coordinator first), stops the in-test servers, stops BIND and removes the temp dir. On a
//! panic the tails of the coordinator's and witnesses' logs are printed first; `RIG_KEEP=1`
//! keeps the folder. Every wait is a poll with a deadline ([`crate::lab::poll_until`]).
//!
//! Witnesses are numbered from 1 (`w1` is `stop_witness(1)`), like the lab's hosts.
//!
//! ## Clocks (libfaketime)
//!
//! Each witness and the coordinator (and every CLI run of `quorate-coordinator` through the
//! rig: `check`, `check --online`, a second coordinator) run with libfaketime preloaded
//! directly (`LD_PRELOAD=…/faketime/libfaketimeMT.so.1`, Debian package `faketime`), not
//! through the `faketime` wrapper, so the PID the rig holds is the daemon itself and signals
//! reach it. Environment: `FAKETIME_TIMESTAMP_FILE=<dir>/clock-<proc>` (one file per process,
//! initially `+0`), `FAKETIME_NO_CACHE=1` (the file is read again on every clock call, so a
//! change applies to a *running* process at once), `DONT_FAKE_MONOTONIC=1` (only the wall
//! clock moves; timers, timeouts and tokio's `Instant`s keep running normally).
//! [`Rig::shift_clock`] adds seconds to the offset by replacing the file atomically (write
//! and rename: a half-written file is never read). A restarted witness reads the same file,
//! so it keeps its offset. Measured with libfaketime 0.9.10 (Debian 12): a +600 s shift of a
//! running witness shows in its HTTP `Date` header, and of the running coordinator in its
//! API's `Date` header and in the `last_tick_ms` of its next rounds (the smoke test checks
//! both). Known trap of that version: with `DONT_FAKE_MONOTONIC=1`, an *absolute*
//! `clock_nanosleep` on the monotonic clock fails with EINVAL (Python's `time.sleep` does
//! that); the Rust binaries sleep through tokio (epoll timeouts) and are not affected.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bind::Bind;
use crate::lab::poll_until;
use crate::net::{free_port, random_secret};

/// The zone BIND serves (absolute).
pub const ZONE: &str = "example.test.";
/// The TSIG key's name (hmac-sha256).
pub const TSIG_KEY: &str = "quorate";
/// The one service.
pub const SERVICE: &str = "www";
/// The primary stand-in's address.
pub const PRIMARY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The backup stand-in's address.
pub const BACKUP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// How long a process may take to start answering (two cores, other builds running).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// How long one CLI run (`check`, `check --online`, …) may take.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);
/// Timeout of one request the rig makes itself (API, sites).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request or response the in-test HTTP code reads (the webhook bodies are small).
const MAX_HTTP_BYTES: usize = 1 << 20;

/// A process whose clock [`Rig::shift_clock`] moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proc {
    /// Witness `i`, from 1.
    Witness(usize),
    Coordinator,
}

/// The primary or the backup stand-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    Primary,
    Backup,
}

/// A change to the coordinator's config, applied before it is first written.
pub type ConfigEdit = Box<dyn FnOnce(&mut CoordinatorConfig)>;
/// A change to witness `i`'s setup (from 1), applied before it first starts.
pub type WitnessEdit = Box<dyn FnMut(usize, &mut WitnessSetup)>;

/// What to build. `Default`: 2 witnesses, interval 500 ms, the coordinator started.
pub struct RigOptions {
    /// Number of witnesses (`w1..wN`).
    pub witnesses: usize,
    /// The coordinator's `[coordinator] interval`.
    pub interval: String,
    /// Start the coordinator daemon in [`Rig::start`] (false: only the config is written,
    /// e.g. for tests of `check --online` alone; [`Rig::start_coordinator`] starts it later).
    pub start_coordinator: bool,
    /// Appended verbatim to the coordinator's config (e.g. a `[readiness]` table).
    pub extra_toml: String,
    /// Changes the generated coordinator config before it is written the first time.
    pub edit_config: Option<ConfigEdit>,
    /// Changes witness `i`'s setup (from 1) before it first starts.
    pub edit_witness: Option<WitnessEdit>,
    /// `QUORATE_LOG` for the coordinator.
    pub coordinator_log_filter: String,
}

impl Default for RigOptions {
    fn default() -> RigOptions {
        RigOptions {
            witnesses: 2,
            interval: "500ms".into(),
            start_coordinator: true,
            extra_toml: String::new(),
            edit_config: None,
            edit_witness: None,
            coordinator_log_filter: "info,coordinator=debug,hyper=warn,reqwest=warn,rustls=warn"
                .into(),
        }
    }
}

impl fmt::Debug for RigOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RigOptions")
            .field("witnesses", &self.witnesses)
            .field("interval", &self.interval)
            .field("start_coordinator", &self.start_coordinator)
            .field("extra_toml", &self.extra_toml)
            .finish_non_exhaustive()
    }
}

impl RigOptions {
    /// Sets [`RigOptions::edit_config`].
    pub fn with_config(mut self, edit: impl FnOnce(&mut CoordinatorConfig) + 'static) -> Self {
        self.edit_config = Some(Box::new(edit));
        self
    }

    /// Sets [`RigOptions::edit_witness`].
    pub fn with_witness(mut self, edit: impl FnMut(usize, &mut WitnessSetup) + 'static) -> Self {
        self.edit_witness = Some(Box::new(edit));
        self
    }
}

/// One `[[witness]]` entry of the coordinator's config.
#[derive(Clone, Debug)]
pub struct WitnessEntry {
    pub name: String,
    pub url: String,
    /// The pinned signing key (`ed25519:…`).
    pub public_key: String,
    /// The pinned TLS certificate; `None` leaves the key out.
    pub cert_sha256: Option<String>,
    /// `timeout = "…"`; `None` leaves the key out.
    pub timeout: Option<String>,
    /// More lines inside the block.
    pub extra: String,
}

impl WitnessEntry {
    fn render(&self) -> String {
        let mut s = format!(
            "[[witness]]\nname = {}\nurl = {}\npublic_key = {}\n",
            q(&self.name),
            q(&self.url),
            q(&self.public_key)
        );
        if let Some(c) = &self.cert_sha256 {
            s.push_str(&format!("cert_sha256 = {}\n", q(c)));
        }
        if let Some(t) = &self.timeout {
            s.push_str(&format!("timeout = {}\n", q(t)));
        }
        s.push_str(&self.extra);
        s
    }
}

/// The coordinator's config, part by part; [`CoordinatorConfig::render`] is the file. Bodies
/// are TOML lines without their table header; paths are relative to the config's folder.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Body of `[coordinator]`.
    pub coordinator: String,
    /// Body of `[api]`.
    pub api: String,
    pub witnesses: Vec<WitnessEntry>,
    /// Body of `[dns]`.
    pub dns: String,
    /// Body of `[dns.verify]`; empty leaves the table out.
    pub dns_verify: String,
    /// Whole `[[notify.webhook]]` blocks, headers included; empty: no webhook.
    pub notify: String,
    /// Whole `[[service]]` blocks, headers included.
    pub services: Vec<String>,
    /// Appended last, verbatim (`RigOptions::extra_toml` lands here).
    pub extra: String,
}

impl CoordinatorConfig {
    /// The config file's text.
    pub fn render(&self) -> String {
        let mut s = String::from("# Written by the readiness rig (tests/src/rig.rs).\n");
        s.push_str(&format!("[coordinator]\n{}\n", self.coordinator));
        s.push_str(&format!("[api]\n{}\n", self.api));
        for w in &self.witnesses {
            s.push_str(&w.render());
            s.push('\n');
        }
        s.push_str(&format!("[dns]\n{}\n", self.dns));
        if !self.dns_verify.is_empty() {
            s.push_str(&format!("[dns.verify]\n{}\n", self.dns_verify));
        }
        if !self.notify.is_empty() {
            s.push_str(&self.notify);
            s.push('\n');
        }
        for svc in &self.services {
            s.push_str(svc);
            s.push('\n');
        }
        s.push_str(&self.extra);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }
}

/// How one witness is configured. The rig writes `witness.toml` from it at every (re)start;
/// key and certificate files come from `quorate-witness init` and stay unless regenerated.
#[derive(Clone, Debug)]
pub struct WitnessSetup {
    /// `[[allow]]` entries: CIDR and ports.
    pub allow: Vec<(String, Vec<u16>)>,
    /// `[[coordinator]]` entries: name and `ed25519:…` key.
    pub coordinators: Vec<(String, String)>,
    /// `max_skew`; `None` leaves the witness's default (30 s).
    pub max_skew: Option<String>,
    /// More top-level lines (before the tables).
    pub extra_toml: String,
    /// At the next (re)start: a new signing key (the coordinator's pin no longer matches).
    pub regenerate_signing_key: bool,
    /// At the next (re)start: a new self-signed TLS certificate (the pin no longer matches).
    pub regenerate_tls_cert: bool,
    /// A key nobody uses, trusted instead of the coordinator by [`Self::distrust_coordinator`]
    /// (a witness must trust at least one coordinator to start).
    stranger_key: String,
}

impl WitnessSetup {
    /// Removes the primary (127.0.0.2) from the allowlist; the backup stays.
    pub fn drop_primary_from_allowlist(&mut self) {
        let primary = PRIMARY.to_string();
        self.allow
            .retain(|(cidr, _)| cidr.split('/').next() != Some(primary.as_str()));
    }

    /// Trusts only an unrelated coordinator key: the real coordinator's requests are refused.
    pub fn distrust_coordinator(&mut self) {
        self.coordinators = vec![("stranger".into(), self.stranger_key.clone())];
    }

    /// A new signing key at the next (re)start.
    pub fn regenerate_signing_key(&mut self) {
        self.regenerate_signing_key = true;
    }

    /// A new TLS certificate at the next (re)start.
    pub fn regenerate_tls_cert(&mut self) {
        self.regenerate_tls_cert = true;
    }

    fn render(&self, listen: SocketAddr) -> String {
        let mut s = format!(
            "# Written by the readiness rig (tests/src/rig.rs).\nlisten = {}\nkey_file = \"witness.key\"\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n",
            q(&listen.to_string())
        );
        if let Some(m) = &self.max_skew {
            s.push_str(&format!("max_skew = {}\n", q(m)));
        }
        s.push_str(&self.extra_toml);
        if !s.ends_with('\n') {
            s.push('\n');
        }
        for (name, key) in &self.coordinators {
            s.push_str(&format!(
                "\n[[coordinator]]\nname = {}\npublic_key = {}\n",
                q(name),
                q(key)
            ));
        }
        for (cidr, ports) in &self.allow {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            s.push_str(&format!(
                "\n[[allow]]\ncidr = {}\nports = [{}]\n",
                q(cidr),
                ports.join(", ")
            ));
        }
        s
    }
}

/// What the rig knows about one witness.
#[derive(Clone, Debug)]
pub struct WitnessInfo {
    pub name: String,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    pub url: String,
    /// The key it signs with now (after a regeneration, no longer the pinned one).
    pub public_key: String,
    /// Its certificate's SHA-256 now.
    pub cert_sha256: String,
    pub log: PathBuf,
    pub clock_file: PathBuf,
}

/// A process the rig started: killed and reaped on drop.
pub struct Spawned {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl fmt::Debug for Spawned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawned")
            .field("name", &self.name)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Spawned {
    /// Its output (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (bounded) for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let name = self.name.clone();
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| format!("{name} was already killed"))?;
        poll_until(
            &format!("{name} to exit"),
            timeout,
            Duration::from_millis(20),
            |last| match child.try_wait() {
                Ok(Some(s)) => Some(s),
                Ok(None) => {
                    *last = "still running".into();
                    None
                }
                Err(e) => {
                    *last = e.to_string();
                    None
                }
            },
        )
    }

    /// Sends `signal` (e.g. `HUP`, `TERM`) while the process is ours and not reaped.
    pub fn signal(&mut self, signal: &str) {
        assert!(self.is_running(), "{} is not running", self.name);
        let pid = self.pid().expect("a running process has a pid");
        // Not reaped yet (checked above), so the PID is still this process.
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid} ({}) failed", self.name);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let v: Vec<&str> = log.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

struct WitnessSlot {
    setup: WitnessSetup,
    info: WitnessInfo,
    proc: Option<Spawned>,
}

/// The running rig. Dropping it tears everything down.
pub struct Rig {
    dir: PathBuf,
    keep: bool,
    started: Instant,
    bin_dir: PathBuf,
    faketime_lib: PathBuf,
    bind: Bind,
    sites: [HttpServer; 2],
    site_port: u16,
    sink: HttpServer,
    notices: Arc<Mutex<Vec<serde_json::Value>>>,
    witnesses: Vec<WitnessSlot>,
    config: CoordinatorConfig,
    api: SocketAddr,
    token: String,
    coordinator: Option<Spawned>,
    coordinator_public_key: String,
    tsig_secret: String,
    opts_log_filter: String,
    clock_offsets: Vec<(PathBuf, i64)>,
    /// Numbers the output files of CLI runs.
    cli_runs: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Rig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rig")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn write_file(path: &Path, text: &str, mode: u32) {
    let tmp = path.with_extension("rig-tmp");
    let _ = std::fs::remove_file(&tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `key = "value"` from the TOML-ish text a CLI prints.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

/// Where cargo put the binaries: the directory above the test executable's `deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe
        .parent()
        .expect("test executable has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for bin in ["quorate-coordinator", "quorate-witness"] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: build the binaries first with `cargo build --bins` (same profile as the tests)",
            dir.join(bin).display()
        );
    }
    dir
}

/// libfaketime's thread-safe library (Debian package `faketime`).
fn faketime_lib() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        for e in rd.flatten() {
            candidates.push(e.path().join("faketime/libfaketimeMT.so.1"));
        }
    }
    candidates.push(PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1"));
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("libfaketimeMT.so.1 not found: install the Debian package `faketime`")
        })
}

/// A port free on both 127.0.0.2 and 127.0.0.3.
fn two_sites_port() -> u16 {
    for _ in 0..50 {
        let Ok(l) = TcpListener::bind((PRIMARY, 0)) else {
            continue;
        };
        let Ok(port) = l.local_addr().map(|a| a.port()) else {
            continue;
        };
        if TcpListener::bind((BACKUP, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3 after 50 tries");
}

impl Rig {
    /// Builds and starts everything; returns once BIND serves the zone, both sites answer,
    /// every witness accepts connections and (unless `start_coordinator` is false) the
    /// coordinator's API answers `/healthz`. It does not wait for a round: see
    /// [`Rig::wait_round`].
    pub fn start(mut opts: RigOptions) -> Rig {
        assert!(opts.witnesses >= 1, "a rig needs at least one witness");
        let bin_dir = bin_dir();
        let faketime_lib = faketime_lib();
        // DNS.
        let tsig_secret = random_secret(32);
        let records = format!("www 60 IN A {PRIMARY}\n");
        let bind = Bind::start(ZONE, &records, TSIG_KEY, &tsig_secret, "hmac-sha256");

        // The two sites and the webhook sink.
        let site_port = two_sites_port();
        let sites = [
            HttpServer::start(
                SocketAddr::from((PRIMARY, site_port)),
                site_handler("primary"),
            ),
            HttpServer::start(
                SocketAddr::from((BACKUP, site_port)),
                site_handler("backup"),
            ),
        ];
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = HttpServer::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            sink_handler(notices.clone()),
        );

        // From here on the rig owns the folder: a panic below removes it (in drop).
        let dir = tempfile::Builder::new()
            .prefix("quorate-rig-")
            .tempdir()
            .expect("rig temp dir")
            .keep();
        eprintln!("[rig] work directory and logs: {}", dir.display());
        let keep = std::env::var_os("RIG_KEEP").is_some();
        let mut rig = Rig {
            dir: dir.clone(),
            keep,
            started: Instant::now(),
            bin_dir,
            faketime_lib,
            bind,
            sites,
            site_port,
            sink,
            notices,
            witnesses: Vec::new(),
            config: CoordinatorConfig {
                coordinator: String::new(),
                api: String::new(),
                witnesses: Vec::new(),
                dns: String::new(),
                dns_verify: String::new(),
                notify: String::new(),
                services: Vec::new(),
                extra: String::new(),
            },
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            coordinator: None,
            coordinator_public_key: String::new(),
            tsig_secret,
            opts_log_filter: opts.coordinator_log_filter.clone(),
            clock_offsets: Vec::new(),
            cli_runs: std::sync::atomic::AtomicU64::new(0),
        };

        // The coordinator's key and a stranger's key (for a witness that distrusts it).
        let cdir = rig.coordinator_dir();
        std::fs::create_dir_all(&cdir).expect("coordinator dir");
        let out = run_ok(
            Command::new(rig.bin("quorate-coordinator"))
                .args(["keygen", "--out"])
                .arg(cdir.join("coordinator.key")),
        );
        rig.coordinator_public_key = field(&out, "public_key");
        let out = run_ok(
            Command::new(rig.bin("quorate-coordinator"))
                .args(["keygen", "--out"])
                .arg(dir.join("stranger.key")),
        );
        let stranger_key = field(&out, "public_key");

        // Witnesses: init makes key and certificate; the rig writes the config.
        for i in 1..=opts.witnesses {
            let name = format!("w{i}");
            let wdir = dir.join(&name);
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let out = run_ok(
                Command::new(rig.bin("quorate-witness"))
                    .arg("init")
                    .arg("--dir")
                    .arg(&wdir)
                    .args(["--listen", &addr.to_string()]),
            );
            let mut setup = WitnessSetup {
                allow: vec![
                    (format!("{PRIMARY}/32"), vec![site_port]),
                    (format!("{BACKUP}/32"), vec![site_port]),
                ],
                coordinators: vec![("coordinator".into(), rig.coordinator_public_key.clone())],
                max_skew: None,
                extra_toml: String::new(),
                regenerate_signing_key: false,
                regenerate_tls_cert: false,
                stranger_key: stranger_key.clone(),
            };
            if let Some(edit) = opts.edit_witness.as_mut() {
                edit(i, &mut setup);
            }
            let clock_file = dir.join(format!("clock-{name}"));
            write_file(&clock_file, "+0\n", 0o644);
            rig.clock_offsets.push((clock_file.clone(), 0));
            rig.witnesses.push(WitnessSlot {
                setup,
                info: WitnessInfo {
                    name: name.clone(),
                    log: dir.join(format!("{name}.log")),
                    dir: wdir,
                    addr,
                    url: format!("https://{addr}"),
                    public_key: field(&out, "public_key"),
                    cert_sha256: field(&out, "cert_sha256"),
                    clock_file,
                },
                proc: None,
            });
        }
        let coord_clock = rig.coordinator_clock_file();
        write_file(&coord_clock, "+0\n", 0o644);
        rig.clock_offsets.push((coord_clock, 0));

        // The coordinator's files and config.
        rig.token = random_secret(24);
        write_file(&cdir.join("api.token"), &format!("{}\n", rig.token), 0o600);
        write_file(
            &cdir.join("tsig.secret"),
            &format!("{}\n", rig.tsig_secret),
            0o600,
        );
        write_file(
            &cdir.join("webhook.url"),
            &format!("http://{}/hook\n", rig.sink.addr),
            0o600,
        );
        rig.api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        rig.config = rig.default_config(&opts);
        if let Some(edit) = opts.edit_config.take() {
            edit(&mut rig.config);
        }
        rig.write_config();

        for i in 1..=opts.witnesses {
            rig.start_witness(i);
        }
        if opts.start_coordinator {
            rig.start_coordinator();
        }
        rig.log(&format!(
            "rig up in {:.2}s",
            rig.started.elapsed().as_secs_f64()
        ));
        rig
    }

    fn default_config(&self, opts: &RigOptions) -> CoordinatorConfig {
        let bind = self.bind.addr();
        CoordinatorConfig {
            coordinator: format!(
                "key_file = \"coordinator.key\"\ndatabase = \"history.sqlite\"\ninterval = {}\nretention = \"1d\"\n",
                q(&opts.interval)
            ),
            api: format!(
                "listen = {}\ntoken_file = \"api.token\"\n",
                q(&self.api.to_string())
            ),
            witnesses: self
                .witnesses
                .iter()
                .map(|w| WitnessEntry {
                    name: w.info.name.clone(),
                    url: w.info.url.clone(),
                    public_key: w.info.public_key.clone(),
                    cert_sha256: Some(w.info.cert_sha256.clone()),
                    timeout: Some("2s".into()),
                    extra: String::new(),
                })
                .collect(),
            dns: format!(
                "type = \"rfc2136\"\nserver = {}\nzone = {}\ntsig_key_name = {}\ntsig_algorithm = \"hmac-sha256\"\ntsig_secret_file = \"tsig.secret\"\ntimeout = \"2s\"\n",
                q(&bind.to_string()),
                q(ZONE),
                q(TSIG_KEY)
            ),
            // The zone's NS (ns1, glue 127.0.0.1) is discovered by readiness and asked on
            // BIND's port, not 53.
            dns_verify: format!(
                "servers = [{}]\ntimeout = \"5s\"\nns_port = {}\n",
                q(&bind.to_string()),
                bind.port()
            ),
            notify: "[[notify.webhook]]\nurl_file = \"webhook.url\"\nformat = \"json\"\n".into(),
            services: vec![format!(
                "[[service]]\nname = {}\nzone = {}\nnames = [\"www\"]\nttl = 60\nprimary = {{ addresses = [\"{PRIMARY}\"] }}\nbackup = {{ addresses = [\"{BACKUP}\"] }}\nprobe = {{ kind = \"http\", port = {}, path = \"/\", expect_status = [200], timeout = \"400ms\" }}\nfail_after = 2\nrecover_after = 3\n",
                q(SERVICE),
                q(ZONE.trim_end_matches('.')),
                self.site_port
            )],
            extra: opts.extra_toml.clone(),
        }
    }

    // ---------- paths and facts ----------

    /// The rig's folder (logs, configs, keys, clock files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn coordinator_dir(&self) -> PathBuf {
        self.dir.join("coordinator")
    }

    /// The coordinator's config file.
    pub fn config_path(&self) -> PathBuf {
        self.coordinator_dir().join("coordinator.toml")
    }

    /// The coordinator's history database.
    pub fn database_path(&self) -> PathBuf {
        self.coordinator_dir().join("history.sqlite")
    }

    fn coordinator_clock_file(&self) -> PathBuf {
        self.dir.join("clock-coordinator")
    }

    /// The config as last written.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The coordinator's public key (`ed25519:…`), as witnesses trust it.
    pub fn coordinator_public_key(&self) -> &str {
        &self.coordinator_public_key
    }

    /// The API's address.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The API's bearer token.
    pub fn api_token(&self) -> &str {
        &self.token
    }

    /// The port both sites listen on.
    pub fn site_port(&self) -> u16 {
        self.site_port
    }

    /// The site's address.
    pub fn site_addr(&self, site: Site) -> SocketAddr {
        match site {
            Site::Primary => SocketAddr::from((PRIMARY, self.site_port)),
            Site::Backup => SocketAddr::from((BACKUP, self.site_port)),
        }
    }

    /// The webhook sink's address.
    pub fn sink_addr(&self) -> SocketAddr {
        self.sink.addr
    }

    /// The real BIND (its address, key, log, `nsupdate`).
    pub fn bind(&self) -> &Bind {
        &self.bind
    }

    /// The TSIG secret the coordinator uses (its `tsig.secret` file).
    pub fn coordinator_tsig_secret(&self) -> &str {
        &self.tsig_secret
    }

    /// What the rig knows about witness `i` (from 1).
    pub fn witness(&self, i: usize) -> &WitnessInfo {
        &self.slot(i).info
    }

    /// Witness `i`'s setup as last applied.
    pub fn witness_setup(&self, i: usize) -> &WitnessSetup {
        &self.slot(i).setup
    }

    /// Number of witnesses.
    pub fn witness_count(&self) -> usize {
        self.witnesses.len()
    }

    fn slot(&self, i: usize) -> &WitnessSlot {
        assert!(
            (1..=self.witnesses.len()).contains(&i),
            "no witness {i} (witnesses are numbered 1..={})",
            self.witnesses.len()
        );
        &self.witnesses[i - 1]
    }

    fn slot_mut(&mut self, i: usize) -> &mut WitnessSlot {
        assert!(
            (1..=self.witnesses.len()).contains(&i),
            "no witness {i} (witnesses are numbered 1..={})",
            self.witnesses.len()
        );
        &mut self.witnesses[i - 1]
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A line in `<dir>/rig.log` and on stderr (shown with `--nocapture` or on failure).
    pub fn log(&self, msg: &str) {
        let line = format!(
            "[rig +{:>6.2}s] {msg}",
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rig.log"))
        {
            let _ = writeln!(f, "{line}");
        }
    }

    // ---------- processes ----------

    /// A command under this rig's libfaketime with `clock_file`.
    fn faked(&self, program: &Path, clock_file: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("LD_PRELOAD", &self.faketime_lib)
            .env("FAKETIME_TIMESTAMP_FILE", clock_file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1")
            .env("NO_COLOR", "1");
        cmd
    }

    fn spawn(&self, name: &str, mut cmd: Command, log: PathBuf) -> Spawned {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.log(&format!("started {name} (pid {})", child.id()));
        Spawned {
            name: name.into(),
            child: Some(child),
            log,
        }
    }

    /// Starts witness `i` (from 1) with its current setup; returns once it accepts TCP
    /// connections on its port. Panics if it is running.
    pub fn start_witness(&mut self, i: usize) {
        let slot = self.slot(i);
        assert!(slot.proc.is_none(), "witness {i} is already running");
        let info = slot.info.clone();
        let cfg = info.dir.join("witness.toml");
        write_file(&cfg, &slot.setup.render(info.addr), 0o644);
        let mut cmd = self.faked(&self.bin("quorate-witness"), &info.clock_file);
        cmd.args(["run", "--config"])
            .arg(&cfg)
            .env("QUORATE_LOG", "info");
        let mut p = self.spawn(&info.name, cmd, info.log.clone());
        let up = poll_until(
            &format!("{} to accept connections on {}", info.name, info.addr),
            START_DEADLINE,
            Duration::from_millis(20),
            |last| {
                if !p.is_running() {
                    *last = "exited".into();
                    return Some(false);
                }
                match TcpStream::connect_timeout(&info.addr, Duration::from_millis(200)) {
                    Ok(_) => Some(true),
                    Err(e) => {
                        *last = e.to_string();
                        None
                    }
                }
            },
        );
        match up {
            Ok(true) => {}
            Ok(false) => panic!("{} exited at start:\n{}", info.name, p.log()),
            Err(e) => panic!("{e}\n{}", p.log()),
        }
        self.slot_mut(i).proc = Some(p);
    }

    /// Fault: SIGKILL witness `i` (its port then refuses connections).
    pub fn stop_witness(&mut self, i: usize) {
        let name = self.slot(i).info.name.clone();
        if let Some(mut p) = self.slot_mut(i).proc.take() {
            p.kill();
            self.log(&format!("FAULT witness {name} killed"));
        }
    }

    /// The PIDs of the coordinator and witness processes the rig holds now.
    pub fn pids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.coordinator.iter().filter_map(Spawned::pid).collect();
        v.extend(
            self.witnesses
                .iter()
                .filter_map(|w| w.proc.as_ref().and_then(Spawned::pid)),
        );
        v
    }

    /// Whether witness `i` runs.
    pub fn witness_running(&mut self, i: usize) -> bool {
        self.slot_mut(i)
            .proc
            .as_mut()
            .is_some_and(Spawned::is_running)
    }

    /// Stops witness `i`, lets `edit` change its setup (allowlist, trusted coordinators, a
    /// new signing key or TLS certificate, …), applies it and starts it again on the same
    /// port. The coordinator's config is not touched: its pins stay what they were.
    pub fn restart_witness_with(&mut self, i: usize, edit: impl FnOnce(&mut WitnessSetup)) {
        self.stop_witness(i);
        let mut setup = self.slot(i).setup.clone();
        edit(&mut setup);
        let wdir = self.slot(i).info.dir.clone();
        let listen = self.slot(i).info.addr;
        if std::mem::take(&mut setup.regenerate_signing_key) {
            let key = wdir.join("witness.key");
            std::fs::remove_file(&key).expect("remove the witness key");
            let out = run_ok(
                Command::new(self.bin("quorate-coordinator"))
                    .args(["keygen", "--out"])
                    .arg(&key),
            );
            let public_key = field(&out, "public_key");
            self.log(&format!(
                "witness w{i} now signs with a new key {public_key}"
            ));
            self.slot_mut(i).info.public_key = public_key;
        }
        if std::mem::take(&mut setup.regenerate_tls_cert) {
            // A scratch `init` on the same folder's file system makes the new pair; rename
            // keeps the key file's 0600 mode.
            let scratch = wdir.join("regen");
            let _ = std::fs::remove_dir_all(&scratch);
            let out = run_ok(
                Command::new(self.bin("quorate-witness"))
                    .arg("init")
                    .arg("--dir")
                    .arg(&scratch)
                    .args(["--listen", &listen.to_string()]),
            );
            for f in ["tls.crt", "tls.key"] {
                std::fs::rename(scratch.join(f), wdir.join(f)).expect("install the new TLS pair");
            }
            let _ = std::fs::remove_dir_all(&scratch);
            let cert = field(&out, "cert_sha256");
            self.log(&format!("witness w{i} now has a new certificate {cert}"));
            self.slot_mut(i).info.cert_sha256 = cert;
        }
        self.slot_mut(i).setup = setup;
        self.start_witness(i);
    }

    /// Starts the coordinator daemon (`run --config`) under its clock; returns once its API
    /// answers `/healthz`. Panics if it runs already or exits first.
    pub fn start_coordinator(&mut self) {
        assert!(
            self.coordinator.is_none(),
            "the coordinator is already running"
        );
        let mut cmd = self.faked(
            &self.bin("quorate-coordinator"),
            &self.coordinator_clock_file(),
        );
        cmd.args(["run", "--config"])
            .arg(self.config_path())
            .env("QUORATE_LOG", &self.opts_log_filter);
        let mut p = self.spawn(
            "coordinator",
            cmd,
            self.coordinator_dir().join("coordinator.log"),
        );
        let api = self.api;
        let up = poll_until(
            "the coordinator's API to answer /healthz",
            START_DEADLINE,
            Duration::from_millis(25),
            |last| {
                if !p.is_running() {
                    return Some(false);
                }
                match http_request(api, "GET", "/healthz", &[], b"") {
                    Ok(r) if r.status == 200 => Some(true),
                    Ok(r) => {
                        *last = format!("status {}", r.status);
                        None
                    }
                    Err(e) => {
                        *last = e;
                        None
                    }
                }
            },
        );
        match up {
            Ok(true) => {}
            Ok(false) => panic!(
                "the coordinator exited at start:\n{}\n--- config ---\n{}",
                p.log(),
                self.config.render()
            ),
            Err(e) => panic!("{e}\n{}", p.log()),
        }
        self.coordinator = Some(p);
    }

    /// SIGKILLs the coordinator (and reaps it).
    pub fn stop_coordinator(&mut self) {
        if let Some(mut p) = self.coordinator.take() {
            p.kill();
            self.log("coordinator killed");
        }
    }

    /// The running coordinator process (signals, exit, log).
    pub fn coordinator_process(&mut self) -> Option<&mut Spawned> {
        self.coordinator.as_mut()
    }

    /// The coordinator's log so far (every start appends to the same file).
    pub fn coordinator_log(&self) -> String {
        std::fs::read_to_string(self.coordinator_dir().join("coordinator.log")).unwrap_or_default()
    }

    /// Witness `i`'s log so far.
    pub fn witness_log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.slot(i).info.log).unwrap_or_default()
    }

    /// SIGHUP to the running coordinator (reload, once it exists).
    pub fn sighup_coordinator(&mut self) {
        self.coordinator
            .as_mut()
            .expect("the coordinator is not running")
            .signal("HUP");
        self.log("SIGHUP sent to the coordinator");
    }

    /// Changes the config (all parts) and rewrites the file; the running coordinator is not
    /// told (see [`Rig::sighup_coordinator`]).
    pub fn rewrite_coordinator_config(&mut self, edit: impl FnOnce(&mut CoordinatorConfig)) {
        edit(&mut self.config);
        self.write_config();
        self.log("coordinator config rewritten");
    }

    fn write_config(&self) {
        write_file(&self.config_path(), &self.config.render(), 0o644);
    }

    /// Runs `quorate-coordinator <args> --config <config>` under the coordinator's clock
    /// (killed after [`CLI_DEADLINE`]).
    pub fn coordinator_cli(&self, args: &[&str]) -> Output {
        let mut cmd = self.faked(
            &self.bin("quorate-coordinator"),
            &self.coordinator_clock_file(),
        );
        cmd.args(args).arg("--config").arg(self.config_path());
        self.run_bounded(cmd, CLI_DEADLINE)
    }

    /// `quorate-coordinator check --online --config <config> <extra_args>`, under the
    /// coordinator's clock (killed after [`CLI_DEADLINE`]).
    pub fn check_online(&self, extra_args: &[&str]) -> Output {
        let mut cmd = self.faked(
            &self.bin("quorate-coordinator"),
            &self.coordinator_clock_file(),
        );
        cmd.args(["check", "--online", "--config"])
            .arg(self.config_path())
            .args(extra_args);
        self.run_bounded(cmd, CLI_DEADLINE)
    }

    /// Runs `cmd` to completion with its output in files of the rig's folder; panics if it
    /// still runs after `timeout` (it is killed first).
    fn run_bounded(&self, mut cmd: Command, timeout: Duration) -> Output {
        let shown = format!("{cmd:?}");
        let n = self.cli_runs.fetch_add(1, Ordering::SeqCst);
        let (out_path, err_path) = (
            self.dir.join(format!("cli-{n}.stdout")),
            self.dir.join(format!("cli-{n}.stderr")),
        );
        let open =
            |p: &Path| std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(open(&out_path))
            .stderr(open(&err_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        let waited = poll_until(&shown, timeout, Duration::from_millis(20), |_| {
            child.try_wait().ok().flatten()
        });
        let status = match waited {
            Ok(s) => s,
            Err(e) => {
                // Not reaped yet, so the PID is still this child.
                let _ = child.kill();
                let _ = child.wait();
                panic!("{e}");
            }
        };
        let output = Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        };
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        output
    }

    /// A second `quorate-coordinator run` on the same config file (same database, same API
    /// address), for the lock test. Not waited for: see [`Spawned::wait_exit`].
    pub fn start_second_coordinator(&self) -> Spawned {
        self.start_second_coordinator_at(&self.config_path())
    }

    /// A second coordinator on a copy of the config changed by `edit` (e.g. another API
    /// port; the database stays the same unless changed), written to `coordinator-2.toml`
    /// next to the first.
    pub fn start_second_coordinator_with(
        &self,
        edit: impl FnOnce(&mut CoordinatorConfig),
    ) -> Spawned {
        let mut c = self.config.clone();
        edit(&mut c);
        let path = self.coordinator_dir().join("coordinator-2.toml");
        write_file(&path, &c.render(), 0o644);
        self.start_second_coordinator_at(&path)
    }

    fn start_second_coordinator_at(&self, config: &Path) -> Spawned {
        let mut cmd = self.faked(
            &self.bin("quorate-coordinator"),
            &self.coordinator_clock_file(),
        );
        cmd.args(["run", "--config"])
            .arg(config)
            .env("QUORATE_LOG", &self.opts_log_filter);
        self.spawn(
            "coordinator-2",
            cmd,
            self.coordinator_dir().join("coordinator-2.log"),
        )
    }

    // ---------- clocks ----------

    /// Moves `proc`'s wall clock by `seconds` more (negative: back), while it runs.
    pub fn shift_clock(&mut self, proc: Proc, seconds: i64) {
        let file = match proc {
            Proc::Witness(i) => self.slot(i).info.clock_file.clone(),
            Proc::Coordinator => self.coordinator_clock_file(),
        };
        let entry = self
            .clock_offsets
            .iter_mut()
            .find(|(f, _)| *f == file)
            .expect("every clock file is known");
        entry.1 += seconds;
        let offset = entry.1;
        write_file(&file, &format!("{offset:+}\n"), 0o644);
        self.log(&format!(
            "FAULT clock of {proc:?} shifted by {seconds:+} s (offset now {offset:+} s)"
        ));
    }

    /// `proc`'s current clock offset in seconds.
    pub fn clock_offset(&self, proc: Proc) -> i64 {
        let file = match proc {
            Proc::Witness(i) => self.slot(i).info.clock_file.clone(),
            Proc::Coordinator => self.coordinator_clock_file(),
        };
        self.clock_offsets
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, o)| *o)
            .unwrap_or(0)
    }

    // ---------- sites ----------

    /// Fault: the site stops (its port refuses connections).
    pub fn stop_site(&mut self, site: Site) {
        self.sites[site as usize].stop();
        self.log(&format!("FAULT {site:?} site stopped"));
    }

    /// Starts the site again on the same address.
    pub fn start_site(&mut self, site: Site) {
        self.sites[site as usize].restart();
        self.log(&format!("{site:?} site started"));
    }

    // ---------- BIND ----------

    /// Fault: BIND's key gets a new secret (the coordinator's `tsig.secret` keeps the old
    /// one: BADSIG). `nsupdate` through [`Rig::hand_edit_www`] uses the new one.
    pub fn bind_set_secret(&mut self, secret: &str) {
        self.bind.set_secret(secret);
        self.log("FAULT BIND's TSIG secret rotated");
    }

    /// Fault: BIND's key is renamed (the coordinator signs with an unknown key: BADKEY).
    pub fn bind_rename_key(&mut self, name: &str) {
        self.bind.rename_key(name);
        self.log(&format!("FAULT BIND's TSIG key renamed to {name}"));
    }

    /// Fault: BIND no longer serves `example.test.` (REFUSED).
    pub fn bind_drop_zone(&mut self) {
        self.bind.set_serves_zone(false);
        self.log("FAULT BIND no longer serves the zone");
    }

    /// BIND serves `example.test.` again (with the changes made before).
    pub fn bind_restore_zone(&mut self) {
        self.bind.set_serves_zone(true);
        self.log("BIND serves the zone again");
    }

    /// Fault: BIND stops (SIGKILL).
    pub fn bind_stop(&mut self) {
        self.bind.stop();
        self.log("FAULT BIND stopped");
    }

    /// BIND starts again on the same port.
    pub fn bind_start(&mut self) {
        self.bind.start_again();
        self.log("BIND started");
    }

    /// A human changes `www` by hand: the real `nsupdate` with the key BIND knows now
    /// (replaces every A record of `www.example.test.` by `addr`, TTL 60).
    pub fn hand_edit_www(&self, addr: IpAddr) {
        let rtype = if addr.is_ipv4() { "A" } else { "AAAA" };
        let out = self.bind.nsupdate(&format!(
            "update delete www.{ZONE} {rtype}\nupdate add www.{ZONE} 60 {rtype} {addr}"
        ));
        assert!(
            out.status.success(),
            "nsupdate failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.log(&format!("www set to {addr} by hand (nsupdate)"));
    }

    /// What BIND serves for `www.example.test. A` now (`dig`).
    pub fn www_a(&self) -> Vec<IpAddr> {
        let out = run(Command::new("dig")
            .args(["+short", "+norecurse", "+time=1", "+tries=1", "-p"])
            .arg(self.bind.addr().port().to_string())
            .args(["@127.0.0.1", &format!("www.{ZONE}"), "A"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    // ---------- API and notices ----------

    /// `GET path` on the coordinator's API with the token: the JSON body of a 200 answer.
    pub fn try_api_get(&self, path: &str) -> Result<serde_json::Value, String> {
        let auth = format!("Bearer {}", self.token);
        let r = http_request(self.api, "GET", path, &[("Authorization", &auth)], b"")?;
        if r.status != 200 {
            return Err(format!(
                "GET {path}: status {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("GET {path}: not JSON: {e}"))
    }

    /// Like [`Rig::try_api_get`]; panics on any error.
    pub fn api_get(&self, path: &str) -> serde_json::Value {
        self.try_api_get(path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `POST path` with a JSON body and the token: the status and the JSON answer (or
    /// `Null` when the body is not JSON).
    pub fn api_post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.token);
        let r = http_request(
            self.api,
            "POST",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        (
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The coordinator's `/metrics` (Prometheus text), read with the API token.
    pub fn metrics(&self) -> Result<String, String> {
        let auth = format!("Bearer {}", self.token);
        let r = http_request(
            self.api,
            "GET",
            "/metrics",
            &[("Authorization", &auth)],
            b"",
        )?;
        if r.status != 200 {
            return Err(format!("GET /metrics: status {}", r.status));
        }
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    /// The sum of every series of metric `name` (e.g. `quorate_votes_missing_total`) whose
    /// labels include all of `labels`; 0 when there is none.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
        let text = self.metrics()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                (n == name
                    && labels
                        .iter()
                        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
            })
            .sum())
    }

    /// The coordinator's wall clock as its API's `Date` header tells it (Unix seconds).
    pub fn coordinator_clock(&self) -> Result<i64, String> {
        let r = http_request(self.api, "GET", "/healthz", &[], b"")?;
        let date = r.header("date").ok_or("no Date header from the API")?;
        parse_http_date(date).ok_or_else(|| format!("bad Date header {date:?}"))
    }

    /// Witness `i`'s wall clock as the `Date` header of its `/healthz` tells it (Unix
    /// seconds; `curl` over HTTPS, certificate not checked: loopback, read only).
    pub fn witness_clock(&self, i: usize) -> Result<i64, String> {
        let url = format!("{}/healthz", self.slot(i).info.url);
        let out = run(Command::new("curl").args([
            "-sS",
            "-k",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-D",
            "-",
            &url,
        ]));
        let head = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "curl {url}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let date = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case("date").then(|| v.trim())
            })
            .ok_or_else(|| format!("no Date header from {url}: {head}"))?;
        parse_http_date(date).ok_or_else(|| format!("bad Date header {date:?}"))
    }

    /// The service's live status (`GET /v1/services/www`).
    pub fn status(&self) -> serde_json::Value {
        self.api_get(&format!("/v1/services/{SERVICE}"))
    }

    /// Waits until the coordinator has finished a round for the service in which every
    /// witness in `up_votes` or more answered "up", and returns the status.
    pub fn wait_round(&self, up_votes: u64, timeout: Duration) -> serde_json::Value {
        poll_until(
            "a round with enough up votes",
            timeout,
            Duration::from_millis(50),
            |last| {
                let s = match self.try_api_get(&format!("/v1/services/{SERVICE}")) {
                    Ok(s) => s,
                    Err(e) => {
                        *last = e;
                        return None;
                    }
                };
                *last = s.to_string();
                (s["last_tick_ms"].as_u64().unwrap_or(0) > 0
                    && s["last_votes"]["up"].as_u64().unwrap_or(0) >= up_votes)
                    .then_some(s)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n--- coordinator log ---\n{}", self.coordinator_log()))
    }

    /// Every JSON body the webhook sink received, oldest first.
    pub fn notices(&self) -> Vec<serde_json::Value> {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until a received notice satisfies `pred` and returns it.
    pub fn wait_notice(
        &self,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> serde_json::Value {
        poll_until(
            "a matching webhook notice",
            timeout,
            Duration::from_millis(25),
            |last| {
                let all = self.notices();
                *last = format!("{} notices: {all:?}", all.len());
                all.into_iter().find(|n| pred(n))
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn print_logs(&self) {
        if let Some(c) = &self.coordinator {
            eprintln!("--- coordinator log (tail) ---\n{}", c.tail(80));
        } else {
            let log = self.coordinator_log();
            let v: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- coordinator log (tail) ---\n{}",
                v[v.len().saturating_sub(80)..].join("\n")
            );
        }
        for w in &self.witnesses {
            if let Some(p) = &w.proc {
                eprintln!("--- {} log (tail) ---\n{}", w.info.name, p.tail(20));
            }
        }
        let named = self.bind.log();
        let v: Vec<&str> = named.lines().collect();
        eprintln!(
            "--- named log (tail) ---\n{}",
            v[v.len().saturating_sub(20)..].join("\n")
        );
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.print_logs();
        }
        if let Some(mut c) = self.coordinator.take() {
            c.kill();
        }
        for w in &mut self.witnesses {
            if let Some(mut p) = w.proc.take() {
                p.kill();
            }
        }
        for s in &mut self.sites {
            s.stop();
        }
        self.sink.stop();
        self.bind.stop();
        if self.keep {
            eprintln!("[rig] kept {} (RIG_KEEP is set)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------- in-test HTTP ----------

/// A request an in-test server received.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An answer from [`http_request`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

type Handler = Arc<dyn Fn(&HttpRequest) -> (u16, String) + Send + Sync>;

fn site_handler(name: &'static str) -> Handler {
    Arc::new(move |_req| (200, format!("{name} ok\n")))
}

fn sink_handler(notices: Arc<Mutex<Vec<serde_json::Value>>>) -> Handler {
    Arc::new(move |req| match serde_json::from_slice(&req.body) {
        Ok(v) => {
            notices.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            (200, String::new())
        }
        Err(e) => (400, format!("not JSON: {e}\n")),
    })
}

/// Reads one HTTP/1.1 request: the head (up to the blank line) and its `content-length` body.
fn read_request(s: &mut TcpStream) -> Result<HttpRequest, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HTTP_BYTES {
            return Err("head too large".into());
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed before the end of the head".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(e.to_string()),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    if let Some(len) = header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        if len > MAX_HTTP_BYTES {
            return Err("body too large".into());
        }
        while body.len() < len {
            match s.read(&mut chunk) {
                Ok(0) => return Err("closed before the end of the body".into()),
                Ok(n) => body.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
        body.truncate(len);
    }
    let mut parts = first.split_whitespace();
    Ok(HttpRequest {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        headers,
        body,
    })
}

/// One request over plain HTTP/1.1 (`connection: close`), bounded by a 5 s timeout per read
/// and write; handles `content-length`, chunked and read-to-close bodies.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut all = Vec::new();
    s.take(MAX_HTTP_BYTES as u64 + 1)
        .read_to_end(&mut all)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{addr}: no complete HTTP head in the answer"))?;
    let head = String::from_utf8_lossy(&all[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{addr}: bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let raw = all[head_end + 4..].to_vec();
    let body = if header(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(&raw).ok_or_else(|| format!("{addr}: bad chunked body"))?
    } else if let Some(len) =
        header(&headers, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        raw.get(..len)
            .ok_or_else(|| format!("{addr}: body shorter than its content-length"))?
            .to_vec()
    } else {
        raw
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Unix seconds of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form HTTP
/// servers send.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// A web stand-in like the rig's two sites (200 `<name> ok` on every path), for a service a
/// test adds beside the rig's own: stopped (connections refused) and started again on the
/// same address; stopped on drop.
pub struct WebSite {
    server: HttpServer,
}

impl WebSite {
    pub fn start(addr: SocketAddr, name: &'static str) -> WebSite {
        WebSite {
            server: HttpServer::start(addr, site_handler(name)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Fault: the site stops (its port refuses connections).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    pub fn start_again(&mut self) {
        self.server.restart();
    }
}

/// A tiny threaded HTTP/1.1 server (one thread per connection, `connection: close`):
/// the web stand-ins and the webhook sink. `stop` closes the listening socket, so connects
/// are refused until `restart` binds the same address again.
struct HttpServer {
    addr: SocketAddr,
    handler: Handler,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start(addr: SocketAddr, handler: Handler) -> HttpServer {
        let mut s = HttpServer {
            addr,
            handler,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        s.restart();
        s
    }

    fn restart(&mut self) {
        assert!(self.thread.is_none(), "{} is already serving", self.addr);
        // std sets SO_REUSEADDR: the same port binds again right after a stop.
        let listener = TcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", self.addr));
        self.addr = listener.local_addr().expect("bound address");
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = stop.clone();
        let handler = self.handler.clone();
        self.thread = Some(std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
                    let _ = conn.set_write_timeout(Some(REQUEST_TIMEOUT));
                    let Ok(req) = read_request(&mut conn) else {
                        return;
                    };
                    let (status, text) = handler(&req);
                    let reason = if status == 200 { "OK" } else { "Error" };
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = conn.write_all(resp.as_bytes());
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                });
            }
        }));
    }

    /// Closes the listener: wakes the accept loop with a connection of our own, then joins
    /// it (bounded).
    fn stop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        let joined = poll_until(
            &format!("the server on {} to stop", self.addr),
            Duration::from_secs(10),
            Duration::from_millis(5),
            |_| t.is_finished().then_some(()),
        );
        match joined {
            Ok(()) => {
                let _ = t.join();
            }
            Err(e) => eprintln!("[rig] warning: {e}; its thread is left behind"),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
