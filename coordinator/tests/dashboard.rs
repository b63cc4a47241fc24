//! The dashboard in a real browser: Debian's `chromium`, headless, driven through
//! `/usr/bin/chromedriver` over the W3C WebDriver protocol (a few JSON requests sent with the
//! workspace's reqwest: no Python, no WebDriver crate). Each test starts a running setup in
//! this process — a coordinator with the built-in DNS server, three real witnesses over HTTPS,
//! stand-in primary and backup web servers — and uses the pages as an operator would:
//!
//! - a read-only login shows no action buttons and cannot reach a confirmation; when the
//!   session expires, the open overview says so over its event stream and the next page is
//!   the login form;
//! - an admin pins the service to the backup from the page, confirms, and the built-in DNS
//!   server answers the backup; the same form posted without its CSRF token is refused;
//! - the primary stops: the open overview shows the failover within 2 s through server-sent
//!   events (no reload), and the failover round's votes open with their signatures verified;
//!   the public status page (no login) says the service runs on the backup, the incident
//!   ongoing;
//! - maintenance announced with the real `quorate-coordinator maintenance add|list|remove`
//!   shows on the status page; while the service is backup-active the maintenance page
//!   answers its names with 503, `Retry-After`, `no-store` and the incident's start, over HTTP
//!   (in the browser and with reqwest) and HTTPS (the operator's certificate, from a test CA);
//!   once the primary is back it answers 404, and 421 to any other host all along.
//!
//! Screenshots of the overview, the timeline and a round are written under the target folder
//! on every run, and into `docs/dashboard/` when `QUORATE_SCREENSHOTS=1`.
//!
//! Needs `chromium` and `chromium-driver` (tests/run.sh installs them); fails, naming them,
//! when they are missing. The tests take turns: one browser at a time on a 2-core machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{
    Lab, Opts, Site, TestWitness, eventually, free_port, start_witnesses, two_sites_port,
};
use coordinator::Coordinator;
use coordinator::dns::RecordType;
use coordinator::dns::served::query_rrset;
use coordinator::failover::{Override, Side};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// One browser at a time.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A WebDriver session on a chromedriver of our own; both end when it is dropped (the driver
/// is killed, and the browser with it).
struct Browser {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// A browser with extra command-line arguments.
    async fn start_with(extra_args: &[&str]) -> Browser {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's {package} (tests/run.sh does)"
            );
        }
        let port = free_port();
        let driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to answer /status", DEADLINE, || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                (v["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            "--no-first-run",
            "--disable-extensions",
            // The maintenance page is asked for by the service's name.
            "--host-resolver-rules=MAP www.example.test 127.0.0.1",
            "--disable-features=HttpsUpgrades",
        ]
        .iter()
        .chain(extra_args)
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": args,
            },
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver takes a new session")
            .json()
            .await
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        }
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error, quoting it.
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        match self.try_cmd(method.clone(), path, body).await {
            Ok(v) => v,
            Err((status, v)) => panic!("{method} {path}: {status}: {v}"),
        }
    }

    /// One WebDriver command: its `value`, or the error status and body.
    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (reqwest::StatusCode, Value)> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status();
        let v: Value = res.json().await.unwrap();
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err((status, v))
        }
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    /// Clicks the element `css` selects. An element of the overview's services table can be
    /// replaced by a server-sent push between finding and clicking it ("stale element
    /// reference"): then it is found again, until the deadline.
    async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), DEADLINE, || async {
            let id = self.find(css).await;
            match self
                .try_cmd(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await
            {
                Ok(_) => Some(()),
                Err((_, v)) if v["value"]["error"] == "stale element reference" => None,
                Err((status, v)) => panic!("click on {css}: {status}: {v}"),
            }
        })
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// The text of the first element matching `css`, `None` when there is none.
    async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .js(&format!(
                "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
                json!(css)
            ))
            .await;
        v.as_str().map(String::from)
    }

    async fn count(&self, css: &str) -> u64 {
        self.js(&format!(
            "return document.querySelectorAll({}).length;",
            json!(css)
        ))
        .await
        .as_u64()
        .unwrap()
    }

    /// Waits until the page's URL ends with `tail`.
    async fn wait_url(&self, tail: &str) {
        eventually(&format!("the browser at …{tail}"), DEADLINE, || async {
            self.url().await.ends_with(tail).then_some(())
        })
        .await;
    }

    /// Waits until an element matching `css` has text containing `want`.
    async fn wait_text(&self, css: &str, want: &str) -> String {
        eventually(&format!("{css} to say {want:?}"), DEADLINE, || async {
            self.text(css).await.filter(|t| t.contains(want))
        })
        .await
    }

    /// A PNG of the window, into the target folder and, with `QUORATE_SCREENSHOTS=1`, into
    /// `docs/dashboard/`.
    async fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard")];
        if std::env::var("QUORATE_SCREENSHOTS").as_deref() == Ok("1") {
            dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard"));
        }
        for d in dirs {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), &png).unwrap();
        }
    }

    async fn quit(mut self) {
        let _ = self
            .http
            .delete(&self.session)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let _ = self.driver.kill().await;
    }
}

/// A running setup: the coordinator (built-in DNS for `example.test` on its own port), three
/// witnesses, a primary and a backup. `extra` is appended to the config.
struct Setup {
    lab: Lab,
    primary: Site,
    _backup: Site,
    _witnesses: Vec<TestWitness>,
    coord: Coordinator,
    shutdown: CancellationToken,
    dns: SocketAddr,
    p_ip: IpAddr,
    b_ip: IpAddr,
    read_token: String,
    /// `https` with `[api] tls_cert_file`, else `http`.
    scheme: &'static str,
}

impl Setup {
    async fn start(extra: &str) -> Setup {
        Setup::start_with(extra, false).await
    }

    /// With `tls`, the API and the pages are served over HTTPS with a self-signed certificate
    /// for 127.0.0.1 (`api.crt`, `api.key` in the lab).
    async fn start_with(extra: &str, tls: bool) -> Setup {
        let lab = Lab::new();
        let (p_addr, b_addr) = two_sites_port();
        let mut primary = Site::http(p_addr);
        let mut backup = Site::http(b_addr);
        primary.start().await;
        backup.start().await;
        let witnesses = start_witnesses(&lab, p_addr.port(), [vec![], vec![], vec![]]);
        let dns_port = free_port();
        let mut opts = Opts::new(
            witnesses.iter().map(|w| w.block()).collect(),
            p_addr.ip(),
            b_addr.ip(),
            p_addr.port(),
        );
        opts.dns = format!(
            r#"type = "builtin"
listen = ["127.0.0.1:{dns_port}"]
zone = "example.test."
ns = ["ns1.example.test."]
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}]
verify = {{ servers = ["127.0.0.1:{dns_port}"], ns_port = {dns_port}, timeout = "5s" }}
"#
        );
        let read_token = format!("read-{}", lab.token);
        shared::keys::write_private_file(&lab.path().join("read.token"), read_token.as_bytes())
            .unwrap();
        let mut api_lines =
            "token_file = \"api.token\"\nread_token_file = \"read.token\"\n".to_string();
        if tls {
            let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
            std::fs::write(lab.path().join("api.crt"), cert).unwrap();
            shared::keys::write_private_file(&lab.path().join("api.key"), key.as_bytes()).unwrap();
            api_lines.push_str("tls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\n");
        }
        let text = opts
            .toml()
            .replace("token_file = \"api.token\"\n", &api_lines)
            + extra;
        let config = lab.config(&text);
        let shutdown = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let coord = coordinator::start(config, listener, None, shutdown.clone())
            .await
            .unwrap();
        let dns: SocketAddr = format!("127.0.0.1:{dns_port}").parse().unwrap();
        Setup {
            lab,
            primary,
            _backup: backup,
            _witnesses: witnesses,
            coord,
            shutdown,
            dns,
            p_ip: p_addr.ip(),
            b_ip: b_addr.ip(),
            read_token,
            scheme: if tls { "https" } else { "http" },
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.coord.api_addr)
    }

    fn status(&self) -> coordinator::service::ServiceStatus {
        self.coord.services["web"].current()
    }

    /// What the built-in server answers for www.example.test A.
    async fn served(&self) -> Vec<IpAddr> {
        query_rrset(
            self.dns,
            "www.example.test.",
            RecordType::A,
            Duration::from_secs(1),
        )
        .await
        .map(|s| s.addrs)
        .unwrap_or_default()
    }

    async fn wait_served(&self, ip: IpAddr) {
        eventually(
            &format!("the built-in DNS to answer {ip}"),
            DEADLINE,
            || async { (self.served().await == [ip]).then_some(()) },
        )
        .await;
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.coord.wait(Duration::from_secs(10)).await;
    }
}

/// Logs in with `token`; waits for the overview.
async fn login(b: &Browser, s: &Setup, token: &str) {
    b.goto(&s.url("/ui/login")).await;
    b.type_into("#token", token).await;
    b.click("#login").await;
    b.wait_url("/ui/").await;
    b.wait_text("tr[data-service=\"web\"] .side", "").await;
}

/// Over HTTPS (`[api] tls_cert_file`): the login works and the session cookie is `Secure` (and
/// still HttpOnly, SameSite=Strict). The certificate is self-signed, so the browser runs with
/// `--ignore-certificate-errors`: what is tested is the coordinator's side, not the trust
/// decision (that one is `tests/https.rs`, with the certificate as the client's only root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_login_gets_a_secure_cookie() {
    let _turn = BROWSER.lock().await;
    let s = Setup::start_with("", true).await;
    let b = Browser::start_with(&["--ignore-certificate-errors"]).await;
    assert!(s.url("/ui/").starts_with("https://"));
    login(&b, &s, &s.lab.token).await;
    assert!(b.url().await.starts_with("https://"));
    assert_eq!(b.text("#role").await.as_deref(), Some("admin"));
    let cookies = b.cmd(reqwest::Method::GET, "/cookie", None).await;
    let session = cookies
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "quorate_session")
        .unwrap_or_else(|| panic!("no session cookie in {cookies}"))
        .clone();
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_login_shows_no_actions_and_an_expired_session_goes_to_login() {
    let _turn = BROWSER.lock().await;
    let s = Setup::start("\n[dashboard]\nsession_ttl = \"4s\"\n").await;
    let b = Browser::start().await;

    // Not logged in: the overview sends the browser to the login form.
    b.goto(&s.url("/ui/")).await;
    b.wait_url("/ui/login").await;
    // A wrong token is refused, and says so.
    b.type_into("#token", "not-a-token").await;
    b.click("#login").await;
    b.wait_text("#login-error", "neither the admin nor the read-only token")
        .await;

    let logged_in = Instant::now();
    login(&b, &s, &s.read_token).await;
    assert_eq!(b.text("#role").await.as_deref(), Some("read"));
    assert_eq!(
        b.text("tr[data-service=\"web\"] .side").await.as_deref(),
        Some("primary")
    );
    assert_eq!(
        b.count(".action").await,
        0,
        "a read-only login shows no action"
    );
    assert!(b.count("th").await > 0, "the overview has its tables");
    // Nor can it reach a confirmation by its address.
    b.goto(&s.url("/ui/services/web/confirm?action=pin-backup"))
        .await;
    b.wait_text("#message", "read-only").await;
    assert_eq!(b.count("#confirm").await, 0);
    // The timeline has no action either.
    b.goto(&s.url("/ui/services/web")).await;
    b.wait_text("h1", "web").await;
    assert_eq!(b.count(".action").await, 0);
    // The overview again, its event stream open while the session still lasts.
    b.goto(&s.url("/ui/")).await;
    b.wait_url("/ui/").await;
    assert!(
        logged_in.elapsed() < Duration::from_secs(3),
        "the checks above took longer than the session lasts; the expiry below proves nothing"
    );

    // Four seconds after the login the session is over. The open overview is told so over
    // its event stream…
    b.wait_text("#expired", "The session is over").await;
    assert!(logged_in.elapsed() >= Duration::from_secs(4));
    // …and the next page is the login form.
    eventually(
        "the expired session to be sent to login",
        DEADLINE,
        || async {
            b.goto(&s.url("/ui/services/web")).await;
            b.url().await.ends_with("/ui/login").then_some(())
        },
    )
    .await;
    assert!(logged_in.elapsed() >= Duration::from_secs(4));
    assert_eq!(b.count("#token").await, 1);

    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_pins_the_backup_from_the_page_and_dns_answers_it_a_form_without_csrf_is_refused() {
    let _turn = BROWSER.lock().await;
    let s = Setup::start("").await;
    let b = Browser::start().await;
    s.wait_served(s.p_ip).await;

    login(&b, &s, &s.lab.token).await;
    assert_eq!(b.text("#role").await.as_deref(), Some("admin"));
    assert_eq!(b.count("tr[data-service=\"web\"] .action").await, 4);

    // The confirmation says what DNS will do.
    b.click("tr[data-service=\"web\"] a[href$=\"action=pin-backup\"]")
        .await;
    b.wait_url("/ui/services/web/confirm?action=pin-backup")
        .await;
    b.wait_text("#dns-effect", "switched now from the primary to the backup")
        .await;

    // The same form without its CSRF token: refused, nothing done.
    b.js("document.querySelector('form.confirm input[name=csrf]').remove(); document.querySelector('form.confirm').submit(); return null;")
        .await;
    b.wait_text("#message", "CSRF token").await;
    assert_eq!(b.text("h1").await.as_deref(), Some("Refused"));
    // With a wrong one as well.
    b.goto(&s.url("/ui/services/web/confirm?action=pin-backup"))
        .await;
    b.js("document.querySelector('form.confirm input[name=csrf]').value = 'f'.repeat(64); document.querySelector('form.confirm').submit(); return null;")
        .await;
    b.wait_text("#message", "CSRF token").await;
    assert_eq!(s.status().override_, Override::Auto);
    assert_eq!(s.served().await, [s.p_ip]);

    // Confirmed from the page: pinned, and the built-in server answers the backup.
    b.goto(&s.url("/ui/services/web/confirm?action=pin-backup"))
        .await;
    b.click("#confirm").await;
    b.wait_text("h1", "Done").await;
    assert_eq!(s.status().override_, Override::PinBackup);
    s.wait_served(s.b_ip).await;

    // The overview shows the pin and the side.
    b.goto(&s.url("/ui/")).await;
    b.wait_text("tr[data-service=\"web\"] .override", "pin-backup")
        .await;
    b.wait_text("tr[data-service=\"web\"] .side", "backup")
        .await;
    // The timeline lists the operator's action.
    b.goto(&s.url("/ui/services/web")).await;
    b.wait_text("ul.events", "override").await;

    // Logging out ends the session.
    b.click("#logout").await;
    b.wait_url("/ui/login").await;
    b.goto(&s.url("/ui/")).await;
    b.wait_url("/ui/login").await;

    b.quit().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_shows_on_the_open_overview_within_2s_and_its_votes_verify() {
    let _turn = BROWSER.lock().await;
    let mut s = Setup::start(
        "\n[status_page]\nlisten = \"127.0.0.1:0\"\nservices = [\"web\"]\ntitle = \"Example status\"\n",
    )
    .await;
    let status_page = format!("http://{}/", s.coord.status_addr.unwrap());
    let b = Browser::start().await;
    s.wait_served(s.p_ip).await;

    login(&b, &s, &s.lab.token).await;
    // Counts the services tables the server pushes; a reload would reset both values.
    b.js("window.quorateMarker = 42; window.sseMessages = 0; document.body.addEventListener('htmx:sseMessage', () => { window.sseMessages += 1; }); return null;")
        .await;
    eventually("a services table pushed over SSE", DEADLINE, || async {
        (b.js("return window.sseMessages;").await.as_u64() >= Some(1)).then_some(())
    })
    .await;
    assert_eq!(
        b.text("tr[data-service=\"web\"] .side").await.as_deref(),
        Some("primary")
    );
    // The public status page, before: operational, no incident.
    let before: String = reqwest::get(&status_page)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(before.contains("operational"), "{before}");
    assert!(
        before.contains("No incident in the last 90 days"),
        "{before}"
    );
    assert!(
        !before.contains("w1") && !before.contains("127.0.0.2"),
        "no votes, no addresses"
    );

    s.primary.stop().await;
    eventually("the coordinator to fail over", DEADLINE, || async {
        (s.status().active == Side::Backup).then_some(())
    })
    .await;
    let failed_over = Instant::now();
    eventually(
        "the open overview to show the failover",
        Duration::from_secs(2),
        || async {
            (b.text("tr[data-service=\"web\"] .side").await.as_deref() == Some("backup"))
                .then_some(())
        },
    )
    .await;
    let shown = failed_over.elapsed();
    assert_eq!(
        b.js("return window.quorateMarker;").await,
        json!(42),
        "the page was reloaded: the failover must arrive over server-sent events"
    );
    println!("failover shown on the overview {shown:?} after the coordinator decided it");
    s.wait_served(s.b_ip).await;
    // Let the DNS change settle on the page too, for the screenshot.
    b.wait_text("tr[data-service=\"web\"] .dns", "settled")
        .await;
    b.screenshot("overview.png").await;

    // The timeline, filtered to failovers; the round opens to its votes.
    b.click("tr[data-service=\"web\"] td a").await;
    b.wait_url("/ui/services/web").await;
    b.goto(&s.url("/ui/services/web?outcome=failover")).await;
    b.wait_text("table.rounds .outcome", "failover").await;
    assert_eq!(b.count("table.rounds tbody tr").await, 1);
    b.screenshot("timeline.png").await;
    b.click("table.rounds .round-link").await;
    b.wait_text("#outcome", "failover").await;
    let rows = b
        .js("return [...document.querySelectorAll('table.votes-table tbody tr')].map(r => [r.dataset.witness, r.querySelector('.vote').textContent.trim(), r.querySelector('.reverified').textContent.trim()]);")
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "one row per witness: {rows:?}");
    let down_and_verified = rows
        .iter()
        .filter(|r| r[1] == "down" && r[2] == "ok")
        .count();
    assert!(
        down_and_verified >= 2,
        "a failover needs a quorum of 2 verified down votes: {rows:?}"
    );
    for r in rows {
        assert!(
            r[2] == "ok" || r[1] == "missing",
            "every vote that answered verifies again: {rows:?}"
        );
    }
    b.screenshot("round.png").await;

    // The public status page, without a login: on the backup, the incident ongoing.
    b.goto(&status_page).await;
    b.wait_text(
        "section[data-service=\"web\"] .status",
        "running on the backup",
    )
    .await;
    assert_eq!(b.count("tr.incident.ongoing").await, 1);
    // The history's latest signed checkpoint, as the API serves it (signed on the DNS
    // change; the next periodic one is 10 minutes away).
    let head = b
        .text(".checkpoint .head")
        .await
        .expect("the status page shows the latest checkpoint");
    let served: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{}/v1/history/checkpoint", s.coord.api_addr))
        .bearer_auth(&s.read_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["checkpoint"]["head"], head.as_str(), "{served}");
    b.screenshot("status.png").await;

    b.quit().await;
    s.stop().await;
}

/// A test CA and a leaf for www.example.test and example.test signed by it: (CA PEM, leaf
/// cert file, leaf key file).
fn site_tls(dir: &std::path::Path) -> (String, PathBuf, PathBuf) {
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
    let leaf_params = CertificateParams::new(vec![
        "www.example.test".to_string(),
        "example.test".to_string(),
    ])
    .unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let (cert, key) = (dir.join("site.crt"), dir.join("site.key"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    shared::keys::write_private_file(&key, leaf_key.serialize_pem().as_bytes()).unwrap();
    (ca_cert.pem(), cert, key)
}

/// `quorate-coordinator maintenance ARGS --config CONFIG`, the real binary: (success, stdout).
async fn maintenance_cli(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .arg("maintenance")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), stdout + &stderr)
}

/// What a GET of `url` answers: status, Retry-After, Cache-Control, body.
async fn fetch(http: &reqwest::Client, url: &str) -> (u16, Option<String>, Option<String>, String) {
    let r = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let h = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let (retry, cache) = (h("retry-after"), h("cache-control"));
    (r.status().as_u16(), retry, cache, r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_maintenance_shows_and_the_maintenance_page_answers_503_only_while_on_the_backup()
{
    let _turn = BROWSER.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, cert, key) = site_tls(dir.path());
    let mut s = Setup::start(&format!(
        r#"
[status_page]
listen = "127.0.0.1:0"
services = ["web"]
title = "Example status"

[maintenance_page]
listen = "127.0.0.1:0"
tls_listen = "127.0.0.1:0"
tls_cert_file = {cert:?}
tls_key_file = {key:?}
services = ["web"]
retry_after = "120s"
"#
    ))
    .await;
    let status_page = format!("http://{}/", s.coord.status_addr.unwrap());
    let (http_addr, https_addr) = s.coord.maintenance_page_addrs;
    let (http_port, https_port) = (http_addr.unwrap().port(), https_addr.unwrap().port());
    let page = format!("http://www.example.test:{http_port}/");
    let page_tls = format!("https://www.example.test:{https_port}/some/path?q=1");
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .resolve("www.example.test", lo)
        .build()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(shared::tls::ring_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls)
        .resolve("www.example.test", lo)
        .build()
        .unwrap();
    s.wait_served(s.p_ip).await;

    // On the primary: the service's names get a 404 (not the page), other hosts a 421.
    let (code, _, cache, body) = fetch(&http, &page).await;
    assert_eq!((code, cache.as_deref()), (404, Some("no-store")), "{body}");
    assert!(body.contains("not in maintenance"), "{body}");
    let (code, ..) = fetch(&https, &page_tls).await;
    assert_eq!(code, 404);
    let (code, _, _, body) = fetch(&http, &format!("http://127.0.0.1:{http_port}/")).await;
    assert_eq!(code, 421, "{body}");

    // Maintenance announced with the real CLI, through the API (admin token); listed with
    // the read-only token; one removed again.
    let api_text = std::fs::read_to_string(s.lab.path().join("coordinator.toml"))
        .unwrap()
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", s.coord.api_addr),
            1,
        );
    let cli_config = s.lab.path().join("cli.toml");
    std::fs::write(&cli_config, api_text).unwrap();
    let now = shared::unix_ms(std::time::SystemTime::now());
    let at = |ms: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
    };
    const MIN: u64 = 60_000;
    let add = |start: u64, end: u64, title: &'static str| {
        let (start, end) = (at(start), at(end));
        let cli_config = cli_config.clone();
        async move {
            let (ok, out) = maintenance_cli(
                &cli_config,
                &[
                    "add",
                    "--service",
                    "web",
                    "--start",
                    &start,
                    "--end",
                    &end,
                    "--title",
                    title,
                    "--details",
                    "Payments may fail meanwhile.",
                ],
            )
            .await;
            assert!(ok, "{out}");
            let v: Value = serde_json::from_str(&out).unwrap();
            v["maintenance"]["id"].as_i64().unwrap()
        }
    };
    let now_id = add(now - 10 * MIN, now + 60 * MIN, "Database upgrade").await;
    let later_id = add(now + 24 * 60 * MIN, now + 25 * 60 * MIN, "Network work").await;
    let gone_id = add(now + 48 * 60 * MIN, now + 49 * 60 * MIN, "Cancelled").await;
    let (ok, out) = maintenance_cli(
        &cli_config,
        &[
            "add",
            "--service",
            "web",
            "--start",
            &at(now),
            "--end",
            &at(now - MIN),
            "--title",
            "backwards",
        ],
    )
    .await;
    assert!(
        !ok && out.contains("end: expected a time after start"),
        "{out}"
    );
    let (ok, out) = maintenance_cli(&cli_config, &["remove", "--id", &gone_id.to_string()]).await;
    assert!(ok, "{out}");
    let (ok, out) = maintenance_cli(&cli_config, &["list", "--service", "web"]).await;
    assert!(ok, "{out}");
    let listed: Vec<i64> = serde_json::from_str::<Value>(&out).unwrap()["maintenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [now_id, later_id]);
    assert!(
        !out.contains(&s.lab.token) && !out.contains(&s.read_token),
        "no token printed"
    );

    // The status page shows both, the first under way, with no login.
    let b = Browser::start().await;
    b.goto(&status_page).await;
    b.wait_text("section[data-service=\"web\"] .status", "operational")
        .await;
    let rows = b
        .js("return [...document.querySelectorAll('tr.maintenance-window')].map(r => [Number(r.dataset.id), r.querySelector('.title').textContent, r.classList.contains('now')]);")
        .await;
    assert_eq!(
        rows,
        json!([
            [now_id, "Database upgrade", true],
            [later_id, "Network work", false]
        ])
    );
    assert!(
        b.text("tr.maintenance-window .details")
            .await
            .unwrap()
            .contains("Payments may fail"),
    );
    // The dashboard's service page lists them too (a read-only login is enough).
    login(&b, &s, &s.read_token).await;
    b.goto(&s.url("/ui/services/web")).await;
    b.wait_text("li.maintenance-window.now .title", "Database upgrade")
        .await;
    assert_eq!(b.count("li.maintenance-window").await, 2);

    // The primary stops: the page answers the service's names, in the browser and to reqwest.
    s.primary.stop().await;
    eventually("the coordinator to fail over", DEADLINE, || async {
        (s.status().active == Side::Backup).then_some(())
    })
    .await;
    let since_ms = eventually("the failover's transition event", DEADLINE, || async {
        let events = s
            .coord
            .store
            .list_events(&coordinator::store::ListFilter {
                service: Some("web".into()),
                limit: 50,
                ..Default::default()
            })
            .unwrap();
        events
            .iter()
            .find(|e| {
                e.kind == coordinator::store::EventKind::Transition
                    && e.message.starts_with("primary-active -> backup-active")
            })
            .map(|e| e.at_ms)
    })
    .await;
    let since = at(since_ms);
    let (code, retry, cache, body) = eventually("the maintenance page", DEADLINE, || async {
        let r = fetch(&http, &page).await;
        (r.0 == 503).then_some(r)
    })
    .await;
    assert_eq!(retry.as_deref(), Some("120"));
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(code, 503);
    assert!(
        body.contains(&format!("<time id=\"since\">{since}</time>")),
        "the incident's start {since} in {body}"
    );
    let (code, retry, cache, tls_body) = fetch(&https, &page_tls).await;
    assert_eq!(
        (code, retry.as_deref(), cache.as_deref()),
        (503, Some("120"), Some("no-store"))
    );
    assert_eq!(tls_body, body);
    let (code, ..) = fetch(&http, &format!("http://127.0.0.1:{http_port}/")).await;
    assert_eq!(code, 421, "another host never gets the page");

    b.goto(&page).await;
    assert_eq!(
        b.wait_text("#maintenance", "back soon").await,
        "We'll be back soon"
    );
    assert_eq!(b.text("#since").await.as_deref(), Some(since.as_str()));
    b.screenshot("maintenance_page.png").await;
    b.goto(&status_page).await;
    b.wait_text(
        "section[data-service=\"web\"] .status",
        "running on the backup",
    )
    .await;
    assert_eq!(b.count("tr.incident.ongoing").await, 1);
    assert_eq!(b.count("tr.maintenance-window").await, 2);
    b.screenshot("status_maintenance.png").await;

    // The primary is back: the page stops, over HTTP and HTTPS.
    s.primary.start().await;
    eventually("the coordinator to fail back", DEADLINE, || async {
        (s.status().active == Side::Primary).then_some(())
    })
    .await;
    let (code, _, cache, _) = fetch(&http, &page).await;
    assert_eq!((code, cache.as_deref()), (404, Some("no-store")));
    let (code, ..) = fetch(&https, &page_tls).await;
    assert_eq!(code, 404);
    b.goto(&page).await;
    b.wait_text("body", "not in maintenance").await;

    b.quit().await;
    s.stop().await;
}
