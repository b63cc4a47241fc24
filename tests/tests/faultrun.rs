//! The randomized fault run (issue #19) in the multi-host lab: a seeded schedule of faults
//! (`tests::faultrun::schedule`) applied to the real binaries, real BIND and a client polling
//! DNS every 150 ms; at the end every fault is repaired, the history is read through the API
//! and `verify-history`, and the five invariants (`tests::faultrun::check`) are checked over
//! the record.
//!
//! ```sh
//! cargo build --bins
//! sudo cargo test -p tests --test faultrun -- --nocapture                      # 300 s, fresh seed
//! sudo QUORATE_FAULT_SEED=1234 cargo test -p tests --test faultrun -- --nocapture   # replay a seed
//! sudo QUORATE_FAULT_SECONDS=3600 cargo test -p tests --test faultrun -- --nocapture  # an hour
//! ```
//!
//! The seed is printed first; a failing run prints it again with every violation.
//! Lab id 19: namespaces `qlab-s19-*`, addresses 10.231.19.0/24 (`QUORATE_FAULT_LAB` picks
//! another id from 30..=99, so a long run can go on beside the test suite's own).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tests::faultrun::check::{Invariant, check};
use tests::faultrun::record::{
    Answer, Fault, FaultKind, Life, LossOn, Ms, Record, Settings, Snapshot, Verified,
    change_from_api, event_from_api, round_from_api, votes_from_api,
};
use tests::faultrun::schedule::{FaultStep, SplitMix64, schedule};
use tests::lab::{Host, Lab, LabOptions, NAME, SERVICE, poll_until};

const LAB_ID: u8 = 19;

/// `QUORATE_FAULT_LAB`, else 19. Ids 1..=29 belong to the other lab tests.
fn lab_id() -> u8 {
    match std::env::var("QUORATE_FAULT_LAB") {
        Ok(s) => match s.trim().parse::<u8>() {
            Ok(id) if id == LAB_ID || (30..=99).contains(&id) => id,
            _ => panic!(
                "QUORATE_FAULT_LAB={s:?}: expected {LAB_ID} or 30..=99 (1..=29 are the other lab tests' ids)"
            ),
        },
        Err(_) => LAB_ID,
    }
}
/// How often the client asks (the issue: every 100–200 ms).
const CLIENT_EVERY: Duration = Duration::from_millis(150);
/// A restarted coordinator must answer its API within this (it opens SQLite and binds).
const RESTART_BOUND: Duration = Duration::from_secs(10);

fn now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Ms)
}

/// `QUORATE_FAULT_SEED` (decimal, or hex with `0x`), else a fresh one.
fn seed() -> u64 {
    match std::env::var("QUORATE_FAULT_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("QUORATE_FAULT_SEED={s:?}: {e}"))
        }
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            SplitMix64::new(nanos ^ u64::from(std::process::id())).next_u64()
        }
    }
}

/// `QUORATE_FAULT_SECONDS`, else 300 (what CI runs).
fn duration() -> Duration {
    let secs = std::env::var("QUORATE_FAULT_SECONDS")
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .unwrap_or_else(|e| panic!("QUORATE_FAULT_SECONDS={s:?}: {e}"))
        })
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// One `dig` from the client host (what `Lab::client_query` does, without borrowing the lab,
/// so it can run on its own thread while the faults are applied).
fn query(ns: &str, server: Ipv4Addr) -> Result<Vec<IpAddr>, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "dig", &format!("@{server}"), NAME, "A"])
        .args(["+short", "+norecurse", "+time=1", "+tries=1"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dig: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut addrs: Vec<IpAddr> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    if !out.status.success() || addrs.is_empty() {
        return Err(format!("dig: {} {}", out.status, text.trim()));
    }
    addrs.sort();
    Ok(addrs)
}

/// The client, polling on its own thread until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    /// Answers recorded so far.
    count: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<Answer>>>,
}

impl Client {
    fn start(ns: String, server: Ipv4Addr) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicUsize::new(0));
        let (flag, counter) = (stop.clone(), count.clone());
        let thread = std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let result = query(&ns, server);
                answers.push(Answer {
                    at_ms: now_ms(),
                    result,
                });
                counter.store(answers.len(), Ordering::Relaxed);
                // The polling period itself (the issue's 100–200 ms), not a wait for anything.
                std::thread::sleep(CLIENT_EVERY);
            }
            answers
        });
        Client {
            stop,
            count,
            thread: Some(thread),
        }
    }

    /// Waits (up to `within`) until `n` more answers than now are recorded.
    fn wait_answers(&self, n: usize, within: Duration) {
        let want = self.count.load(Ordering::Relaxed) + n;
        let got = poll_until(
            &format!("{n} more client answers"),
            within,
            CLIENT_EVERY,
            |last| {
                let have = self.count.load(Ordering::Relaxed);
                *last = format!("{have} answers, want {want}");
                (have >= want).then_some(())
            },
        );
        if let Err(e) = got {
            panic!("{e}");
        }
    }

    fn finish(mut self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("client thread"))
            .unwrap_or_default()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // On a panic, stop asking before the lab's namespaces go.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every item of a paged API list (docs/api.md §7), oldest first.
fn all_items(lab: &Lab, path: &str) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let page = match before {
            None => lab.api_get(&format!("{path}?service={SERVICE}&limit=500"))?,
            Some(b) => lab.api_get(&format!("{path}?service={SERVICE}&limit=500&before_id={b}"))?,
        };
        let got = page["items"]
            .as_array()
            .ok_or_else(|| format!("GET {path}: no items"))?;
        items.extend(got.iter().cloned());
        match page["next_before_id"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    items.reverse();
    Ok(items)
}

/// The history through the API; with `votes`, every round that changed DNS with its votes.
fn snapshot(lab: &Lab, votes: bool) -> Result<Snapshot, String> {
    let at_ms = now_ms();
    let mut rounds = all_items(lab, "/v1/rounds")?
        .iter()
        .map(round_from_api)
        .collect::<Result<Vec<_>, _>>()?;
    if votes {
        for r in rounds.iter_mut().filter(|r| r.changed_dns) {
            r.votes = Some(votes_from_api(
                &lab.api_get(&format!("/v1/rounds/{}", r.id))?,
            )?);
        }
    }
    let fqdn = format!("{NAME}.");
    let changes = all_items(lab, "/v1/dns-changes")?
        .iter()
        .map(|c| change_from_api(c, &fqdn))
        .collect::<Result<Vec<_>, _>>()?;
    let events = all_items(lab, "/v1/events")?
        .iter()
        .map(event_from_api)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Snapshot {
        at_ms,
        rounds,
        changes,
        events,
    })
}

fn loss_host(on: LossOn) -> Host {
    match on {
        LossOn::Primary => Host::Primary,
        LossOn::Backup => Host::Backup,
        LossOn::Witness(i) => Host::Witness(i),
    }
}

/// What the run keeps while it goes.
struct Run {
    faults: Vec<Fault>,
    life: Vec<Life>,
    before_kills: Vec<Snapshot>,
}

fn wait_api(lab: &Lab) -> Result<(), String> {
    poll_until(
        "the restarted coordinator's API",
        RESTART_BOUND,
        Duration::from_millis(100),
        |last| match lab.status() {
            Ok(_) => Some(()),
            Err(e) => {
                *last = e;
                None
            }
        },
    )
}

fn apply(lab: &mut Lab, run: &mut Run, kind: FaultKind) {
    match kind {
        FaultKind::PrimaryWebDown => lab.kill_web(Host::Primary),
        FaultKind::PrimaryWeb500 => lab.set_web_mode(Host::Primary, "500"),
        FaultKind::PrimaryWebHang => lab.set_web_mode(Host::Primary, "hang"),
        FaultKind::BackupPrimaryCut => lab.cut_path(Host::Backup, Host::Primary),
        FaultKind::WitnessLinkDown(i) => lab.link_down(Host::Witness(i)),
        FaultKind::WitnessPaused(i) => lab.signal(&format!("w{i}"), "STOP"),
        FaultKind::CoordinatorKilled => {
            match snapshot(lab, false) {
                Ok(s) => run.before_kills.push(s),
                Err(e) => lab.log(&format!("history not read before the SIGKILL: {e}")),
            }
            run.life.push(Life::Killed(now_ms()));
            lab.kill_coordinator();
        }
        FaultKind::BindStopped => lab.stop_bind(),
        FaultKind::Loss { on, percent } => lab.add_loss(loss_host(on), percent),
    }
}

fn repair(lab: &mut Lab, run: &mut Run, kind: FaultKind) {
    match kind {
        FaultKind::PrimaryWebDown => lab.start_web(Host::Primary),
        FaultKind::PrimaryWeb500 | FaultKind::PrimaryWebHang => {
            lab.set_web_mode(Host::Primary, "ok")
        }
        FaultKind::BackupPrimaryCut => {
            lab.heal_filters(Host::Backup);
            lab.heal_filters(Host::Primary);
        }
        FaultKind::WitnessLinkDown(i) => lab.link_up(Host::Witness(i)),
        FaultKind::WitnessPaused(i) => lab.signal(&format!("w{i}"), "CONT"),
        FaultKind::CoordinatorKilled => {
            lab.start_coordinator();
            run.life.push(Life::Started(now_ms()));
            match wait_api(lab) {
                Ok(()) => run.life.push(Life::ApiUp(now_ms())),
                Err(e) => lab.log(&e),
            }
        }
        FaultKind::BindStopped => lab.start_bind(),
        FaultKind::Loss { on, .. } => lab.heal_filters(loss_host(on)),
    }
}

#[test]
fn faultrun_random_faults_keep_the_five_invariants() {
    let seed = seed();
    let duration = duration();
    // Straight to the process's stderr, past libtest's capture: a passing CI run shows its
    // seed too.
    let _ = writeln!(
        std::io::stderr(),
        "faultrun: seed {seed} (replay: QUORATE_FAULT_SEED={seed}), {} s",
        duration.as_secs()
    );
    let steps = schedule(seed, duration);
    let mut opts = LabOptions::new(lab_id());
    opts.scripted_web = true;
    // Flap damping out of the way: a held failback must not pass for a stuck coordinator.
    opts.coordinator.max_flips = 10_000;
    let interval = opts.coordinator.interval;
    let hold_down = opts.coordinator.recover_after;
    let mut lab = Lab::start(opts);
    lab.log(&format!(
        "faultrun: seed {seed}, {} s, {} faults planned",
        duration.as_secs(),
        steps.len()
    ));
    for s in &steps {
        lab.log(&format!(
            "  plan +{:.1}s for {:.1}s: {}",
            s.at.as_secs_f64(),
            s.lasts.as_secs_f64(),
            s.kind
        ));
    }
    let settings = Settings {
        interval_ms: interval.as_millis() as Ms,
        hold_down,
        witnesses: 3,
        primary: vec![IpAddr::V4(lab.addr4(Host::Primary))],
        backup: vec![IpAddr::V4(lab.addr4(Host::Backup))],
        initial: vec![IpAddr::V4(lab.addr4(Host::Primary))],
        slack_ms: 500,
        restart_bound_ms: RESTART_BOUND.as_millis() as Ms,
    };
    let mut run = Run {
        faults: Vec::new(),
        life: vec![Life::Started(now_ms()), Life::ApiUp(now_ms())],
        before_kills: Vec::new(),
    };
    let serial_before = lab.soa_serial();
    let client = Client::start(lab.ns(Host::Client), lab.addr4(Host::Dns));

    // Every apply and repair, in time order (a repair before an apply at the same moment).
    let mut actions: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        actions.push((s.at, true, i));
        actions.push((s.end(), false, i));
    }
    actions.sort_by_key(|(t, is_apply, i)| (*t, *is_apply, *i));
    let start = Instant::now();
    let mut index: BTreeMap<usize, usize> = BTreeMap::new();
    for (at, is_apply, i) in actions {
        // The schedule's own wait between faults.
        if let Some(wait) = at.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let FaultStep { kind, .. } = steps[i];
        if is_apply {
            let t = now_ms();
            apply(&mut lab, &mut run, kind);
            index.insert(i, run.faults.len());
            run.faults.push(Fault {
                kind,
                start_ms: t,
                end_ms: None,
            });
        } else {
            repair(&mut lab, &mut run, kind);
            let k = index[&i];
            run.faults[k].end_ms = Some(now_ms());
        }
    }
    lab.log("faultrun: every fault repaired; waiting for DNS back on the primary");
    // Liveness is judged by the checker from the client's answers; this only waits (with a
    // deadline well past the invariant's bound) so the record covers it.
    let bound = interval * (hold_down + 2) + Duration::from_secs(20);
    let back = lab.wait_client_sees(tests::lab::Rtype::A, &settings.primary, bound);
    if let Err(e) = &back {
        lab.log(&format!("faultrun: {e}"));
    }
    // Twenty more answers after settling (about 3 s), so "and staying there" is observed.
    client.wait_answers(20, Duration::from_secs(30));
    let answers = client.finish();

    let last =
        snapshot(&lab, true).unwrap_or_else(|e| panic!("seed {seed}: reading the history: {e}"));
    let keys = lab.dir().join("keys.txt");
    let out = lab.coordinator_cli(&["keys"]);
    assert!(out.status.success(), "quorate-coordinator keys: {out:?}");
    std::fs::write(&keys, &out.stdout).expect("write keys file");
    let db = lab.db_path().display().to_string();
    let keys_s = keys.display().to_string();
    let out = lab.coordinator_raw(&[
        "verify-history",
        "--db",
        &db,
        "--keys",
        &keys_s,
        "--service",
        SERVICE,
    ]);
    let verified = Verified {
        exit_code: out.status.code(),
        report: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let serials = match (serial_before, lab.soa_serial()) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (a, b) => {
            lab.log(&format!("faultrun: SOA serials not read: {a:?} {b:?}"));
            None
        }
    };
    let record = Record {
        settings,
        faults: run.faults,
        answers,
        life: run.life,
        before_kills: run.before_kills,
        last,
        verified,
        serials,
    };
    let violations = check(&record);

    // The summary: faults by kind, rounds, changes, answers, invariants.
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &record.faults {
        *by_kind.entry(f.kind.family()).or_default() += 1;
    }
    let decided: u64 = record
        .last
        .rounds
        .iter()
        .map(|r| r.spell.map_or(1, |(_, n)| u64::from(n)))
        .sum();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &record.last.rounds {
        *outcomes.entry(r.outcome.as_str()).or_default() += 1;
    }
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &record.last.changes {
        *statuses.entry(c.status.as_str()).or_default() += 1;
    }
    let failed = record.answers.iter().filter(|a| a.result.is_err()).count();
    let mut summary = format!(
        "faultrun summary: seed {seed}, {} s\n  faults ({}): {by_kind:?}\n  rounds: {} rows standing for {decided} decided rounds; by outcome {outcomes:?}\n  DNS changes ({}): {statuses:?}\n  client answers: {} ({failed} failed queries), answer changes seen: {}\n  coordinator SIGKILLs: {}\n",
        duration.as_secs(),
        record.faults.len(),
        record.last.rounds.len(),
        record.last.changes.len(),
        record.answers.len(),
        tests::faultrun::check::answer_changes(&record).len(),
        record.before_kills.len(),
    );
    for inv in Invariant::ALL {
        let n = violations.iter().filter(|v| v.invariant == inv).count();
        summary.push_str(&format!(
            "  invariant {} ({}): {}\n",
            inv as u8,
            inv.name(),
            if n == 0 {
                "holds".to_string()
            } else {
                format!("{n} violations")
            }
        ));
    }
    lab.log(&summary);
    let _ = std::fs::write(lab.dir().join("summary.txt"), &summary);
    let _ = std::fs::write(lab.dir().join("record.txt"), format!("{record:#?}\n"));
    let _ = write!(std::io::stderr(), "{summary}");
    assert!(
        violations.is_empty(),
        "seed {seed} (replay: QUORATE_FAULT_SEED={seed}): {} violations:\n{}\n{summary}",
        violations.len(),
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
