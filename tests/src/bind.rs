//! A real BIND 9 (`named -g`) for tests: one primary zone with a TSIG key allowed to update
//! it, on its own loopback port, in a temp dir; killed on drop. Also runs the real `nsupdate`
//! against it, to make changes "by hand".

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::net::{free_port, soa_over_tcp, wait_soa, wait_tcp};

/// How long `named` may take to serve its zone.
const READY_DEADLINE: Duration = Duration::from_secs(15);

/// A `named.conf` for one primary zone in `dir` that `key_name` may update, listening on
/// `listen_v4` / `listen_v6` (address-match lists like `"127.0.0.1;"`, `"none;"`) at `port`.
#[allow(clippy::too_many_arguments)]
pub fn named_conf(
    dir: &str,
    listen_v4: &str,
    listen_v6: &str,
    port: u16,
    zone: &str,
    key_name: &str,
    secret: &str,
    alg: &str,
) -> String {
    let mut conf = named_conf_head(dir, listen_v4, listen_v6, port, key_name, secret, alg);
    conf.push_str(&zone_block(dir, zone, key_name));
    conf
}

/// The key and options of [`named_conf`] without any zone: a server that answers but is
/// authoritative for nothing (REFUSED for every name).
#[allow(clippy::too_many_arguments)]
pub fn named_conf_head(
    dir: &str,
    listen_v4: &str,
    listen_v6: &str,
    port: u16,
    key_name: &str,
    secret: &str,
    alg: &str,
) -> String {
    format!(
        r#"key "{key_name}" {{ algorithm {alg}; secret "{secret}"; }};
options {{
    directory "{dir}"; pid-file "{dir}/named.pid"; session-keyfile "{dir}/session.key";
    listen-on port {port} {{ {listen_v4} }}; listen-on-v6 port {port} {{ {listen_v6} }};
    recursion no; dnssec-validation no; notify no;
}};
controls {{ }};
"#
    )
}

/// The `zone` block of [`named_conf`]: primary, file `<dir>/<zone>.zone`, updatable by
/// `key_name`.
pub fn zone_block(dir: &str, zone: &str, key_name: &str) -> String {
    format!(
        r#"zone "{zone}" {{
    type primary; file "{dir}/{zone}.zone";
    update-policy {{ grant {key_name} zonesub ANY; }};
}};
"#
    )
}

/// The zone file: SOA (serial 1), `NS ns1`, `ns1 A <ns_addr>`, then `records` (zone-file
/// lines; default TTL 300).
pub fn zone_text(zone: &str, ns_addr: &str, records: &str) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns1.{zone}. hostmaster.{zone}. ( 1 3600 600 86400 60 )\n  IN NS ns1.{zone}.\nns1 IN A {ns_addr}\n{records}\n"
    )
}

/// Polls until `named` at `addr` answers an SOA query for `zone` with any DNS answer (used
/// when it is not authoritative for the zone: the answer is REFUSED).
fn wait_answering(addr: SocketAddr, zone: &str, deadline: Duration) -> Result<(), String> {
    wait_tcp(addr, deadline)?;
    let start = std::time::Instant::now();
    loop {
        match soa_over_tcp(addr, zone, Duration::from_millis(500)) {
            Ok(()) => return Ok(()),
            Err(e) if e.starts_with("SOA query for") => return Ok(()),
            Err(e) if start.elapsed() > deadline => {
                return Err(format!("{addr} does not answer after {deadline:?}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

pub struct Bind {
    dir: tempfile::TempDir,
    port: u16,
    zone: String,
    key_name: String,
    secret: String,
    alg: String,
    /// False after [`Bind::set_serves_zone`]`(false)`: `named.conf` has no zone block.
    serves_zone: bool,
    child: Option<Child>,
}

impl Bind {
    /// Starts `named` serving `zone` (e.g. `"example.test"`) with the SOA, `NS ns1`, `ns1 A
    /// 127.0.0.1` and then `records` (zone-file lines, `$TTL 300`). `key_name`/`secret`
    /// (base64) with `alg` (`"hmac-sha256"`, `"hmac-sha512"`) may update any name in the zone.
    pub fn start(zone: &str, records: &str, key_name: &str, secret: &str, alg: &str) -> Bind {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = zone.trim_end_matches('.').to_string();
        let port = free_port();
        let zonefile = zone_text(&zone, "127.0.0.1", records);
        std::fs::write(dir.path().join(format!("{zone}.zone")), zonefile).expect("write zone");
        let mut bind = Bind {
            dir,
            port,
            zone,
            key_name: key_name.into(),
            secret: secret.into(),
            alg: alg.into(),
            serves_zone: true,
            child: None,
        };
        bind.write_conf();
        bind.launch();
        bind
    }

    /// Writes `named.conf` and the `nsupdate` key file (0600, replaced atomically) from the
    /// current key and zone settings.
    fn write_conf(&self) {
        let d = self.dir.path().display().to_string();
        let mut conf = named_conf_head(
            &d,
            "127.0.0.1;",
            "none;",
            self.port,
            &self.key_name,
            &self.secret,
            &self.alg,
        );
        if self.serves_zone {
            conf.push_str(&zone_block(&d, &self.zone, &self.key_name));
        }
        std::fs::write(self.dir.path().join("named.conf"), conf).expect("write named.conf");
        let keyfile = format!(
            r#"key "{}" {{ algorithm {}; secret "{}"; }};"#,
            self.key_name, self.alg, self.secret
        );
        let tmp = self.dir.path().join("nsupdate.key.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(keyfile.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, self.nsupdate_key_file()))
            .expect("write nsupdate key");
    }

    /// Starts `named` and waits until it serves the zone (or, without the zone, until it
    /// answers an SOA query at all: REFUSED).
    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("named.log"))
            .expect("open named.log");
        let child = Command::new("named")
            .arg("-g")
            .arg("-4")
            .arg("-c")
            .arg(self.dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn named (is bind9 installed?)");
        self.child = Some(child);
        let ready = if self.serves_zone {
            wait_soa(self.addr(), &self.zone, READY_DEADLINE)
        } else {
            wait_answering(self.addr(), &self.zone, READY_DEADLINE)
        };
        if let Err(e) = ready {
            let log =
                std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default();
            self.stop();
            panic!("named did not come up: {e}\n--- named.log ---\n{log}");
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The key in `nsupdate -k` form (mode 0600).
    pub fn nsupdate_key_file(&self) -> PathBuf {
        self.dir.path().join("nsupdate.key")
    }

    /// Kills `named` and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts `named` again on the same port with the same files (updates made so far are
    /// in the journal and survive).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts `named` if it is stopped; does nothing while it runs.
    pub fn start_again(&mut self) {
        if !self.is_running() {
            self.child = None;
            self.launch();
        }
    }

    /// Whether `named` is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The TSIG key as the server knows it now: (name, base64 secret, algorithm).
    pub fn key(&self) -> (&str, &str, &str) {
        (&self.key_name, &self.secret, &self.alg)
    }

    /// Rotates the key's secret on the server side (and in the `nsupdate` key file), then
    /// restarts `named` on the same port (there is no control channel for `rndc reconfig`).
    pub fn set_secret(&mut self, secret: &str) {
        self.secret = secret.into();
        self.reconfigure();
    }

    /// Renames the key on the server side (the secret stays): a client still signing with
    /// the old name gets BADKEY. Restarts `named`.
    pub fn rename_key(&mut self, key_name: &str) {
        self.key_name = key_name.into();
        self.reconfigure();
    }

    /// With `false`, `named` no longer serves the zone at all (it answers REFUSED); with
    /// `true` it serves it again (with the updates made before). Restarts `named`.
    pub fn set_serves_zone(&mut self, serves: bool) {
        self.serves_zone = serves;
        self.reconfigure();
    }

    /// Rewrites the config and restarts if running (else only rewrites: the next start
    /// uses it).
    fn reconfigure(&mut self) {
        self.write_conf();
        if self.is_running() {
            self.restart();
        }
    }

    /// Runs the real `nsupdate -k <key file>` with `commands` (e.g. `update delete ...`),
    /// adding `server`, `zone` and `send`.
    pub fn nsupdate(&self, commands: &str) -> Output {
        let script = format!(
            "server 127.0.0.1 {}\nzone {}\n{}\nsend\n",
            self.port, self.zone, commands
        );
        let mut child = Command::new("nsupdate")
            .arg("-k")
            .arg(self.nsupdate_key_file())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsupdate");
        child
            .stdin
            .take()
            .expect("nsupdate stdin")
            .write_all(script.as_bytes())
            .expect("write nsupdate script");
        child.wait_with_output().expect("nsupdate output")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.stop();
    }
}
