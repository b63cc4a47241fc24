//! Crash recovery with the real `quorate-coordinator` binary: it is SIGKILLed while a failover's
//! DNS change is recorded as pending, then started again on the same history. Either way DNS
//! and the history must agree afterwards, and a change that already reached DNS must not be
//! sent a second time.
//!
//! DNS is the `exec` backend with two small shell scripts in the lab folder: `apply.sh`
//! "applies" a change by copying the prepared zone for the new addresses over `zone.json`
//! (and logs every run), `current.sh` prints `zone.json` (what the coordinator reads back).
//! A `mode` file tells `apply.sh` whether to apply, block (so the kill lands mid-change),
//! apply and then block, wait for a `release` file and then apply, or fail. Three witnesses
//! run in the test process over HTTPS. The same rig also checks that the status the API
//! reports follows a change the moment it is applied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Lab, Opts, Site, TestWitness, eventually};
use coordinator::dns::RecordSet;
use coordinator::failover::Side;
use coordinator::store::{DnsChangeRow, Event, ListFilter, Round, RoundFilter, Store};

const SERVICE: &str = "web";
const DEADLINE: Duration = Duration::from_secs(30);

const APPLY_SH: &str = r#"#!/bin/sh
# Test stand-in for an operator's DNS update command (see crash.rs).
dir="$1"
echo "run to=$QUORATE_TO_ADDRS" >> "$dir/apply.log"
apply() {
    cp "$dir/zone-$QUORATE_TO_ADDRS.json" "$dir/zone.json.tmp" && mv "$dir/zone.json.tmp" "$dir/zone.json"
}
# Signals the test, then waits (at most 60 s) while the coordinator that started it lives.
block() {
    touch "$dir/marker"
    i=0
    while [ "$i" -lt 600 ]; do
        kill -0 "$PPID" 2>/dev/null || exit 1
        sleep 0.1
        i=$((i + 1))
    done
    exit 75
}
# Signals the test, then applies once the test creates "release" (at most 60 s).
wait_release() {
    touch "$dir/marker"
    i=0
    while [ ! -e "$dir/release" ]; do
        [ "$i" -lt 1200 ] || exit 75
        sleep 0.05
        i=$((i + 1))
    done
    apply
}
case "$(cat "$dir/mode")" in
    apply) apply ;;
    wait-release) wait_release ;;
    block-before) block ;;
    apply-then-block) apply && block ;;
    *) echo "apply.sh must not run now (mode $(cat "$dir/mode"))" >&2; exit 1 ;;
esac
"#;

const CURRENT_SH: &str = r#"#!/bin/sh
cat "$1/zone.json"
"#;

/// The real binary, SIGKILLed (and reaped) on drop; its log is printed if the test fails.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(config: &Path, log: PathBuf) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
            .args(["run", "--config"])
            .arg(config)
            .env("QUORATE_LOG", "info,coordinator=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// SIGKILL: no graceful shutdown, no chance to finish the change.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            let status = c.wait().unwrap();
            use std::os::unix::process::ExitStatusExt as _;
            assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- coordinator log (last lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

struct Crash {
    lab: Lab,
    config: PathBuf,
    api: String,
    primary: Site,
    _backup: Site,
    _witnesses: Vec<TestWitness>,
    primary_records: Vec<RecordSet>,
    backup_records: Vec<RecordSet>,
    http: reqwest::Client,
}

impl Crash {
    async fn setup() -> Crash {
        Crash::setup_with_interval("300ms").await
    }

    async fn setup_with_interval(interval: &str) -> Crash {
        let lab = Lab::new();
        let (p_addr, b_addr) = common::two_sites_port();
        let mut primary = Site::http(p_addr);
        let mut backup = Site::http(b_addr);
        primary.start().await;
        backup.start().await;
        let witnesses = common::start_witnesses(&lab, p_addr.port(), [vec![], vec![], vec![]]);
        let dir = lab.path().to_path_buf();
        for (name, text) in [("apply.sh", APPLY_SH), ("current.sh", CURRENT_SH)] {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let port = common::free_port();
        let mut opts = Opts::new(
            witnesses.iter().map(|w| w.block()).collect(),
            p_addr.ip(),
            b_addr.ip(),
            p_addr.port(),
        );
        opts.api_listen = format!("127.0.0.1:{port}");
        opts.interval = interval.into();
        let d = dir.display();
        opts.dns = format!(
            "type = \"exec\"\ncommand = [\"{d}/apply.sh\", \"{d}\"]\ncurrent_command = [\"{d}/current.sh\", \"{d}\"]\ntimeout = \"30s\"\n"
        );
        let config = lab.config(&opts.toml());
        let svc = &config.services[0];
        let primary_records = svc.records_for(Side::Primary);
        let backup_records = svc.records_for(Side::Backup);
        // The zone each side's addresses stand for, and the zone as it starts: the primary's.
        for (ip, recs) in [
            (p_addr.ip(), &primary_records),
            (b_addr.ip(), &backup_records),
        ] {
            std::fs::write(
                dir.join(format!("zone-{ip}.json")),
                serde_json::to_vec(recs).unwrap(),
            )
            .unwrap();
        }
        std::fs::write(
            dir.join("zone.json"),
            serde_json::to_vec(&primary_records).unwrap(),
        )
        .unwrap();
        Crash {
            config: dir.join("coordinator.toml"),
            lab,
            api: format!("http://127.0.0.1:{port}"),
            primary,
            _backup: backup,
            _witnesses: witnesses,
            primary_records,
            backup_records,
            http: reqwest::Client::new(),
        }
    }

    fn set_mode(&self, mode: &str) {
        std::fs::write(self.lab.path().join("mode"), mode).unwrap();
    }

    fn start(&self) -> Daemon {
        Daemon::start(&self.config, self.lab.path().join("coordinator.log"))
    }

    fn zone(&self) -> Vec<RecordSet> {
        serde_json::from_slice(&std::fs::read(self.lab.path().join("zone.json")).unwrap()).unwrap()
    }

    fn apply_runs(&self) -> usize {
        std::fs::read_to_string(self.lab.path().join("apply.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    fn marker(&self) -> bool {
        self.lab.path().join("marker").exists()
    }

    /// The history, read the way `quorate-coordinator status` reads it: a read-only handle.
    fn history(&self) -> Option<History> {
        let store = Store::open_read_only(&self.lab.path().join("history.sqlite")).ok()?;
        let f = ListFilter {
            service: Some(SERVICE.into()),
            limit: 500,
            ..Default::default()
        };
        Some(History {
            rounds: store
                .list_rounds(&RoundFilter {
                    service: Some(SERVICE.into()),
                    limit: 500,
                    ..Default::default()
                })
                .ok()?,
            changes: store.list_dns_changes(&f).ok()?,
            events: store.list_events(&f).ok()?,
            state: store.load_state(SERVICE).ok()?,
        })
    }

    /// The service's status from the running coordinator's API, once it answers.
    async fn status(&self) -> Option<serde_json::Value> {
        let resp = self
            .http
            .get(format!("{}/v1/services/{SERVICE}", self.api))
            .bearer_auth(&self.lab.token)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        resp.json().await.ok()
    }

    /// Starts the coordinator, waits for a healthy probe, stops the primary, and waits until
    /// `apply.sh` signals that it runs (in a blocking mode). Returns the daemon, still running.
    async fn fail_over_until_marker(&mut self) -> Daemon {
        let daemon = self.start();
        eventually(
            "the coordinator to see the primary up",
            DEADLINE,
            || async {
                let s = self.status().await?;
                (s["primary_up"] == true && s["last_votes"]["up"] == 3).then_some(())
            },
        )
        .await;
        self.primary.stop().await;
        eventually("apply.sh to be running", DEADLINE, || async {
            self.marker().then_some(())
        })
        .await;
        daemon
    }
}

/// One read of the history.
struct History {
    rounds: Vec<Round>,
    changes: Vec<DnsChangeRow>,
    events: Vec<Event>,
    state: Option<coordinator::failover::State>,
}

fn state_active(state: &Option<coordinator::failover::State>) -> String {
    state
        .as_ref()
        .expect("a persisted state")
        .active
        .as_str()
        .to_string()
}

/// The kill lands before the change reached DNS: after the restart the pending change is sent
/// again (the same history row, no new round), applied, and DNS and history agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_before_the_change_reached_dns_resends_it_after_restart() {
    let mut t = Crash::setup().await;
    t.set_mode("block-before");
    let mut daemon = t.fail_over_until_marker().await;

    // The decision is in the history, the change is pending, DNS has not moved.
    let History {
        rounds,
        changes,
        state,
        ..
    } = t.history().unwrap();
    assert_eq!(
        rounds
            .iter()
            .filter(|r| r.round.outcome == "failover")
            .count(),
        1,
        "{rounds:?}"
    );
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].status, "pending");
    assert_eq!(changes[0].to_side, "backup");
    assert_eq!(state_active(&state), "backup");
    assert_eq!(t.zone(), t.primary_records);
    assert_eq!(t.apply_runs(), 1);

    daemon.kill9();
    t.set_mode("apply");
    let _daemon = t.start();
    let changes = eventually(
        "the pending change to be applied after the restart",
        DEADLINE,
        || async {
            let c = t.history()?.changes;
            (c.len() == 1 && c[0].status == "applied").then_some(c)
        },
    )
    .await;
    assert_eq!(t.zone(), t.backup_records, "DNS serves the backup");
    assert_eq!(
        t.apply_runs(),
        2,
        "sent once before the kill and once after the restart"
    );
    let History {
        rounds,
        changes: after,
        events,
        state,
    } = t.history().unwrap();
    assert_eq!(after.len(), 1, "the same change row, no new one");
    assert_eq!(after[0].id, changes[0].id);
    assert_eq!(
        rounds
            .iter()
            .filter(|r| r.round.outcome == "failover")
            .count(),
        1,
        "no second failover round"
    );
    assert_eq!(state_active(&state), "backup");
    assert!(events.iter().any(|e| e.kind == "dns-applied"), "{events:?}");
    let status = eventually("the API to answer after the restart", DEADLINE, || {
        t.status()
    })
    .await;
    assert_eq!(status["active"], "backup");
    eventually("no change pending in the status", DEADLINE, || async {
        (t.status().await?["dns_pending"] == false).then_some(())
    })
    .await;
}

/// The kill lands after the change reached DNS but before it was recorded as applied: after
/// the restart the coordinator reads DNS back, finds the change there, and marks it applied
/// without running the update again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_after_the_change_reached_dns_marks_it_applied_without_resending() {
    let mut t = Crash::setup().await;
    t.set_mode("apply-then-block");
    let mut daemon = t.fail_over_until_marker().await;

    let History { changes, state, .. } = t.history().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0].status, "pending",
        "the history does not know yet"
    );
    assert_eq!(state_active(&state), "backup");
    assert_eq!(
        t.zone(),
        t.backup_records,
        "but DNS already serves the backup"
    );
    assert_eq!(t.apply_runs(), 1);

    daemon.kill9();
    // A second run of apply.sh would fail loudly (and be counted).
    t.set_mode("fail");
    let _daemon = t.start();
    let events = eventually(
        "the pending change to be found applied after the restart",
        DEADLINE,
        || async {
            let History {
                changes: c,
                events: e,
                ..
            } = t.history()?;
            (c.len() == 1 && c[0].status == "applied").then_some(e)
        },
    )
    .await;
    assert!(
        events.iter().any(|e| e.kind == "dns-reconciled"),
        "{events:?}"
    );
    assert_eq!(t.zone(), t.backup_records);
    let status = eventually("the API to answer after the restart", DEADLINE, || {
        t.status()
    })
    .await;
    assert_eq!(status["active"], "backup");
    assert_eq!(status["dns_pending"], false);
    // A few probe intervals later: still applied once, nothing sent again.
    let rounds_before = t.history().unwrap().rounds;
    let ticks = |s: &serde_json::Value| s["last_tick_ms"].as_u64().unwrap_or(0);
    let first = ticks(&status);
    eventually("three more probe intervals", DEADLINE, || async {
        let s = t.status().await?;
        (ticks(&s) >= first + 900).then_some(())
    })
    .await;
    assert_eq!(t.apply_runs(), 1, "the change was not sent a second time");
    let History {
        rounds,
        changes,
        state,
        ..
    } = t.history().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].status, "applied");
    assert_eq!(
        rounds.len(),
        rounds_before.len(),
        "backup-active with the primary down: no new rounds"
    );
    assert_eq!(
        rounds
            .iter()
            .filter(|r| r.round.outcome == "failover")
            .count(),
        1
    );
    assert_eq!(state_active(&state), "backup");
}

/// While a change is on its way the API says `dns_pending: true`; once it is applied the status
/// says so at once, not only at the next probe interval (3 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_shows_the_change_applied_at_once_not_at_the_next_interval() {
    let mut t = Crash::setup_with_interval("3s").await;
    t.set_mode("wait-release");
    let _daemon = t.fail_over_until_marker().await;
    let pending_tick = eventually(
        "the status to show the change pending",
        DEADLINE,
        || async {
            let s = t.status().await?;
            (s["active"] == "backup" && s["dns_pending"] == true)
                .then(|| s["last_tick_ms"].as_u64())?
        },
    )
    .await;
    // Release the change just after an interval starts, so the next one is seconds away.
    let tick = eventually("the next probe interval", DEADLINE, || async {
        let s = t.status().await?;
        let tick = s["last_tick_ms"].as_u64()?;
        assert_eq!(
            s["dns_pending"], true,
            "nothing applied before the release: {s}"
        );
        (tick > pending_tick).then_some(tick)
    })
    .await;
    std::fs::write(t.lab.path().join("release"), "").unwrap();
    let status = eventually(
        "the status to show the change applied",
        DEADLINE,
        || async {
            let s = t.status().await?;
            (s["dns_pending"] == false).then_some(s)
        },
    )
    .await;
    assert_eq!(
        status["last_tick_ms"].as_u64(),
        Some(tick),
        "the DNS worker published it, not a later interval: {status}"
    );
    assert_eq!(t.zone(), t.backup_records);
    assert_eq!(t.apply_runs(), 1);
}
