//! The multi-host lab: Linux network namespaces on a bridge, one per host (`primary`,
//! `backup`, three witnesses, `dns`, `client`), running the real `quorate-witness` and
//! `quorate-coordinator` binaries, a real BIND 9, real web servers and `dig`; plus the faults
//! the scenarios inject (kill a process, link down, one path cut, loss, BIND stop/start,
//! coordinator SIGKILL/restart, a witness behind a delaying proxy) and readers for what the
//! client sees and what the history says.
//!
//! Safety, by construction:
//! - every namespace is named `qlab-sNN-<host>` and every address is inside 10.231.0.0/16 or
//!   fd31::/16; nothing is created in the root namespace (the bridge lives in its own `sw`
//!   namespace, the veths are created inside it), so deleting the namespaces removes it all;
//! - a lab refuses to start when namespaces with its prefix already exist (a crashed earlier
//!   run): it names them and the command that removes them, and touches nothing;
//! - processes are started by this harness with `ip netns exec` (which execs, so the PID is
//!   the process itself) and kept as [`std::process::Child`]; a PID is only signalled while its
//!   `Child` is not yet reaped, so the PID cannot have been recycled for somebody else's
//!   process. On drop (also on panic) every process is killed and reaped, anything left inside
//!   our namespaces is killed, and the namespaces are deleted;
//! - every wait is a poll with a deadline ([`poll_until`]).
//!
//! Logs: each lab has a work directory (printed at start) holding every process's log
//! (`coordinator.log`, `w1.log`, `named.log`, `web-primary.log`, …), the configs, keys, the
//! SQLite history and `lab.log` (the harness's own timeline of faults and checks). It is
//! deleted after a passing scenario and kept after a failing one (or always with
//! `QLAB_KEEP=1`).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use coordinator::store::{DnsChangeRow, Event, ListFilter, Round, RoundFilter, Store, VoteRecord};

/// Every lab namespace starts with this.
pub const NS_ROOT: &str = "qlab-";
/// The zone BIND serves and the coordinator updates.
pub const ZONE: &str = "lab.test";
/// The name that fails over.
pub const NAME: &str = "www.lab.test";
/// The coordinator's service name.
pub const SERVICE: &str = "www";
/// TSIG key name shared by BIND and the coordinator.
const TSIG_KEY: &str = "quorate-lab";
/// The coordinator's API, on the backup host's own loopback.
const API: &str = "127.0.0.1:8080";
/// How long a whole lab may take to come up (several labs start at once on 2 cores).
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// `ip netns add`/`del` mount `/run/netns` on first use; several labs starting at once must
/// not race on that.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// One host of the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Primary,
    Backup,
    /// Witness 1, 2 or 3.
    Witness(u8),
    Dns,
    Client,
}

impl Host {
    /// Short name used in namespace, veth and log names.
    pub fn short(self) -> String {
        match self {
            Host::Primary => "pri".into(),
            Host::Backup => "bak".into(),
            Host::Witness(i) => format!("w{i}"),
            Host::Dns => "dns".into(),
            Host::Client => "cli".into(),
        }
    }

    /// Last byte of the host's addresses.
    fn number(self) -> u8 {
        match self {
            Host::Primary => 10,
            Host::Backup => 20,
            Host::Witness(i) => 30 + i,
            Host::Dns => 53,
            Host::Client => 100,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Primary => f.write_str("primary"),
            Host::Backup => f.write_str("backup"),
            Host::Witness(i) => write!(f, "witness-{i}"),
            Host::Dns => f.write_str("dns"),
            Host::Client => f.write_str("client"),
        }
    }
}

/// The A or AAAA record the client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rtype {
    A,
    Aaaa,
}

impl Rtype {
    fn as_str(self) -> &'static str {
        match self {
            Rtype::A => "A",
            Rtype::Aaaa => "AAAA",
        }
    }
}

/// The coordinator's knobs for one lab (kept small so scenarios run in seconds).
#[derive(Clone, Debug)]
pub struct CoordinatorOptions {
    pub interval: Duration,
    pub fail_after: u32,
    pub recover_after: u32,
    pub max_flips: u32,
    pub flap_window: Duration,
    /// Probe timeout (coordinator's own probes and the witnesses' probes).
    pub probe_timeout: Duration,
    /// Per-request timeout for asking a witness.
    pub witness_timeout: Duration,
    /// RFC 2136 timeout towards BIND.
    pub dns_timeout: Duration,
}

impl Default for CoordinatorOptions {
    fn default() -> CoordinatorOptions {
        CoordinatorOptions {
            interval: Duration::from_millis(1000),
            fail_after: 2,
            recover_after: 5,
            max_flips: 4,
            flap_window: Duration::from_secs(3600),
            probe_timeout: Duration::from_millis(400),
            witness_timeout: Duration::from_millis(800),
            dns_timeout: Duration::from_millis(1000),
        }
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// Scenario number 1..=99: namespace prefix `qlab-sNN-`, subnets 10.231.NN.0/24 and
    /// fd31:NN::/64. Distinct per scenario so scenarios run in parallel.
    pub id: u8,
    /// Give every host an IPv6 address too, switch AAAA records, and have the coordinator
    /// reach the witnesses and probe the primary and backup over IPv6.
    pub ipv6: bool,
    /// This witness runs with a signing key the coordinator does not trust (its config still
    /// names the key the witness was set up with).
    pub rogue_witness: Option<u8>,
    /// Serve the web sites with a small scripted server ([`WEB_SCRIPT`]) whose answer
    /// [`Lab::set_web_mode`] switches between a page, HTTP 500 and a hang (the fault run).
    pub scripted_web: bool,
    /// The coordinator reaches this witness only through a delaying TCP proxy
    /// ([`DELAY_PROXY_SCRIPT`]) in the witness's host: a slow path to one witness (`tc netem`
    /// does not exist on these kernels).
    pub delayed_witness: Option<DelayedWitness>,
    pub coordinator: CoordinatorOptions,
}

/// A witness behind extra latency (`LabOptions::delayed_witness`).
#[derive(Clone, Copy, Debug)]
pub struct DelayedWitness {
    /// Witness 1, 2 or 3.
    pub witness: u8,
    /// Added to every chunk, in each direction: the round trip grows by twice this.
    pub delay: Duration,
    /// The coordinator's per-request timeout for this witness (its `timeout` key). A new
    /// connection needs about four one-way delays before the answer is back (ClientHello,
    /// ServerHello, Finished with the request, the answer), so at least that.
    pub timeout: Duration,
}

impl LabOptions {
    pub fn new(id: u8) -> LabOptions {
        LabOptions {
            id,
            ipv6: false,
            rogue_witness: None,
            scripted_web: false,
            delayed_witness: None,
            coordinator: CoordinatorOptions::default(),
        }
    }
}

/// The scripted web server (`LabOptions::scripted_web`): `python3 - PORT BIND ROOT`. Each
/// request reads `ROOT/.mode`: `ok` (or missing) serves `ROOT/index.html` with 200, `500`
/// answers 500, `hang` holds the connection without answering (for an hour: the prober's
/// timeout ends it; a killed server ends it too).
pub const WEB_SCRIPT: &str = r#"
import http.server, os, socket, sys, time
port, bind, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            mode = open(os.path.join(root, ".mode")).read().strip()
        except OSError:
            mode = "ok"
        if mode == "hang":
            time.sleep(3600)
            return
        if mode == "500":
            self.send_error(500)
            return
        body = open(os.path.join(root, "index.html"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
S((bind, port), H).serve_forever()
"#;

/// Where the delaying proxy listens, on the delayed witness's own address (the witness itself
/// listens on 8443).
const PROXY_PORT: u16 = 8444;

/// The delaying TCP proxy (`LabOptions::delayed_witness`): `python3 - LISTEN PORT TARGET
/// TPORT DELAY`. Every chunk read from either side is written to the other `DELAY` seconds
/// after it arrived, in order (one queue and one writer per direction, so the delay does not
/// add up); an end of stream is passed on the same way. TLS goes through untouched: the
/// coordinator pins the witness's certificate, not its address.
pub const DELAY_PROXY_SCRIPT: &str = r#"
import asyncio, socket, sys
listen, port, target, tport, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
async def pipe(reader, writer):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    async def deliver():
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
    except OSError:
        queue.put_nowait((loop.time() + delay, b""))
    await sender
async def handle(creader, cwriter):
    try:
        ureader, uwriter = await asyncio.open_connection(target, tport)
    except OSError:
        cwriter.close()
        return
    try:
        await asyncio.gather(pipe(creader, uwriter), pipe(ureader, cwriter))
    except OSError:
        pass
    finally:
        cwriter.close()
        uwriter.close()
async def main():
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    server = await asyncio.start_server(handle, listen, port, family=family)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"#;

/// A process the lab started.
struct Proc {
    name: String,
    host: Host,
    child: Child,
}

/// A running lab. Dropping it tears everything down.
pub struct Lab {
    opts: LabOptions,
    prefix: String,
    dir: PathBuf,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
    bin_dir: PathBuf,
    started: Instant,
    web_roots: Vec<(Host, PathBuf)>,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("prefix", &self.prefix)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Polls `f` every `every` until it returns `Some`, or fails after `timeout` with a message
/// naming `what` and the last thing `f` reported through `last`.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut(&mut String) -> Option<T>,
) -> Result<T, String> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}"
            ));
        }
        std::thread::sleep(every);
    }
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
}

fn run_ok(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    if !out.status.success() {
        panic!(
            "{shown} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn ip(args: &[&str]) -> Output {
    run_ok(Command::new("ip").args(args))
}

/// Lab namespaces currently present whose names start with `prefix`.
pub fn existing_namespaces(prefix: &str) -> Vec<String> {
    let out = run_ok(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
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
    dir
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Checks the real binaries exist, and warns when they are older than the coordinator/witness
/// libraries this test was built against (a stale binary would test old code).
fn check_binaries(dir: &Path) {
    for (bin, lib) in [
        ("quorate-coordinator", "libcoordinator-"),
        ("quorate-witness", "libwitness-"),
    ] {
        let path = dir.join(bin);
        let Some(bin_time) = mtime(&path) else {
            panic!(
                "{} is missing: build the binaries first with `cargo build --bins` (same profile as the tests)",
                path.display()
            );
        };
        let newest_lib = std::fs::read_dir(dir.join("deps"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(lib) && n.ends_with(".rlib")
            })
            .filter_map(|e| mtime(&e.path()))
            .max();
        if let Some(lib_time) = newest_lib
            && lib_time > bin_time + Duration::from_secs(2)
        {
            // Only a hint: cargo may rebuild a library identically without relinking the
            // binary, so an older binary is not always a stale one.
            eprintln!(
                "warning: {} is older than the {bin} library the tests were built with; if you changed the code, run `cargo build --bins` first",
                path.display()
            );
        }
    }
}

fn write_file(path: &Path, text: &str, mode: u32) {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

fn humantime_ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Lab {
    /// Builds the network, starts BIND, both web servers, the witnesses and the coordinator,
    /// and returns once the client resolves the name to the primary and the coordinator sees
    /// primary and backup up with a valid "up" vote from every honest witness.
    pub fn start(opts: LabOptions) -> Lab {
        assert!(
            (1..=99).contains(&opts.id),
            "lab id must be 1..=99, got {}",
            opts.id
        );
        let prefix = format!("{NS_ROOT}s{:02}-", opts.id);
        assert!(
            is_root(),
            "the lab needs root (it creates network namespaces): run the lab tests as root, e.g. in CI"
        );
        let bin_dir = bin_dir();
        check_binaries(&bin_dir);
        {
            let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            let stale = existing_namespaces(&prefix);
            if !stale.is_empty() {
                panic!(
                    "namespaces from an earlier run of this scenario still exist: {}; refusing to start over them. \
                     Remove them with: for ns in {}; do ip netns pids $ns | xargs -r kill -9; ip netns del $ns; done",
                    stale.join(" "),
                    stale.join(" ")
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("qlab-s{:02}-", opts.id))
            .tempdir()
            .expect("lab work directory")
            .keep();
        eprintln!(
            "[lab s{:02}] work directory and logs: {}",
            opts.id,
            dir.display()
        );
        let mut lab = Lab {
            opts,
            prefix,
            dir,
            namespaces: Vec::new(),
            procs: Vec::new(),
            bin_dir,
            started: Instant::now(),
            web_roots: Vec::new(),
        };
        lab.build_network();
        lab.setup_bind();
        lab.start_bind();
        for h in [Host::Primary, Host::Backup] {
            lab.setup_web(h);
            lab.start_web(h);
        }
        lab.setup_witnesses_and_coordinator();
        for i in 1..=3 {
            lab.start_witness(i);
        }
        if let Some(d) = lab.opts.delayed_witness {
            lab.start_delay_proxy(d);
        }
        lab.start_coordinator();
        lab.wait_ready();
        lab.log("lab ready");
        lab
    }

    // ---------- names and addresses ----------

    pub fn ns(&self, h: Host) -> String {
        format!("{}{}", self.prefix, h.short())
    }

    fn sw(&self) -> String {
        format!("{}sw", self.prefix)
    }

    pub fn addr4(&self, h: Host) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.opts.id, h.number())
    }

    pub fn addr6(&self, h: Host) -> Ipv6Addr {
        format!("fd31:{}::{}", self.opts.id, h.number())
            .parse()
            .expect("lab IPv6 address")
    }

    /// The address the service's probes and witness URLs use for `h` (IPv6 in an IPv6 lab).
    pub fn service_addr(&self, h: Host) -> IpAddr {
        if self.opts.ipv6 {
            IpAddr::V6(self.addr6(h))
        } else {
            IpAddr::V4(self.addr4(h))
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &LabOptions {
        &self.opts
    }

    /// Appends a line to `lab.log` and stderr (shown with `--nocapture`).
    pub fn log(&self, msg: &str) {
        let line = format!(
            "[lab s{:02} +{:>7.2}s] {msg}",
            self.opts.id,
            self.started.elapsed().as_secs_f64()
        );
        eprintln!("{line}");
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("lab.log"))
        {
            let _ = writeln!(f, "{line}");
        }
    }

    // ---------- network ----------

    fn add_ns(&mut self, name: &str) {
        {
            let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            ip(&["netns", "add", name]);
        }
        self.namespaces.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    fn sysctl(&self, ns: &str, settings: &[&str]) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "sysctl", "-q", "-w"]);
        cmd.args(settings);
        run_ok(&mut cmd);
    }

    fn build_network(&mut self) {
        let sw = self.sw();
        self.add_ns(&sw);
        self.sysctl(
            &sw,
            &[
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        );
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &sw,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        // The switch's own nftables table: loss on a host's port ("a bad cable").
        self.nft_in(
            &sw,
            "add table bridge qlab\nadd chain bridge qlab lossy { type filter hook forward priority 0; }\n",
        );
        let hosts = [
            Host::Primary,
            Host::Backup,
            Host::Witness(1),
            Host::Witness(2),
            Host::Witness(3),
            Host::Dns,
            Host::Client,
        ];
        for h in hosts {
            let ns = self.ns(h);
            self.add_ns(&ns);
            if self.opts.ipv6 {
                self.sysctl(
                    &ns,
                    &[
                        "net.ipv6.conf.all.disable_ipv6=0",
                        "net.ipv6.conf.default.disable_ipv6=0",
                        "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0",
                        "net.ipv6.conf.all.keep_addr_on_down=1",
                        "net.ipv6.conf.default.keep_addr_on_down=1",
                        "net.ipv6.conf.default.accept_ra=0",
                    ],
                );
            } else {
                self.sysctl(
                    &ns,
                    &[
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1",
                    ],
                );
            }
            let port = format!("p-{}", h.short());
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &sw, "link", "set", &port, "up"]);
            let a4 = format!("{}/24", self.addr4(h));
            ip(&["-n", &ns, "addr", "add", &a4, "dev", "eth0"]);
            if self.opts.ipv6 {
                let a6 = format!("{}/64", self.addr6(h));
                ip(&["-n", &ns, "addr", "add", &a6, "dev", "eth0", "nodad"]);
            }
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            // Per-host filter table for path cuts and isolation (input hook: silent drops).
            self.nft_in(
                &ns,
                "add table inet qlab\nadd chain inet qlab in { type filter hook input priority 0; }\n",
            );
        }
        self.log(&format!(
            "network up: bridge in {sw}, hosts on 10.231.{}.0/24{}",
            self.opts.id,
            if self.opts.ipv6 {
                format!(" and fd31:{}::/64", self.opts.id)
            } else {
                String::new()
            }
        ));
    }

    fn nft_in(&self, ns: &str, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft in {ns}: {e}"));
        child
            .stdin
            .take()
            .expect("nft stdin")
            .write_all(script.as_bytes())
            .expect("write nft script");
        let out = child.wait_with_output().expect("nft output");
        if !out.status.success() {
            panic!(
                "nft in {ns} failed: {}\nscript:\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn addrs_of(&self, h: Host) -> Vec<IpAddr> {
        let mut v = vec![IpAddr::V4(self.addr4(h))];
        if self.opts.ipv6 {
            v.push(IpAddr::V6(self.addr6(h)));
        }
        v
    }

    fn saddr_match(a: &IpAddr) -> String {
        match a {
            IpAddr::V4(a) => format!("ip saddr {a}"),
            IpAddr::V6(a) => format!("ip6 saddr {a}"),
        }
    }

    /// Fault: `h`'s network interface goes down (cable pulled).
    pub fn link_down(&self, h: Host) {
        ip(&["-n", &self.ns(h), "link", "set", "eth0", "down"]);
        self.log(&format!("FAULT link down: {h}"));
    }

    /// Undoes [`Lab::link_down`].
    pub fn link_up(&self, h: Host) {
        ip(&["-n", &self.ns(h), "link", "set", "eth0", "up"]);
        self.log(&format!("HEAL link up: {h}"));
    }

    /// Fault: only the path between `a` and `b` is cut (both directions, silently: each
    /// end's input hook drops what the other sends). Everything else still works.
    pub fn cut_path(&self, a: Host, b: Host) {
        for (me, peer) in [(a, b), (b, a)] {
            let mut script = String::new();
            for addr in self.addrs_of(peer) {
                script.push_str(&format!(
                    "add rule inet qlab in {} drop\n",
                    Self::saddr_match(&addr)
                ));
            }
            self.nft_in(&self.ns(me), &script);
        }
        self.log(&format!("FAULT path cut: {a} <-> {b}"));
    }

    /// Fault: `h` hears nothing from anybody on the network except `allowed` (replies from
    /// everyone else are dropped silently at `h`'s input, so no exchange completes).
    pub fn isolate_except(&self, h: Host, allowed: &[Host]) {
        let mut script = String::new();
        for a in allowed {
            for addr in self.addrs_of(*a) {
                script.push_str(&format!(
                    "add rule inet qlab in iifname \"eth0\" {} accept\n",
                    Self::saddr_match(&addr)
                ));
            }
        }
        script.push_str("add rule inet qlab in iifname \"eth0\" drop\n");
        self.nft_in(&self.ns(h), &script);
        let names: Vec<String> = allowed.iter().map(Host::to_string).collect();
        self.log(&format!(
            "FAULT {h} cut off from everything but {}",
            names.join(", ")
        ));
    }

    /// Fault: `percent`% of the packets in each direction on `h`'s link are lost (dropped at
    /// the switch port, silently, at random).
    pub fn add_loss(&self, h: Host, percent: u8) {
        let port = format!("p-{}", h.short());
        let script = format!(
            "add rule bridge qlab lossy iifname \"{port}\" numgen random mod 100 < {percent} drop\n\
             add rule bridge qlab lossy oifname \"{port}\" numgen random mod 100 < {percent} drop\n"
        );
        self.nft_in(&self.sw(), &script);
        self.log(&format!("FAULT {percent}% loss each way on {h}'s link"));
    }

    /// Removes every nftables fault at `h` (path cuts, isolation) and on the switch (loss).
    pub fn heal_filters(&self, h: Host) {
        self.nft_in(&self.ns(h), "flush chain inet qlab in\n");
        self.nft_in(&self.sw(), "flush chain bridge qlab lossy\n");
        self.log(&format!("HEAL filters removed at {h} and the switch"));
    }

    // ---------- processes ----------

    /// Runs a command inside `h`'s namespace and waits for it.
    pub fn exec(&self, h: Host, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(h)]).args(args);
        run(&mut cmd)
    }

    /// Starts a long-running process inside `h`'s namespace, logging to `<dir>/<name>.log`.
    fn spawn(&mut self, h: Host, name: &str, args: &[&str], env: &[(&str, &str)]) {
        assert!(
            !self.procs.iter().any(|p| p.name == name),
            "process {name} is already running"
        );
        let log_path = self.dir.join(format!("{name}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(h)])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Plain log files: no colour codes.
        cmd.env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} in {}: {e}", self.ns(h)));
        self.log(&format!("started {name} on {h} (pid {})", child.id()));
        self.procs.push(Proc {
            name: name.to_string(),
            host: h,
            child,
        });
    }

    fn take_proc(&mut self, name: &str) -> Proc {
        let i = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no running process named {name}"));
        self.procs.swap_remove(i)
    }

    /// Fault: SIGKILL the process `name` (e.g. `web-primary`, `coordinator`, `named`, `w2`).
    pub fn kill(&mut self, name: &str) {
        let mut p = self.take_proc(name);
        // The Child is not reaped yet, so its PID still names our process.
        let _ = p.child.kill();
        let _ = p.child.wait();
        self.log(&format!("FAULT SIGKILL {name} on {}", p.host));
    }

    /// SIGTERM `name` and wait (bounded) for it to exit; SIGKILL if it does not.
    pub fn terminate(&mut self, name: &str) {
        let mut p = self.take_proc(name);
        if let Ok(None) = p.child.try_wait() {
            // Still running and not reaped: the PID is ours.
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
            let exited = poll_until(
                &format!("{name} to exit after SIGTERM"),
                Duration::from_secs(5),
                Duration::from_millis(20),
                |_| p.child.try_wait().ok().flatten().map(|_| ()),
            );
            if exited.is_err() {
                let _ = p.child.kill();
            }
        }
        let _ = p.child.wait();
        self.log(&format!("stopped {name} on {} (SIGTERM)", p.host));
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process `name`; it stays the lab's (a
    /// stopped process is still killed and reaped at teardown).
    pub fn signal(&mut self, name: &str, signal: &str) {
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no running process named {name}"));
        // Only while not reaped is the PID still ours.
        if let Ok(None) = p.child.try_wait() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &p.child.id().to_string()])
                .status();
        }
        let host = p.host;
        self.log(&format!("SIG{signal} {name} on {host}"));
    }

    /// Whether `name` is still running.
    pub fn running(&mut self, name: &str) -> bool {
        self.procs
            .iter_mut()
            .any(|p| p.name == name && matches!(p.child.try_wait(), Ok(None)))
    }

    // ---------- web servers ----------

    fn web_name(h: Host) -> String {
        format!("web-{h}")
    }

    fn setup_web(&mut self, h: Host) {
        let root = self.dir.join(format!("www-{h}"));
        std::fs::create_dir_all(&root).expect("web root");
        write_file(&root.join("index.html"), &format!("{h}\n"), 0o644);
        self.web_roots.push((h, root));
    }

    /// Starts (again) `h`'s web server (python's http.server on port 80) and waits until the
    /// client can fetch its page.
    pub fn start_web(&mut self, h: Host) {
        let root = self
            .web_roots
            .iter()
            .find(|(x, _)| *x == h)
            .map(|(_, r)| r.display().to_string())
            .expect("web root set up");
        let bind = if self.opts.ipv6 {
            "::".to_string()
        } else {
            self.addr4(h).to_string()
        };
        let name = Self::web_name(h);
        if self.opts.scripted_web {
            let script = self.dir.join("web.py");
            if !script.exists() {
                write_file(&script, WEB_SCRIPT, 0o644);
            }
            let script = script.display().to_string();
            self.spawn(
                h,
                &name,
                &["/usr/bin/python3", &script, "80", &bind, &root],
                &[],
            );
        } else {
            self.spawn(
                h,
                &name,
                &[
                    "/usr/bin/python3",
                    "-m",
                    "http.server",
                    "80",
                    "--bind",
                    &bind,
                    "--directory",
                    &root,
                ],
                &[],
            );
        }
        let url = match self.service_addr(h) {
            IpAddr::V4(a) => format!("http://{a}/"),
            IpAddr::V6(a) => format!("http://[{a}]/"),
        };
        let r = poll_until(
            &format!("{h}'s web server at {url}"),
            Duration::from_secs(20),
            Duration::from_millis(50),
            |last| {
                let out = self.exec(
                    Host::Client,
                    &["curl", "-sf", "--max-time", "1", "-o", "/dev/null", &url],
                );
                *last = format!("curl {}", out.status);
                out.status.success().then_some(())
            },
        );
        if let Err(e) = r {
            panic!("{e}");
        }
    }

    /// Fault (with `LabOptions::scripted_web`): `h`'s web server answers `mode`: `ok`, `500`
    /// or `hang` from its next request on.
    pub fn set_web_mode(&self, h: Host, mode: &str) {
        assert!(
            self.opts.scripted_web,
            "set_web_mode needs LabOptions::scripted_web"
        );
        let root = self
            .web_roots
            .iter()
            .find(|(x, _)| *x == h)
            .map(|(_, r)| r.clone())
            .expect("web root set up");
        write_file(&root.join(".mode"), &format!("{mode}\n"), 0o644);
        if mode == "ok" {
            self.log(&format!("HEAL {h}'s web server answers normally"));
        } else {
            self.log(&format!("FAULT {h}'s web server answers {mode}"));
        }
    }

    /// Fault: SIGKILL `h`'s web server.
    pub fn kill_web(&mut self, h: Host) {
        self.kill(&Self::web_name(h));
    }

    // ---------- BIND ----------

    fn bind_dir(&self) -> PathBuf {
        self.dir.join("dns")
    }

    fn setup_bind(&mut self) {
        let d = self.bind_dir();
        std::fs::create_dir_all(&d).expect("bind dir");
        let secret = crate::net::random_secret(32);
        let listen = self.addr4(Host::Dns);
        let ds = d.display().to_string();
        let conf = crate::bind::named_conf(
            &ds,
            &format!("{listen};"),
            "none;",
            53,
            ZONE,
            TSIG_KEY,
            &secret,
            "hmac-sha256",
        );
        write_file(&d.join("named.conf"), &conf, 0o600);
        let mut records = format!("www {} IN A {}\n", 5, self.addr4(Host::Primary));
        if self.opts.ipv6 {
            records.push_str(&format!("www 5 IN AAAA {}\n", self.addr6(Host::Primary)));
        }
        let zone = crate::bind::zone_text(ZONE, &listen.to_string(), &records);
        write_file(&d.join(format!("{ZONE}.zone")), &zone, 0o644);
        write_file(&self.dir.join("tsig.secret"), &format!("{secret}\n"), 0o600);
    }

    /// Starts BIND in the `dns` namespace and waits until the client gets the zone's SOA.
    pub fn start_bind(&mut self) {
        let conf = self.bind_dir().join("named.conf").display().to_string();
        self.spawn(Host::Dns, "named", &["named", "-g", "-4", "-c", &conf], &[]);
        let server = format!("@{}", self.addr4(Host::Dns));
        let r = poll_until(
            "BIND to serve the zone",
            Duration::from_secs(20),
            Duration::from_millis(50),
            |last| {
                let out = self.exec(
                    Host::Client,
                    &[
                        "dig", &server, ZONE, "SOA", "+tcp", "+short", "+time=1", "+tries=1",
                    ],
                );
                *last = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (out.status.success() && !last.is_empty()).then_some(())
            },
        );
        if let Err(e) = r {
            panic!("{e}");
        }
        self.log("BIND serving the zone");
    }

    /// Fault: stop BIND (SIGTERM, so its journal is written cleanly).
    pub fn stop_bind(&mut self) {
        self.terminate("named");
        self.log("FAULT BIND stopped");
    }

    /// The zone's SOA serial as the client sees it (each applied UPDATE adds one).
    pub fn soa_serial(&self) -> Result<u32, String> {
        let server = format!("@{}", self.addr4(Host::Dns));
        let out = self.exec(
            Host::Client,
            &["dig", &server, ZONE, "SOA", "+short", "+time=1", "+tries=1"],
        );
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no SOA serial in {text:?} ({})", out.status))
    }

    // ---------- witnesses and coordinator ----------

    fn coord_dir(&self) -> PathBuf {
        self.dir.join("coordinator")
    }

    fn witness_dir(&self, i: u8) -> PathBuf {
        self.dir.join(format!("w{i}"))
    }

    /// The coordinator's history file.
    pub fn db_path(&self) -> PathBuf {
        self.coord_dir().join("history.sqlite")
    }

    pub fn config_path(&self) -> PathBuf {
        self.coord_dir().join("coordinator.toml")
    }

    fn bin(&self, name: &str) -> String {
        self.bin_dir.join(name).display().to_string()
    }

    fn setup_witnesses_and_coordinator(&mut self) {
        let cdir = self.coord_dir();
        std::fs::create_dir_all(&cdir).expect("coordinator dir");
        let key = cdir.join("coordinator.key");
        let out = run_ok(
            Command::new(self.bin("quorate-coordinator"))
                .args(["keygen", "--out"])
                .arg(&key),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let coord_pub = field(&text, "public_key")
            .unwrap_or_else(|| panic!("no public_key in keygen output:\n{text}"));

        let mut witness_blocks = String::new();
        for i in 1..=3u8 {
            let h = Host::Witness(i);
            let wdir = self.witness_dir(i);
            let listen = match self.service_addr(h) {
                IpAddr::V4(a) => format!("{a}:8443"),
                IpAddr::V6(a) => format!("[{a}]:8443"),
            };
            let mut cmd = Command::new(self.bin("quorate-witness"));
            cmd.arg("init")
                .arg("--dir")
                .arg(&wdir)
                .args(["--listen", &listen])
                .args(["--coordinator", &format!("coordinator={coord_pub}")]);
            for side in [Host::Primary, Host::Backup] {
                for a in self.addrs_of(side) {
                    let net = match a {
                        IpAddr::V4(a) => format!("{a}/32=80"),
                        IpAddr::V6(a) => format!("{a}/128=80"),
                    };
                    cmd.args(["--allow", &net]);
                }
            }
            let out = run_ok(&mut cmd);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let public_key = field(&text, "public_key")
                .unwrap_or_else(|| panic!("no public_key in witness init output:\n{text}"));
            let cert = field(&text, "cert_sha256")
                .unwrap_or_else(|| panic!("no cert_sha256 in witness init output:\n{text}"));
            if self.opts.rogue_witness == Some(i) {
                // The coordinator keeps trusting the key printed above; the witness now signs
                // with another one.
                let keyfile = wdir.join("witness.key");
                std::fs::remove_file(&keyfile).expect("remove witness key");
                run_ok(
                    Command::new(self.bin("quorate-coordinator"))
                        .args(["keygen", "--out"])
                        .arg(&keyfile),
                );
                self.log(&format!(
                    "witness w{i} is rogue: it signs with a key the coordinator does not trust"
                ));
            }
            run_ok(
                Command::new(self.bin("quorate-witness"))
                    .args(["check", "--config"])
                    .arg(wdir.join("witness.toml")),
            );
            // A delayed witness is asked through its proxy, with its own timeout.
            let (url, timeout) = match self.opts.delayed_witness {
                Some(d) if d.witness == i => (self.proxy_addr(i), d.timeout),
                _ => (listen.clone(), self.opts.coordinator.witness_timeout),
            };
            witness_blocks.push_str(&format!(
                "[[witness]]\nname = \"w{i}\"\nurl = \"https://{url}\"\npublic_key = {}\ncert_sha256 = {}\ntimeout = \"{}\"\n\n",
                toml_str(&public_key),
                toml_str(&cert),
                humantime_ms(timeout),
            ));
        }

        let token = crate::net::random_secret(24);
        write_file(&cdir.join("api.token"), &format!("{token}\n"), 0o600);
        write_file(
            &cdir.join("auth.header"),
            &format!("Authorization: Bearer {token}\n"),
            0o600,
        );
        let c = &self.opts.coordinator;
        let side = |h: Host| {
            let addrs: Vec<String> = self
                .addrs_of(h)
                .iter()
                .map(|a| toml_str(&a.to_string()))
                .collect();
            format!(
                "{{ addresses = [{}], probe_address = {} }}",
                addrs.join(", "),
                toml_str(&self.service_addr(h).to_string())
            )
        };
        let conf = format!(
            r#"# Written by the lab harness (tests/src/lab.rs).
[coordinator]
key_file = {key}
database = {db}
interval = "{interval}"
retention = "1d"

[api]
listen = "{API}"
token_file = {token}

# A checkpoint every second: each one also closes the spells of identical rounds, so the
# scenarios see a persistent state's rounds as rows within a second (docs/history.md §5.1).
[history]
checkpoint_every = "1s"

{witness_blocks}[dns]
type = "rfc2136"
server = "{dns}:53"
zone = "{ZONE}."
tsig_key_name = "{TSIG_KEY}"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = {secret}
timeout = "{dns_timeout}"

[dns.verify]
timeout = "5s"

[[service]]
name = "{SERVICE}"
zone = "{ZONE}"
names = ["www"]
ttl = 5
primary = {primary}
backup = {backup}
probe = {{ kind = "http", port = 80, host = "{NAME}", path = "/", expect_status = [200], timeout = "{probe_timeout}" }}
fail_after = {fail_after}
recover_after = {recover_after}
max_flips = {max_flips}
flap_window = "{flap_window}"
"#,
            key = toml_str(&key.display().to_string()),
            db = toml_str(&self.db_path().display().to_string()),
            interval = humantime_ms(c.interval),
            token = toml_str(&cdir.join("api.token").display().to_string()),
            dns = self.addr4(Host::Dns),
            secret = toml_str(&self.dir.join("tsig.secret").display().to_string()),
            dns_timeout = humantime_ms(c.dns_timeout),
            primary = side(Host::Primary),
            backup = side(Host::Backup),
            probe_timeout = humantime_ms(c.probe_timeout),
            fail_after = c.fail_after,
            recover_after = c.recover_after,
            max_flips = c.max_flips,
            flap_window = humantime_ms(c.flap_window),
        );
        write_file(&self.config_path(), &conf, 0o644);
        let out = run(Command::new(self.bin("quorate-coordinator"))
            .args(["check", "--config"])
            .arg(self.config_path()));
        if !out.status.success() {
            panic!(
                "quorate-coordinator check rejected the lab config:\n{}{}\n--- config ---\n{conf}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts witness `i` (again).
    pub fn start_witness(&mut self, i: u8) {
        let config = self
            .witness_dir(i)
            .join("witness.toml")
            .display()
            .to_string();
        let bin = self.bin("quorate-witness");
        self.spawn(
            Host::Witness(i),
            &format!("w{i}"),
            &[&bin, "run", "--config", &config],
            &[("QUORATE_LOG", "info")],
        );
    }

    /// `host:port` of witness `i`'s delaying proxy.
    fn proxy_addr(&self, i: u8) -> String {
        match self.service_addr(Host::Witness(i)) {
            IpAddr::V4(a) => format!("{a}:{PROXY_PORT}"),
            IpAddr::V6(a) => format!("[{a}]:{PROXY_PORT}"),
        }
    }

    /// Starts the delaying proxy in front of witness `d.witness` (process `proxy-wN`, killed
    /// at teardown like every other) and waits until the backup host can connect to it.
    fn start_delay_proxy(&mut self, d: DelayedWitness) {
        let script = self.dir.join("delay-proxy.py");
        write_file(&script, DELAY_PROXY_SCRIPT, 0o644);
        let addr = self.service_addr(Host::Witness(d.witness)).to_string();
        let delay = format!("{:.3}", d.delay.as_secs_f64());
        let port = PROXY_PORT.to_string();
        self.spawn(
            Host::Witness(d.witness),
            &format!("proxy-w{}", d.witness),
            &[
                "/usr/bin/python3",
                &script.display().to_string(),
                &addr,
                &port,
                &addr,
                "8443",
                &delay,
            ],
            &[],
        );
        // A bare TCP connect (bash's /dev/tcp) from the coordinator's host: the proxy accepts.
        let connect = format!("exec 3<>/dev/tcp/{addr}/{PROXY_PORT}");
        let r = poll_until(
            &format!("the delaying proxy of w{} to accept", d.witness),
            Duration::from_secs(20),
            Duration::from_millis(50),
            |last| {
                let out = self.exec(Host::Backup, &["bash", "-c", &connect]);
                *last = String::from_utf8_lossy(&out.stderr).trim().to_string();
                out.status.success().then_some(())
            },
        );
        if let Err(e) = r {
            panic!("{e}");
        }
        self.log(&format!(
            "w{} reached through a proxy adding {:?} each way (timeout {:?})",
            d.witness, d.delay, d.timeout
        ));
    }

    /// Starts the coordinator (again) on the backup host.
    pub fn start_coordinator(&mut self) {
        let config = self.config_path().display().to_string();
        let bin = self.bin("quorate-coordinator");
        self.spawn(
            Host::Backup,
            "coordinator",
            &[&bin, "run", "--config", &config],
            &[(
                "QUORATE_LOG",
                "info,coordinator::service=debug,hyper=warn,reqwest=warn,rustls=warn",
            )],
        );
    }

    /// Fault: SIGKILL the coordinator.
    pub fn kill_coordinator(&mut self) {
        self.kill("coordinator");
    }

    /// `GET` on the coordinator's API, from inside the backup host (the API listens on its
    /// loopback); the bearer token is read by curl from a 0600 file, never a command line.
    pub fn api_get(&self, path: &str) -> Result<serde_json::Value, String> {
        let text = self.api_text(path)?;
        serde_json::from_str(&text).map_err(|e| format!("GET {path}: not JSON: {e}"))
    }

    /// `GET` on the coordinator's API as text (e.g. `/metrics`), as [`Lab::api_get`] does it.
    pub fn api_text(&self, path: &str) -> Result<String, String> {
        let header = format!("@{}", self.coord_dir().join("auth.header").display());
        let url = format!("http://{API}{path}");
        let out = self.exec(
            Host::Backup,
            &["curl", "-sS", "-f", "--max-time", "2", "-H", &header, &url],
        );
        if !out.status.success() {
            return Err(format!(
                "GET {path}: curl {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8(out.stdout).map_err(|e| format!("GET {path}: not UTF-8: {e}"))
    }

    /// The service's live status from the API (`GET /v1/services/www`).
    pub fn status(&self) -> Result<serde_json::Value, String> {
        self.api_get(&format!("/v1/services/{SERVICE}"))
    }

    /// Waits until the coordinator reports a tick that saw `primary_up`, `backup_up` and at
    /// least `up_votes` valid "up" votes.
    pub fn wait_status(
        &self,
        timeout: Duration,
        primary_up: bool,
        backup_up: bool,
        up_votes: u64,
    ) -> Result<serde_json::Value, String> {
        poll_until(
            "the coordinator's status",
            timeout,
            Duration::from_millis(200),
            |last| {
                let s = match self.status() {
                    Ok(s) => s,
                    Err(e) => {
                        *last = e;
                        return None;
                    }
                };
                *last = s.to_string();
                let ok = s["primary_up"] == primary_up
                    && s["backup_up"] == backup_up
                    && s["last_votes"]["up"].as_u64().unwrap_or(0) >= up_votes;
                ok.then_some(s)
            },
        )
    }

    fn wait_ready(&mut self) {
        let honest = 3 - u64::from(self.opts.rogue_witness.is_some());
        if let Err(e) = self.wait_status(READY_DEADLINE, true, true, honest) {
            panic!("the lab did not become ready: {e}");
        }
        let primary = self.addrs_of(Host::Primary);
        self.wait_client_sees(Rtype::A, &primary[..1], Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    // ---------- the client's view ----------

    /// Asks BIND for the name's A or AAAA record from the client host (`dig`).
    pub fn client_query(&self, rtype: Rtype) -> Result<Vec<IpAddr>, String> {
        let server = format!("@{}", self.addr4(Host::Dns));
        let out = self.exec(
            Host::Client,
            &[
                "dig",
                &server,
                NAME,
                rtype.as_str(),
                "+short",
                "+norecurse",
                "+time=1",
                "+tries=1",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "dig {} {NAME}: {} {}",
                rtype.as_str(),
                out.status,
                text.trim()
            ));
        }
        let mut addrs: Vec<IpAddr> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        addrs.sort();
        Ok(addrs)
    }

    /// Polls until the client's answer is exactly `want`.
    pub fn wait_client_sees(
        &self,
        rtype: Rtype,
        want: &[IpAddr],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        let mut want = want.to_vec();
        want.sort();
        let r = poll_until(
            &format!("the client to see {NAME} {} = {want:?}", rtype.as_str()),
            timeout,
            Duration::from_millis(200),
            |last| match self.client_query(rtype) {
                Ok(a) if a == want => Some(()),
                Ok(a) => {
                    *last = format!("{a:?}");
                    None
                }
                Err(e) => {
                    *last = e;
                    None
                }
            },
        );
        r.map(|()| {
            let took = start.elapsed();
            self.log(&format!(
                "client sees {NAME} {} = {want:?} (after {:.1}s)",
                rtype.as_str(),
                took.as_secs_f64()
            ));
            took
        })
    }

    /// For `period`, checks every ~300 ms that the client's answer is still `want` (a failed
    /// query is retried; more than 5 s without any answer fails too). Returns how many answers
    /// were checked.
    pub fn assert_client_stays(
        &self,
        rtype: Rtype,
        want: &[IpAddr],
        period: Duration,
        why: &str,
    ) -> u32 {
        let mut want = want.to_vec();
        want.sort();
        let start = Instant::now();
        let mut last_answer = Instant::now();
        let mut checked = 0u32;
        while start.elapsed() < period {
            match self.client_query(rtype) {
                Ok(a) => {
                    assert_eq!(
                        a,
                        want,
                        "{why}: after {:.1}s of {period:?} the client sees {NAME} {} = {a:?}, expected {want:?}",
                        start.elapsed().as_secs_f64(),
                        rtype.as_str()
                    );
                    checked += 1;
                    last_answer = Instant::now();
                }
                Err(e) => assert!(
                    last_answer.elapsed() < Duration::from_secs(5),
                    "{why}: the client got no DNS answer for 5 s: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        self.log(&format!(
            "client kept seeing {NAME} {} = {want:?} for {period:?} ({checked} answers): {why}",
            rtype.as_str()
        ));
        checked
    }

    /// The primary's / backup's addresses as the client should see them for `rtype`.
    pub fn expect(&self, h: Host, rtype: Rtype) -> Vec<IpAddr> {
        match rtype {
            Rtype::A => vec![IpAddr::V4(self.addr4(h))],
            Rtype::Aaaa => vec![IpAddr::V6(self.addr6(h))],
        }
    }

    // ---------- the history ----------

    /// The coordinator's SQLite history, opened read-only (as `quorate-coordinator history`
    /// does while the daemon runs).
    pub fn history(&self) -> History {
        let store = Store::open_read_only(&self.db_path())
            .unwrap_or_else(|e| panic!("cannot open the history: {e}"));
        History { store }
    }

    /// Runs `quorate-coordinator <args> --config <lab config>` and returns its output.
    pub fn coordinator_cli(&self, args: &[&str]) -> Output {
        run(Command::new(self.bin("quorate-coordinator"))
            .args(args)
            .arg("--config")
            .arg(self.config_path()))
    }

    /// Runs the coordinator binary with exactly `args` (no `--config` added).
    pub fn coordinator_raw(&self, args: &[&str]) -> Output {
        run(Command::new(self.bin("quorate-coordinator")).args(args))
    }

    /// The human-readable timeline (`quorate-coordinator history`), for failure messages.
    pub fn timeline(&self) -> String {
        let out = self.coordinator_cli(&["history", "--service", SERVICE, "--limit", "1000"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn teardown(&mut self) {
        for p in &mut self.procs {
            // Not reaped yet, so the PID is still this process.
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.procs.clear();
        // Anything else in our namespaces was started by us (we created them).
        for ns in &self.namespaces {
            let out = run(Command::new("ip").args(["netns", "pids", ns]));
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if pid.chars().all(|c| c.is_ascii_digit()) {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        let _g = NETNS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let sw = self.sw();
        for ns in self.namespaces.iter().filter(|n| **n != sw) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if self.namespaces.contains(&sw) {
            let _ = Command::new("ip").args(["netns", "del", &sw]).status();
        }
        self.namespaces.clear();
        let left = existing_namespaces(&self.prefix);
        if !left.is_empty() {
            eprintln!(
                "[lab s{:02}] WARNING: namespaces left after teardown: {}",
                self.opts.id,
                left.join(" ")
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            // Keep the timeline next to the logs before the processes go.
            let t = self.timeline();
            let _ = std::fs::write(self.dir.join("history.txt"), t);
        }
        self.teardown();
        let keep = failed || std::env::var_os("QLAB_KEEP").is_some();
        if keep {
            eprintln!(
                "[lab s{:02}] logs kept in {} (lab.log, coordinator.log, w1..w3.log, named.log, web-*.log, history.txt)",
                self.opts.id,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `key = "value"` from a TOML-ish block printed by a CLI.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Read-only view of the coordinator's history for the scenarios' assertions.
pub struct History {
    pub store: Store,
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("History")
    }
}

impl History {
    /// Every round of the service, oldest first.
    pub fn rounds(&self) -> Vec<Round> {
        let mut v = self
            .store
            .list_rounds(&RoundFilter {
                service: Some(SERVICE.into()),
                limit: 100_000,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("reading rounds: {e}"));
        v.sort_by_key(|r| r.id);
        v
    }

    /// Rounds with this outcome, oldest first.
    pub fn rounds_with(&self, outcome: &str) -> Vec<Round> {
        self.rounds()
            .into_iter()
            .filter(|r| r.round.outcome == outcome)
            .collect()
    }

    /// One round's stored votes.
    pub fn votes(&self, round_id: i64) -> Vec<VoteRecord> {
        self.store
            .round(round_id)
            .unwrap_or_else(|e| panic!("reading round {round_id}: {e}"))
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// Every event, oldest first.
    pub fn events(&self) -> Vec<Event> {
        let mut v = self
            .store
            .list_events(&ListFilter {
                service: Some(SERVICE.into()),
                limit: 100_000,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("reading events: {e}"));
        v.sort_by_key(|e| e.id);
        v
    }

    /// Alerts whose message starts with `kind` (e.g. `both-down`, `damped`).
    pub fn alerts(&self, kind: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == "alert" && e.message.starts_with(kind))
            .collect()
    }

    /// Every DNS change, oldest first.
    pub fn dns_changes(&self) -> Vec<DnsChangeRow> {
        let mut v = self
            .store
            .list_dns_changes(&ListFilter {
                service: Some(SERVICE.into()),
                limit: 100_000,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("reading DNS changes: {e}"));
        v.sort_by_key(|c| c.id);
        v
    }
}
