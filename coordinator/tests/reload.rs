//! Reload (SIGHUP) with the real `quorate-coordinator` binary and the built-in DNS server:
//! witnesses and services added, changed and removed without a restart, while a loop of DNS
//! queries gets every answer; an invalid config, or one that changes what needs a restart, is
//! refused with every error logged, and the old services run on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Lab, Site, TestWitness};
use coordinator::dns::RecordType;
use coordinator::dns::served::query_rrset;
use testkit::{DEADLINE, Daemon};

const RELOADED: &str = "config reloaded";

/// A port free for both UDP and TCP on 127.0.0.1 (the built-in server binds both).
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP after 50 tries");
}

struct Setup {
    lab: Lab,
    api: String,
    api_listen: String,
    dns: SocketAddr,
    primary: IpAddr,
    backup: IpAddr,
    port: u16,
}

impl Setup {
    /// A config with the built-in DNS server; `services` are (name, witness names).
    fn config(&self, witnesses: &[&TestWitness], services: &[(&str, &[&str])]) -> String {
        let mut text = format!(
            r#"[coordinator]
key_file = "coordinator.key"
database = "history.sqlite"
interval = "300ms"

[api]
listen = "{api}"
token_file = "api.token"

[dns]
type = "builtin"
listen = ["{dns}"]
zone = "example.test."
ns = ["ns1.example.test."]
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}]

"#,
            api = self.api_listen,
            dns = self.dns,
        );
        for w in witnesses {
            text.push_str(&w.block());
            text.push('\n');
        }
        for (name, asks) in services {
            text.push_str(&format!(
                r#"[[service]]
name = "{name}"
zone = "example.test"
names = ["{name}"]
ttl = 30
primary = {{ addresses = ["{p}"] }}
backup = {{ addresses = ["{b}"] }}
probe = {{ kind = "http", port = {port}, path = "/health", expect_status = [200], timeout = "250ms" }}
quorum = 1
witnesses = {asks:?}

"#,
                p = self.primary,
                b = self.backup,
                port = self.port,
            ));
        }
        text
    }

    async fn service(&self, http: &reqwest::Client, name: &str) -> Option<serde_json::Value> {
        common::api_get(
            http,
            &self.api,
            &self.lab.token,
            &format!("/v1/services/{name}"),
        )
        .await
    }
}

/// `log` without its colour escapes (`ESC [ ... m`).
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// Lines of `log` that say the service `name`'s task started.
fn starts(log: &str, name: &str) -> usize {
    plain(log)
        .lines()
        .filter(|l| {
            l.contains(&format!("service{{service={name}}}")) && l.contains("service starting")
        })
        .count()
}

/// What the query loop saw: answers with the expected address, and everything else.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_and_removes_witnesses_and_services_while_every_dns_query_is_answered() {
    let lab = Lab::new();
    let (p_addr, b_addr) = common::two_sites_port();
    let mut primary = Site::http(p_addr);
    let mut backup = Site::http(b_addr);
    primary.start().await;
    backup.start().await;
    let w = common::start_witnesses(&lab, p_addr.port(), [vec![], vec![], vec![]]);
    let api_port = common::free_port();
    let setup = Setup {
        lab,
        api: format!("http://127.0.0.1:{api_port}"),
        api_listen: format!("127.0.0.1:{api_port}"),
        dns: SocketAddr::from(([127, 0, 0, 1], free_dns_port())),
        primary: p_addr.ip(),
        backup: b_addr.ip(),
        port: p_addr.port(),
    };
    // Before: w1 and w2; "web" asks w1, "shop" w1 and w2, "old" w1.
    let before = setup.config(
        &[&w[0], &w[1]],
        &[("web", &["w1"]), ("shop", &["w1", "w2"]), ("old", &["w1"])],
    );
    setup.lab.config(&before);
    let config = setup.lab.path().join("coordinator.toml");
    let http = reqwest::Client::new();
    let mut daemon: Daemon = common::run_binary(&config, setup.lab.path().join("coordinator.log"));
    daemon
        .wait_until("every service to have ticked", |_| async {
            let mut all = true;
            for name in ["web", "shop", "old"] {
                all &= setup
                    .service(&http, name)
                    .await
                    .is_some_and(|s| s["last_tick_ms"].as_u64() > Some(0));
            }
            all
        })
        .await;
    let web_before = setup.service(&http, "web").await.unwrap();
    let dns = setup.dns;
    let want = vec![setup.primary];
    let served = query_rrset(dns, "old.example.test.", RecordType::A, DEADLINE)
        .await
        .unwrap();
    assert_eq!(served.addrs, want, "old is served before the reload");

    // The query loop: web's record, one query after another, until told to stop (or a
    // deadline, so that it is bounded even if the test goes wrong).
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let queries = {
        let (tally, stop, want) = (tally.clone(), stop.clone(), want.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let got = query_rrset(
                    dns,
                    "web.example.test.",
                    RecordType::A,
                    Duration::from_secs(2),
                )
                .await;
                match got {
                    Ok(set) if set.addrs == want => {
                        tally.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        tally.failed.fetch_add(1, Ordering::SeqCst);
                        tally
                            .first_failure
                            .lock()
                            .unwrap()
                            .get_or_insert(format!("{other:?}"));
                    }
                }
            }
        })
    };
    let answered = || tally.answered.load(Ordering::SeqCst);
    daemon
        .wait_until("the query loop to be answered", |_| async {
            answered() >= 20
        })
        .await;

    // After: w2 removed, w3 added; "web" untouched, "shop" asks w1 and w3, "blog" added (asks
    // w3), "old" removed.
    let after = setup.config(
        &[&w[0], &w[2]],
        &[("web", &["w1"]), ("shop", &["w1", "w3"]), ("blog", &["w3"])],
    );
    setup.lab.write_config(&after);
    let at_sighup = answered();
    daemon.signal("HUP");
    daemon
        .wait_until("the reload to be done", |log| async move {
            log.contains(RELOADED)
        })
        .await;
    let at_reload = answered();
    assert!(
        at_reload > at_sighup,
        "no query was answered between SIGHUP and the end of the reload"
    );
    // Right after the reload, the untouched service still shows its last reading: a service
    // started again would show no probe yet (primary_up null) until its first tick.
    let web_now = setup.service(&http, "web").await.unwrap();
    assert_eq!(web_now["primary_up"], true, "{web_now}");
    daemon
        .wait_until("more queries answered after the reload", |_| async {
            answered() >= at_reload + 20
        })
        .await;
    stop.store(true, Ordering::SeqCst);
    queries.await.unwrap();
    let (ok, failed) = (answered(), tally.failed.load(Ordering::SeqCst));
    assert_eq!(
        failed,
        0,
        "{failed} of {} queries failed, the first: {:?}",
        ok + failed,
        tally.first_failure.lock().unwrap()
    );
    assert!(ok >= at_sighup + 20, "{ok} answered");

    let log = plain(&daemon.log());
    let line = log.lines().find(|l| l.contains(RELOADED)).unwrap();
    for part in [
        "INFO",
        r#"services_added=["blog"]"#,
        r#"services_changed=["shop"]"#,
        r#"services_removed=["old"]"#,
        r#"witnesses_added=["w3"]"#,
        "witnesses_changed=[]",
        r#"witnesses_removed=["w2"]"#,
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert_eq!(starts(&log, "web"), 1, "web was not started again");
    assert_eq!(starts(&log, "shop"), 2, "shop was started again");
    assert_eq!(starts(&log, "blog"), 1);

    // The API follows: blog is there, old is gone, each with its witnesses.
    let list = common::api_get(&http, &setup.api, &setup.lab.token, "/v1/services")
        .await
        .unwrap();
    let names: Vec<&str> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog", "shop", "web"], "{list}");
    assert!(setup.service(&http, "old").await.is_none(), "old is gone");
    for (name, witnesses, up) in [
        ("web", vec!["w1"], 1),
        ("shop", vec!["w1", "w3"], 2),
        ("blog", vec!["w3"], 1),
    ] {
        common::eventually(
            &format!("{name} to count {up} up votes from {witnesses:?}"),
            DEADLINE,
            || async {
                let s = setup.service(&http, name).await?;
                (s["witnesses"] == serde_json::json!(witnesses) && s["last_votes"]["up"] == up)
                    .then_some(())
            },
        )
        .await;
    }
    // web ran on: newer ticks than before the reload, still primary, never started again.
    common::eventually("web to tick again", DEADLINE, || async {
        let s = setup.service(&http, "web").await?;
        (s["last_tick_ms"].as_u64() > web_now["last_tick_ms"].as_u64()).then_some(())
    })
    .await;
    let web_after = setup.service(&http, "web").await.unwrap();
    assert_eq!(web_after["state"], web_before["state"]);
    assert_eq!(web_after["active"], "primary");

    // The built-in server serves blog, no longer old, web as before.
    for (name, want) in [
        ("blog", want.clone()),
        ("old", Vec::new()),
        ("web", want.clone()),
    ] {
        let served = query_rrset(
            dns,
            &format!("{name}.example.test."),
            RecordType::A,
            DEADLINE,
        )
        .await
        .unwrap();
        assert_eq!(served.addrs, want, "{name}");
    }

    daemon.signal("TERM");
    let exit = tokio::time::timeout(DEADLINE, daemon.child.wait())
        .await
        .expect("the coordinator did not stop after SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_or_a_changed_listen_address_is_refused_and_the_old_one_runs_on() {
    let lab = Lab::new();
    let common::BinarySetup {
        primary: _primary,
        backup: _backup,
        witnesses,
        mut opts,
        api_port: port,
    } = common::binary_setup(&lab).await;
    let good = opts.toml();
    lab.config(&good);
    let config = lab.path().join("coordinator.toml");
    let api = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let web = || common::api_get(&http, &api, &lab.token, "/v1/services/web");
    let mut daemon = common::run_binary(&config, lab.path().join("coordinator.log"));
    daemon
        .wait_until("web to tick", |_| async {
            web()
                .await
                .is_some_and(|s| s["last_tick_ms"].as_u64() > Some(0))
        })
        .await;

    // Two errors at once: a quorum larger than the witnesses, an interval that is no duration.
    opts.quorum = 7;
    opts.interval = "fast".into();
    lab.write_config(&opts.toml());
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let errors: Vec<String> = String::from_utf8(check.stderr)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(errors.len() >= 2, "{errors:?}");
    daemon.signal("HUP");
    daemon
        .wait_until("the refusal", |log| async move {
            log.contains("config reload refused; the running config stays as it was")
        })
        .await;
    let log = plain(&daemon.log());
    for e in &errors {
        assert!(
            log.lines()
                .any(|l| l.contains("ERROR") && l.contains(&format!("config reload refused: {e}"))),
            "{e:?} not logged"
        );
    }
    assert!(!log.contains(RELOADED), "{log}");

    // A valid config that moves the API: refused too, naming the key.
    opts.quorum = 2;
    opts.interval = "300ms".into();
    opts.api_listen = format!("127.0.0.1:{}", common::free_port());
    lab.write_config(&opts.toml());
    daemon.signal("HUP");
    daemon
        .wait_until("the second refusal", |log| async move {
            log.matches("config reload refused; the running config stays as it was")
                .count()
                == 2
        })
        .await;
    assert!(
        daemon
            .log()
            .contains("api.listen: changed: restart to apply"),
        "no line names api.listen"
    );

    // The old config runs on: web ticks again, on the old address, never started again.
    let seen = web().await.unwrap()["last_tick_ms"].as_u64().unwrap();
    common::eventually("web to tick after the refusals", DEADLINE, || async {
        let s = web().await?;
        (s["last_tick_ms"].as_u64() > Some(seen)).then_some(())
    })
    .await;
    assert_eq!(starts(&daemon.log(), "web"), 1);
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    drop(witnesses);
}

/// The witness key ids its votes in `db` were signed with, `(key id, votes)`, oldest first.
fn vote_keys(db: &std::path::Path, witness: &str) -> Vec<(String, i64)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut q = conn
        .prepare(
            "SELECT witness_key_id, COUNT(*) FROM votes WHERE witness = ?1 AND valid = 1
             GROUP BY witness_key_id ORDER BY MIN(id)",
        )
        .unwrap();
    q.query_map([witness], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `quorate-coordinator verify-history --db history.sqlite --keys keys`: exit code, output.
fn verify_history(dir: &std::path::Path, keys: &str) -> (Option<i32>, String) {
    std::fs::write(dir.join("keys.toml"), keys).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args([
            "verify-history",
            "--db",
            "history.sqlite",
            "--keys",
            "keys.toml",
        ])
        .current_dir(dir)
        .env("QUORATE_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Key rotation of a witness under the running binary: w1 gets a new key, its config block the
/// new key with the old one under `retired_keys`, SIGHUP; votes signed with the new key count
/// from then on, and `verify-history` with the keys that `keys --config` prints passes every
/// vote, old and new. Without the retired key, the old votes are the problems it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_key_rotated_with_sighup_leaves_a_history_whose_old_and_new_votes_verify() {
    let lab = Lab::new();
    let common::BinarySetup {
        mut primary,
        backup: _backup,
        mut witnesses,
        opts,
        api_port,
    } = common::binary_setup(&lab).await;
    let port = opts.port;
    lab.config(&opts.toml());
    let config = lab.path().join("coordinator.toml");
    let db = lab.path().join("history.sqlite");
    let api = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::new();
    let mut daemon = common::run_binary(&config, lab.path().join("coordinator.log"));

    // Votes are asked while the primary is down: fail over on the old keys' votes.
    primary.stop().await;
    daemon
        .wait_until("the failover", |_| async {
            common::api_get(&http, &api, &lab.token, "/v1/services/web")
                .await
                .is_some_and(|s| s["active"] == "backup")
        })
        .await;
    let old = witnesses[0].key.verifying_key();
    let old_id = shared::protocol::KeyId::of(&old).to_string();
    daemon
        .wait_until("w1's old key to have signed votes", |_| async {
            vote_keys(&db, "w1").iter().any(|(k, _)| *k == old_id)
        })
        .await;

    // The rotation: the witness restarts with a new key; the coordinator's block names it and
    // keeps the old one as retired from now.
    witnesses[0].stop().await;
    let rotated = TestWitness::start("w1", lab.key.verifying_key(), &[port], vec![]);
    let new_id = shared::protocol::KeyId::of(&rotated.key.verifying_key()).to_string();
    let retired_at = humantime::format_rfc3339_millis(std::time::SystemTime::now());
    let mut rotated_opts = opts;
    rotated_opts.witnesses[0] = format!(
        "{}retired_keys = [{{ public_key = \"{}\", retired_at = \"{retired_at}\" }}]\n",
        rotated.block(),
        shared::keys::format_public_key(&old)
    );
    witnesses[0] = rotated;
    lab.config(&rotated_opts.toml());
    daemon.signal("HUP");
    daemon
        .wait_until("the reload", |log| async move {
            log.contains(RELOADED) && log.contains("w1")
        })
        .await;
    // Back to the primary: the failback is voted with w1's new key. (The primary is restarted
    // once only: a port it gave up may be taken by a parallel test.)
    primary.start().await;
    daemon
        .wait_until("the failback, voted with w1's new key", |_| async {
            vote_keys(&db, "w1").iter().any(|(k, _)| *k == new_id)
        })
        .await;
    daemon.signal("TERM");
    tokio::time::timeout(DEADLINE, daemon.child.wait())
        .await
        .expect("the coordinator stops after SIGTERM")
        .unwrap();
    let keys = vote_keys(&db, "w1");
    assert_eq!(
        keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        [old_id.as_str(), new_id.as_str()],
        "{keys:?}"
    );

    // What an auditor gets from the operator: the public keys, the retired one included.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(["keys", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains(&format!(
            "name = \"w1\"\nkey = \"{}\"\nretired_at = ",
            shared::keys::format_public_key(&old)
        )),
        "{printed}"
    );
    let (code, text) = verify_history(lab.path(), &printed);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("PROBLEM"), "{text}");

    // The same history without the retired key: every old vote of w1 is named.
    let without: String = printed
        .split("\n[[")
        .filter(|block| !block.contains("retired_at"))
        .collect::<Vec<_>>()
        .join("\n[[");
    let (code, text) = verify_history(lab.path(), &without);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("PROBLEM") && text.contains("w1"), "{text}");
}
