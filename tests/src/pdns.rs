//! A real PowerDNS authoritative server (`pdns_server`, gsqlite3 backend, HTTP API on) for
//! tests: a fresh SQLite database from Debian's schema, one zone created with the real
//! `pdnsutil`, DNS and API on their own loopback ports; killed on drop.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::net::{free_port, wait_soa, wait_tcp};

const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";
const READY_DEADLINE: Duration = Duration::from_secs(15);

pub struct Pdns {
    dir: tempfile::TempDir,
    dns_port: u16,
    api_port: u16,
    child: Option<Child>,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pdns {
    /// Starts `pdns_server` with `zone` (e.g. `"example.test"`, NS `ns1.<zone>`) holding
    /// `records`: `(name relative to the zone or "@", type, ttl, content)`. `api_key` opens
    /// the API.
    pub fn start(zone: &str, records: &[(&str, &str, u32, &str)], api_key: &str) -> Pdns {
        let dir = tempfile::tempdir().expect("temp dir");
        let zone = zone.trim_end_matches('.');
        let dns_port = free_port();
        let api_port = free_port();
        let db = dir.path().join("pdns.sqlite3");
        let schema =
            std::fs::File::open(SCHEMA).expect("pdns sqlite schema (pdns-backend-sqlite3)");
        run(Command::new("sqlite3").arg(&db).stdin(schema));
        let d = dir.path().display();
        let conf = format!(
            "launch=gsqlite3\ngsqlite3-database={db}\nlocal-address=127.0.0.1\nlocal-port={dns_port}\n\
             daemon=no\nguardian=no\nsocket-dir={d}\nsecurity-poll-suffix=\ndisable-syslog=yes\n\
             api=yes\napi-key={api_key}\nwebserver=yes\nwebserver-address=127.0.0.1\n\
             webserver-port={api_port}\nwebserver-allow-from=127.0.0.1/32\n",
            db = db.display()
        );
        std::fs::write(dir.path().join("pdns.conf"), conf).expect("write pdns.conf");
        let cfg = format!("--config-dir={d}");
        run(Command::new("pdnsutil")
            .arg(&cfg)
            .args(["create-zone", zone, &format!("ns1.{zone}")]));
        run(Command::new("pdnsutil").arg(&cfg).args([
            "add-record",
            zone,
            "ns1",
            "A",
            "300",
            "127.0.0.1",
        ]));
        for (name, rtype, ttl, content) in records {
            run(Command::new("pdnsutil").arg(&cfg).args([
                "add-record",
                zone,
                name,
                rtype,
                &ttl.to_string(),
                content,
            ]));
        }
        let log = std::fs::File::create(dir.path().join("pdns.log")).expect("pdns.log");
        let child = Command::new("pdns_server")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn pdns_server");
        let mut p = Pdns {
            dir,
            dns_port,
            api_port,
            child: Some(child),
        };
        let ready = wait_soa(p.dns_addr(), zone, READY_DEADLINE)
            .and_then(|()| wait_tcp(p.api_addr(), READY_DEADLINE));
        if let Err(e) = ready {
            let log = p.log();
            p.stop();
            panic!("pdns_server did not come up: {e}\n--- pdns.log ---\n{log}");
        }
        p
    }

    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dns_port))
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// `http://127.0.0.1:<port>`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pdns.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Pdns {
    fn drop(&mut self) {
        self.stop();
    }
}
