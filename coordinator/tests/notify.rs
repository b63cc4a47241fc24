//! Notifications against real receivers started here: an SMTP server (Debian's
//! `python3-aiosmtpd`: plain, STARTTLS and implicit TLS, the last two with a test CA and a leaf
//! it signed) and an HTTP receiver (axum on loopback) for the webhook, Slack and ntfy formats,
//! which checks the webhook's HMAC the way `docs/notifications.md` tells a receiver to.
//!
//! - `notify test` (the real binary) reaches every channel and prints what each answered; a
//!   receiver that refuses makes it fail, naming the channel;
//! - end to end through an in-process coordinator: a failover and a failback each arrive on
//!   every channel with the right content (votes, sides, dashboard link, email threading), while
//!   a hung receiver delays neither the decisions nor the other channels;
//! - the pre-failback gate fails, is retried, raises `gate-failing`, passes, and only then does
//!   DNS go back; every try is in the history.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Lab, Opts, Site, Tarpit, eventually};
use coordinator::Coordinator;
use coordinator::dns::dryrun::DryRun;
use coordinator::dns::{DnsBackend as _, RecordSet};
use coordinator::failover::Side;
use coordinator::store::ListFilter;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "test-webhook-secret-0123456789";
const NTFY_TOKEN: &str = "tk_test_ntfy_token";

/// One request the HTTP receiver got.
#[derive(Clone, Debug)]
struct Req {
    path: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The webhook signature checked as a receiver would: HMAC-SHA256 over
    /// `timestamp.body`, the timestamp within 5 minutes.
    fn signature_ok(&self, secret: &str) -> bool {
        let ts = self.header("X-Quorate-Timestamp");
        let Some(sig) = self
            .header("X-Quorate-Signature")
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        let Ok(t) = ts.parse::<u64>() else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if now.abs_diff(t) > 300 {
            return false;
        }
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let mut signed = format!("{ts}.").into_bytes();
        signed.extend_from_slice(&self.body);
        ring::hmac::verify(&key, &signed, &sig).is_ok()
    }
}

/// An HTTP receiver on 127.0.0.1: records every POST; `/ntfy/...` answers like ntfy (JSON),
/// the rest `ok`.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    let path = uri.path().to_string();
                    s.lock().unwrap().push(Req {
                        path: path.clone(),
                        headers,
                        body: body.to_vec(),
                    });
                    if path.starts_with("/ntfy/") {
                        r#"{"id":"abc123","event":"message","topic":"quorate"}"#.to_string()
                    } else {
                        "ok".to_string()
                    }
                }
            },
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        Receiver { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn on(&self, path: &str) -> Vec<Req> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// How the SMTP sink protects its port.
enum SmtpMode {
    Plain,
    StartTls,
    ImplicitTls,
}

/// `python3 -m aiosmtpd` on 127.0.0.1, storing every message in a maildir; killed on drop.
struct Smtp {
    port: u16,
    maildir: PathBuf,
    child: std::process::Child,
}

impl Smtp {
    async fn start(dir: &Path, name: &str, mode: SmtpMode, tls: &TestTls) -> Smtp {
        let maildir = dir.join(format!("maildir-{name}"));
        let port = common::free_port();
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
        let (cert, key) = (
            tls.cert.display().to_string(),
            tls.key.display().to_string(),
        );
        match mode {
            SmtpMode::Plain => {}
            SmtpMode::StartTls => {
                // STARTTLS offered and required before MAIL (aiosmtpd's default).
                cmd.args(["--tlscert", &cert, "--tlskey", &key]);
            }
            SmtpMode::ImplicitTls => {
                cmd.args(["--smtpscert", &cert, "--smtpskey", &key]);
            }
        }
        cmd.args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start python3 -m aiosmtpd ({e}); install it: apt-get install -y python3-aiosmtpd (tests/run.sh does)")
        });
        let mut smtp = Smtp {
            port,
            maildir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = smtp.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = smtp.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!(
                    "aiosmtpd exited with {status}: {err}\n(apt-get install -y python3-aiosmtpd)"
                );
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        smtp
    }

    /// Every message received so far (raw, headers and body), oldest first.
    fn messages(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, String, String)> = dir
            .filter_map(|e| e.ok())
            .map(|e| {
                let p = e.path();
                (
                    e.metadata().unwrap().modified().unwrap(),
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, _, m)| m).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a leaf for 127.0.0.1 and localhost that it signed (a self-signed CA-only
/// certificate is refused by rustls as an end-entity certificate).
struct TestTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn test_tls(dir: &Path) -> TestTls {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Quorate test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "smtp test leaf");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let t = TestTls {
        ca: dir.join("test-ca.pem"),
        cert: dir.join("smtp-cert.pem"),
        key: dir.join("smtp-key.pem"),
    };
    std::fs::write(&t.ca, ca_cert.pem()).unwrap();
    std::fs::write(&t.cert, leaf.pem()).unwrap();
    shared::keys::write_private_file(&t.key, leaf_key.serialize_pem().as_bytes()).unwrap();
    t
}

/// The `[notify]` tables for every channel kind, pointing at `rx` and the SMTP sinks.
fn channels(lab: &Lab, rx: &Receiver, smtp: &[(&str, &Smtp, &str)], tls: &TestTls) -> String {
    shared::keys::write_private_file(&lab.path().join("webhook.secret"), SECRET.as_bytes())
        .unwrap();
    shared::keys::write_private_file(&lab.path().join("ntfy.token"), NTFY_TOKEN.as_bytes())
        .unwrap();
    shared::keys::write_private_file(
        &lab.path().join("slack.url"),
        rx.url("/slack/T000/B000/XXXX").as_bytes(),
    )
    .unwrap();
    let mut s = format!(
        r#"
[notify]
dashboard_url = "https://dash.example.test/services/{{service}}"

[[notify.webhook]]
name = "hook"
url = "{hook}"
secret_file = "webhook.secret"

[[notify.webhook]]
name = "chat"
url_file = "slack.url"
format = "slack"

[[notify.ntfy]]
name = "phone"
url = "{ntfy}"
token_file = "ntfy.token"
"#,
        hook = rx.url("/hook"),
        ntfy = rx.url("/ntfy/quorate"),
    );
    for (name, sink, mode) in smtp {
        s.push_str(&format!(
            r#"
[[notify.email]]
name = "{name}"
server = "127.0.0.1"
port = {port}
tls = "{mode}"
ca_file = {ca:?}
from = "Quorate <quorate@example.test>"
to = ["oncall@example.test"]
"#,
            port = sink.port,
            ca = tls.ca.display().to_string(),
        ));
    }
    s
}

fn header_of<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let head = message.split("\n\n").next().unwrap_or("");
    head.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reaches_every_channel_and_reports_what_each_answered() {
    let lab = Lab::new();
    let tls = test_tls(lab.path());
    let rx = Receiver::start().await;
    let plain = Smtp::start(lab.path(), "plain", SmtpMode::Plain, &tls).await;
    let starttls = Smtp::start(lab.path(), "starttls", SmtpMode::StartTls, &tls).await;
    let implicit = Smtp::start(lab.path(), "tls", SmtpMode::ImplicitTls, &tls).await;
    // Refuses connections: `notify test` must say so and fail.
    let closed = common::free_port();
    let (p, b) = common::two_sites_port();
    let opts = Opts::new(vec![], p.ip(), b.ip(), p.port());
    let mut text = opts.toml().replace("quorum = 2\n", "quorum = 1\n");
    // A service needs a witness; this one is never asked (the daemon does not run).
    let w = shared::keys::generate();
    text.push_str(&common::witness_block(
        "w1",
        "https://127.0.0.1:9",
        &w.verifying_key(),
        None,
    ));
    text.push_str(&channels(
        &lab,
        &rx,
        &[
            ("mail-plain", &plain, "none"),
            ("mail-starttls", &starttls, "starttls"),
            ("mail-tls", &implicit, "tls"),
        ],
        &tls,
    ));
    text.push_str(&format!(
        "\n[[notify.webhook]]\nname = \"down\"\nurl = \"http://127.0.0.1:{closed}/hook\"\n"
    ));
    let config = lab.write_config(&text);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
            .args(["notify", "test", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };

    // Every channel: the working ones answer, the closed one fails the command.
    let (ok, out) = run(&[]);
    println!("notify test:\n{out}");
    assert!(!ok, "a refused channel must fail the command:\n{out}");
    for (name, kind, answer) in [
        ("hook", "webhook", "HTTP 200 OK: ok"),
        ("chat", "slack", "HTTP 200 OK: ok"),
        ("phone", "ntfy", "HTTP 200 OK: {\"id\":\"abc123\""),
        ("mail-plain", "email", "SMTP 250 OK"),
        ("mail-starttls", "email", "SMTP 250 OK"),
        ("mail-tls", "email", "SMTP 250 OK"),
    ] {
        let line = format!("OK    {name} ({kind}): {answer}");
        assert!(out.contains(&line), "no {line:?} in:\n{out}");
    }
    assert!(
        out.contains("FAIL  down (webhook): cannot connect"),
        "{out}"
    );
    for secret in [SECRET, NTFY_TOKEN, "/slack/T000"] {
        assert!(!out.contains(secret), "a secret in the output: {out}");
    }

    // One channel: only it is tried, and it passes.
    let before = rx.on("/hook").len();
    let (ok, out) = run(&["--channel", "mail-starttls"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(rx.on("/hook").len(), before, "only the named channel");
    let (ok, out) = run(&["--channel", "nope"]);
    assert!(!ok && out.contains("no channel named \"nope\""), "{out}");

    // What the receivers got.
    let hook = rx.on("/hook");
    assert_eq!(hook.len(), 1);
    assert!(hook[0].signature_ok(SECRET), "the HMAC does not verify");
    assert!(
        !hook[0].signature_ok("another-secret"),
        "a wrong secret must not verify"
    );
    let p = hook[0].json();
    assert_eq!(p["version"], 1);
    assert_eq!(p["event"], "test");
    assert_eq!(p["service"], "coordinator");
    let slack = rx.on("/slack/T000/B000/XXXX");
    assert_eq!(slack.len(), 1);
    assert!(
        slack[0].json()["text"]
            .as_str()
            .unwrap()
            .starts_with("[quorate] coordinator: test: test notice"),
        "{}",
        slack[0].text()
    );
    let ntfy = rx.on("/ntfy/quorate");
    assert_eq!(ntfy.len(), 1);
    assert_eq!(
        ntfy[0].header("Authorization"),
        format!("Bearer {NTFY_TOKEN}")
    );
    assert_eq!(ntfy[0].header("Title"), "[quorate] coordinator: test");
    for (sink, n) in [(&plain, 1), (&starttls, 2), (&implicit, 1)] {
        let m = sink.messages();
        assert_eq!(m.len(), n, "{m:?}");
        assert_eq!(
            header_of(&m[0], "Subject"),
            Some("[quorate] coordinator: test")
        );
        assert!(m[0].contains("Service:     coordinator"), "{}", m[0]);
    }
    println!(
        "--- sample: email\n{}\n--- sample: webhook\n{}\n",
        plain.messages()[0],
        serde_json::to_string_pretty(&p).unwrap()
    );
}

/// The e2e rig: three witnesses, two sites, the dry-run DNS, the coordinator with `extra`
/// appended to its config.
struct Rig {
    _lab: Lab,
    primary: Site,
    _backup: Site,
    _witnesses: Vec<common::TestWitness>,
    dns: Arc<DryRun>,
    coord: Option<Coordinator>,
    shutdown: CancellationToken,
    primary_records: Vec<RecordSet>,
    backup_records: Vec<RecordSet>,
    zone: String,
}

impl Rig {
    async fn start(lab: Lab, extra: impl FnOnce(&Lab) -> String) -> Rig {
        let (p_addr, b_addr) = common::two_sites_port();
        let witnesses = common::start_witnesses(&lab, p_addr.port(), [vec![], vec![], vec![]]);
        let mut opts = Opts::new(
            witnesses.iter().map(|w| w.block()).collect(),
            p_addr.ip(),
            b_addr.ip(),
            p_addr.port(),
        );
        opts.recover_after = 4;
        let mut primary = Site::http(p_addr);
        let mut backup = Site::http(b_addr);
        primary.start().await;
        backup.start().await;
        let text = opts.toml() + &extra(&lab);
        let config = lab.config(&text);
        let svc = config.services[0].clone();
        let primary_records = svc.records_for(Side::Primary);
        let backup_records = svc.records_for(Side::Backup);
        let dns = Arc::new(DryRun::with_records(primary_records.clone()));
        let shutdown = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let coord = coordinator::start(config, listener, Some(dns.clone()), shutdown.clone())
            .await
            .unwrap();
        Rig {
            _lab: lab,
            primary,
            _backup: backup,
            _witnesses: witnesses,
            dns,
            coord: Some(coord),
            shutdown,
            primary_records,
            backup_records,
            zone: svc.zone.clone(),
        }
    }

    async fn serves(&self, side: Side) -> bool {
        let want = match side {
            Side::Primary => &self.primary_records,
            Side::Backup => &self.backup_records,
        };
        &self
            .dns
            .current(&self.zone, &self.primary_records)
            .await
            .unwrap()
            == want
    }

    async fn wait_serves(&self, side: Side) -> Instant {
        eventually(&format!("DNS serving the {side}"), DEADLINE, || async {
            self.serves(side).await.then_some(())
        })
        .await;
        Instant::now()
    }

    async fn events(&self) -> Vec<coordinator::store::Event> {
        let f = ListFilter {
            service: Some("web".into()),
            limit: 500,
            ..Default::default()
        };
        let mut e = self
            .coord
            .as_ref()
            .unwrap()
            .store
            .call(move |s| s.list_events(&f))
            .await
            .unwrap();
        e.reverse();
        e
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.coord.take() {
            c.wait(Duration::from_secs(10)).await;
        }
    }
}

/// Waits for a request on `path` whose JSON or text satisfies `pred`.
async fn wait_req(rx: &Receiver, path: &str, what: &str, pred: impl Fn(&Req) -> bool) -> Req {
    eventually(what, DEADLINE, || async {
        rx.on(path).into_iter().find(|r| pred(r))
    })
    .await
}

async fn wait_mail(sink: &Smtp, what: &str, subject: &str) -> String {
    eventually(what, DEADLINE, || async {
        sink.messages()
            .into_iter()
            .find(|m| header_of(m, "Subject") == Some(subject))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_failback_reach_every_channel_and_a_hung_receiver_delays_nothing() {
    let lab = Lab::new();
    let tls = test_tls(lab.path());
    let rx = Receiver::start().await;
    let plain = Smtp::start(lab.path(), "plain", SmtpMode::Plain, &tls).await;
    let starttls = Smtp::start(lab.path(), "starttls", SmtpMode::StartTls, &tls).await;
    // Accepts and never answers: every delivery to it waits for its timeout (10 s), 5 times.
    let hung_port = common::free_port();
    let hung = Tarpit::start(format!("127.0.0.1:{hung_port}").parse().unwrap()).await;
    let mut rig = Rig::start(lab, |lab| {
        channels(
            lab,
            &rx,
            &[
                ("mail-plain", &plain, "none"),
                ("mail-starttls", &starttls, "starttls"),
            ],
            &tls,
        ) + &format!(
            "\n[[notify.webhook]]\nname = \"hung\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
            hung_port
        )
    })
    .await;

    // Failover.
    let stopped = Instant::now();
    rig.primary.stop().await;
    let switched = rig.wait_serves(Side::Backup).await;
    println!(
        "failover in DNS {:?} after the primary stopped",
        switched - stopped
    );
    let hook = wait_req(&rx, "/hook", "the webhook's failover notice", |r| {
        r.json()["event"] == "failover"
    })
    .await;
    assert!(hook.signature_ok(SECRET));
    let p = hook.json();
    assert_eq!(p["version"], 1);
    assert_eq!(p["kind"], "transition");
    assert_eq!(p["service"], "web");
    assert_eq!(p["from"], "primary");
    assert_eq!(p["to"], "backup");
    assert_eq!(p["severity"], "critical");
    assert!(p["votes"]["down"].as_u64().unwrap() >= 2, "{p}");
    assert_eq!(p["dashboard_url"], "https://dash.example.test/services/web");
    let slack = wait_req(
        &rx,
        "/slack/T000/B000/XXXX",
        "the chat's failover notice",
        |r| {
            r.json()["text"]
                .as_str()
                .unwrap_or("")
                .contains(": failover: ")
        },
    )
    .await;
    let text = slack.json()["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("[quorate] web: failover: primary-active -> backup-active")
            && text.contains("votes: ")
            && text.ends_with("https://dash.example.test/services/web"),
        "{text}"
    );
    let ntfy = wait_req(&rx, "/ntfy/quorate", "ntfy's failover notice", |r| {
        r.header("Title") == "[quorate] web: failover"
    })
    .await;
    assert_eq!(ntfy.header("Priority"), "5");
    assert_eq!(
        ntfy.header("Click"),
        "https://dash.example.test/services/web"
    );
    assert!(ntfy.text().contains("backup-active"), "{}", ntfy.text());
    let mut failover_ids = Vec::new();
    for sink in [&plain, &starttls] {
        let m = wait_mail(sink, "the failover email", "[quorate] web: failover").await;
        assert!(m.contains("Switch:      primary -> backup"), "{m}");
        assert!(m.contains("Votes:       "), "{m}");
        failover_ids.push(header_of(&m, "Message-ID").unwrap().to_string());
    }
    // The other channels did not wait for the hung one: everything arrived within a few
    // seconds of the switch, less than one delivery timeout of the hung receiver (10 s).
    assert!(
        switched.elapsed() < Duration::from_secs(8),
        "the notices took {:?} after the switch",
        switched.elapsed()
    );

    // Failback, after the hold-down.
    rig.primary.start().await;
    let back = rig.wait_serves(Side::Primary).await;
    let hook = wait_req(&rx, "/hook", "the webhook's failback notice", |r| {
        r.json()["event"] == "failback"
    })
    .await;
    assert!(hook.signature_ok(SECRET));
    let p = hook.json();
    assert_eq!(
        (p["from"].as_str(), p["to"].as_str()),
        (Some("backup"), Some("primary"))
    );
    assert!(p["votes"].is_object(), "{p}");
    wait_req(&rx, "/slack/T000/B000/XXXX", "the chat's failback", |r| {
        r.json()["text"]
            .as_str()
            .unwrap_or("")
            .contains(": failback: ")
    })
    .await;
    wait_req(&rx, "/ntfy/quorate", "ntfy's failback", |r| {
        r.header("Title") == "[quorate] web: failback"
    })
    .await;
    for (sink, root) in [&plain, &starttls].into_iter().zip(&failover_ids) {
        // The failback answers the incident's thread.
        let m = wait_mail(sink, "the failback email", "Re: [quorate] web: failover").await;
        let m = if m.contains("Event:       failback") {
            m
        } else {
            eventually("the failback reply", DEADLINE, || async {
                sink.messages().into_iter().find(|m| {
                    header_of(m, "Subject") == Some("Re: [quorate] web: failover")
                        && m.contains("Event:       failback")
                })
            })
            .await
        };
        assert!(
            header_of(&m, "References").unwrap().contains(root.as_str()),
            "{m}"
        );
        assert!(header_of(&m, "In-Reply-To").is_some(), "{m}");
        println!("--- sample: failback email\n{m}");
    }
    assert!(
        back.elapsed() < Duration::from_secs(8),
        "failback notices took {:?}",
        back.elapsed()
    );
    println!(
        "--- sample: webhook failback\n{}\n--- sample: chat\n{text}\n--- sample: ntfy\nTitle: {}\nPriority: {}\nTags: {}\n\n{}",
        serde_json::to_string_pretty(&p).unwrap(),
        ntfy.header("Title"),
        ntfy.header("Priority"),
        ntfy.header("Tags"),
        ntfy.text()
    );
    drop(hung);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gate_is_retried_until_it_passes_and_only_then_dns_goes_back() {
    let lab = Lab::new();
    let rx = Receiver::start().await;
    let counter = lab.path().join("gate-tries");
    // Fails twice (saying why), passes the third time.
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
         if [ \"$n\" -lt 3 ]; then echo \"replica still syncing ($n)\" >&2; exit 1; fi",
        c = counter.display()
    );
    let mut rig = Rig::start(lab, |_| {
        format!(
            r#"
[service.hooks]
pre_failback = ["/bin/sh", "-c", {script:?}]
gate_retry_max = "1s"
gate_alert_after = "1s"

[[notify.webhook]]
url = "{url}"
events = ["failover", "failback", "gate-failing"]
"#,
            url = rx.url("/hook")
        )
    })
    .await;
    rig.primary.stop().await;
    rig.wait_serves(Side::Backup).await;
    rig.primary.start().await;
    // The failback is decided; the gate fails twice before DNS may go back.
    let alert = wait_req(&rx, "/hook", "gate-failing", |r| {
        let j = r.json();
        j["event"] == "gate-failing" && j["resolved"] == false
    })
    .await;
    let msg = alert.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("replica still syncing"), "{msg}");
    rig.wait_serves(Side::Primary).await;
    let tries: u32 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(tries, 3, "the gate ran {tries} times");
    wait_req(&rx, "/hook", "gate-failing resolved", |r| {
        let j = r.json();
        j["event"] == "gate-failing" && j["resolved"] == true
    })
    .await;
    // Every try is in the history, before the change was applied.
    let events = rig.events().await;
    let gate: Vec<&coordinator::store::Event> = events
        .iter()
        .filter(|e| e.kind.as_str() == "gate")
        .collect();
    let lines: Vec<&str> = gate.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(gate.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("pre_failback attempt 1 failed: /bin/sh exited with exit status: 1: replica still syncing (1)"), "{lines:#?}");
    assert!(
        lines[1].starts_with("pre_failback attempt 2 failed:"),
        "{lines:#?}"
    );
    assert_eq!(lines[2], "pre_failback attempt 3 passed; failing back");
    let applied = events
        .iter()
        .rfind(|e| e.kind.as_str() == "dns-applied")
        .unwrap();
    assert!(gate[2].id < applied.id, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e.kind.as_str() == "alert" && e.message.starts_with("gate-failing: ")),
        "{events:#?}"
    );
    // The failback notice went out when it was decided; DNS followed the gate.
    wait_req(&rx, "/hook", "the failback", |r| {
        r.json()["event"] == "failback"
    })
    .await;
    rig.stop().await;
}
