//! Mesh-speed detection (#20) on the namespace lab (id 20): how long a failover takes from the
//! moment the primary's web server dies to the `failover` round in the history, with every
//! witness healthy, with one witness SIGSTOPped, and with one witness behind 1.6 s of extra
//! round trip; and that no probe interval started late meanwhile (`quorate_late_ticks_total`).
//! Real binaries, real BIND, `dig` from the client host, as in `lab.rs`. Needs root; build the
//! binaries first (`cargo build --bins`). The measured numbers are printed (`--nocapture`).
//!
//! Every kill is placed at a chosen phase of the coordinator's interval (see [`kill_at`]): the
//! time to the first "down" depends on where in the interval the primary dies, so the trials
//! of each condition cover the same phases and their medians compare like with like.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tests::lab::{DelayedWitness, Host, Lab, LabOptions, Rtype, SERVICE, poll_until};

/// Both tests build lab 20 (the only lab id this file uses), so they take turns.
static LAB20: Mutex<()> = Mutex::new(());

/// Failovers per condition (healthy, one witness stopped): a median of five.
const TRIALS: usize = 5;
/// Failovers with the delayed witness.
const DELAYED_TRIALS: usize = 3;
/// The bound: the median with a stopped witness within 10 % of the healthy one...
const STOPPED_RATIO: f64 = 1.10;
/// ...plus this for measurement noise: a trial's time also holds work no witness changes
/// (the coordinator's own probe, the round's SQLite transaction before `at_ms` is taken, the
/// harness's kill) on 2 cores shared with other labs and builds. Trials at the same phase
/// spread over ~20 ms here; 50 ms is about 4 % of the ~1.13 s being compared.
const NOISE: Duration = Duration::from_millis(50);
/// Generous bound for any one wait (a failover, a failback, the client seeing it).
const DEADLINE: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The lab for these tests: the usual fast coordinator, with room for every flip the trials
/// make (the default `max_flips` would damp the fifth failover) and a shorter hold-down so a
/// trial's failback takes ~2 intervals instead of ~4 (it is not what is measured).
fn options() -> LabOptions {
    let mut o = LabOptions::new(20);
    o.coordinator.max_flips = 100;
    o.coordinator.recover_after = 3;
    o
}

fn a(lab: &Lab, h: Host) -> Vec<IpAddr> {
    lab.expect(h, Rtype::A)
}

/// Fails with the history's timeline attached.
#[track_caller]
fn check(lab: &Lab, cond: bool, msg: &str) {
    if !cond {
        panic!("{msg}\n--- history ---\n{}", lab.timeline());
    }
}

/// Unwraps a wait's result, or fails with the timeline.
#[track_caller]
fn ok<T>(lab: &Lab, r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("{e}\n--- history ---\n{}", lab.timeline()))
}

/// The value of one series (`name{labels}`, exactly as exposed) in the coordinator's
/// `/metrics`; `None` when the series does not exist (a counter's label set appears the
/// first time it is counted).
fn metric(lab: &Lab, series: &str) -> Option<f64> {
    let text = ok(lab, lab.api_text("/metrics"));
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// No probe interval started late so far; returns how many intervals ran (so the counter
/// read is known to be the service's, and the zero is not a misspelt series).
#[track_caller]
fn assert_no_late_ticks(lab: &Lab, during: &str) -> u64 {
    let ticks = metric(
        lab,
        &format!("quorate_ticks_total{{service=\"{SERVICE}\"}}"),
    );
    let late = metric(
        lab,
        &format!("quorate_late_ticks_total{{service=\"{SERVICE}\"}}"),
    );
    check(
        lab,
        ticks.is_some_and(|t| t > 0.0),
        &format!("no quorate_ticks_total for service {SERVICE} in /metrics"),
    );
    check(
        lab,
        late.unwrap_or(0.0) == 0.0,
        &format!(
            "{during}: quorate_late_ticks_total = {late:?} of {ticks:?} intervals: a probe interval started more than a slot late"
        ),
    );
    ticks.unwrap_or(0.0) as u64
}

/// Waits until the service is back to normal: primary active, no DNS change on its way, the
/// primary and backup up, at least `up_votes` valid "up" votes in the last round, and the
/// client sees the primary. Returns the status.
fn wait_steady(lab: &Lab, up_votes: u64) -> serde_json::Value {
    let st = ok(
        lab,
        poll_until(
            "the service steady on the primary",
            DEADLINE,
            Duration::from_millis(100),
            |last| {
                let s = match lab.status() {
                    Ok(s) => s,
                    Err(e) => {
                        *last = e;
                        return None;
                    }
                };
                *last = s.to_string();
                let steady = s["active"] == "primary"
                    && s["dns_pending"] == false
                    && s["primary_up"] == true
                    && s["backup_up"] == true
                    && s["last_votes"]["up"].as_u64().unwrap_or(0) >= up_votes;
                steady.then_some(s)
            },
        ),
    );
    ok(
        lab,
        lab.wait_client_sees(Rtype::A, &a(lab, Host::Primary), DEADLINE),
    );
    st
}

/// SIGKILLs the primary's web server at `offset` after the start of one of the
/// coordinator's intervals; returns when (Unix ms) it was dead.
///
/// The interval's start (slot 0, the coordinator's own probe) is read from the last steady
/// round's time (`last_tick_ms`, taken right after that probe, a few ms late). Waiting for a
/// wall-clock moment here places the fault; it stands in for no synchronisation.
fn kill_at(lab: &mut Lab, steady: &serde_json::Value, offset: Duration) -> u64 {
    let interval = lab.options().coordinator.interval.as_millis() as u64;
    let tick = steady["last_tick_ms"].as_u64().unwrap_or(0);
    check(
        lab,
        tick > 0,
        &format!("no last_tick_ms in the status: {steady}"),
    );
    let phase = tick % interval;
    let now = now_ms();
    // The first moment ≥ 100 ms from now that is `offset` into an interval.
    let base = now + 100;
    let into = (base + interval - phase) % interval;
    let wait = (offset.as_millis() as u64 + interval - into) % interval;
    let at = base + wait;
    std::thread::sleep(Duration::from_millis(at.saturating_sub(now_ms())));
    lab.kill_web(Host::Primary);
    let dead = now_ms();
    lab.log(&format!(
        "primary's web server killed {} ms into an interval (slot 0 at {phase} ms of each second)",
        (dead + interval - phase) % interval
    ));
    dead
}

/// One failover: the primary's web server killed at `offset` into an interval, the
/// `failover` round awaited; then the web server restarted and the failback awaited (so the
/// next trial starts from the same state).
fn trial(lab: &mut Lab, up_votes: u64, offset: Duration, what: &str) -> Failover {
    let steady = wait_steady(lab, up_votes);
    let before = lab.history().rounds_with("failover").len();
    let killed = kill_at(lab, &steady, offset);
    let round = ok(
        lab,
        poll_until(
            "the failover round",
            DEADLINE,
            Duration::from_millis(100),
            |last| {
                let rounds = lab.history().rounds_with("failover");
                *last = format!("{} failover rounds, {before} before the kill", rounds.len());
                rounds.into_iter().nth(before)
            },
        ),
    );
    check(
        lab,
        round.round.changed_dns && round.round.trigger.as_str() == "primary-down",
        &format!("{what}: failover round {round:?}"),
    );
    let took = Duration::from_millis(round.round.at_ms.saturating_sub(killed));
    lab.log(&format!(
        "{what}: failover round {} {} ms after the kill (votes: {} down, {} up, {} missing)",
        round.id,
        took.as_millis(),
        round.round.votes_down,
        round.round.votes_up,
        round.round.votes_missing
    ));
    ok(
        lab,
        lab.wait_client_sees(Rtype::A, &a(lab, Host::Backup), DEADLINE),
    );
    lab.start_web(Host::Primary);
    wait_steady(lab, up_votes);
    Failover {
        round: round.id,
        killed_ms: killed,
        took,
    }
}

/// One trial's failover.
struct Failover {
    /// The `failover` round's id.
    round: i64,
    /// When the primary's web server was dead (Unix ms).
    killed_ms: u64,
    /// From then to the round's time.
    took: Duration,
}

/// `issued_at_ms` of a stored vote request (`{"payload": base64 of the request's JSON, ..}`).
fn issued_at_ms(envelope: &str) -> Option<u64> {
    use base64::Engine as _;
    let env: serde_json::Value = serde_json::from_str(envelope).ok()?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str()?)
        .ok()?;
    let req: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    req["issued_at_ms"].as_u64()
}

/// The kill's offset into the interval for trial `i`: the middle of a slot (the n + 1
/// vantage points each own a slot), going round the slots, so every condition's trials meet
/// the same vantage points in the same order and no kill lands on a slot's edge.
fn offset(lab: &Lab, i: usize) -> Duration {
    let slot = lab.options().coordinator.interval / 4;
    slot * (i % 4) as u32 + slot / 2
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn secs(v: &[Duration]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64()))
        .collect();
    parts.join(", ")
}

/// A witness that stops answering (SIGSTOP: its connections are accepted by the kernel and
/// never answered) costs no failover time: once the coordinator holds it as known silent, a
/// confirmation round does not wait for it, so the median failover time stays within 10 %
/// of the median with every witness healthy. No interval starts late throughout.
#[test]
fn mesh_a_stopped_witness_does_not_slow_failover() {
    let _turn = LAB20.lock().unwrap_or_else(|p| p.into_inner());
    let mut lab = Lab::start(options());

    let mut healthy = Vec::new();
    for i in 0..TRIALS {
        let at = offset(&lab, i);
        healthy.push(trial(&mut lab, 3, at, &format!("healthy {i}")).took);
    }
    assert_no_late_ticks(&lab, "the healthy trials");

    // w2 stops. The coordinator has noticed once four rounds went without its vote: those
    // span more than three intervals, in which at least two requests sent to it after the
    // stop passed their 800 ms timeout, and two misses in a row make a witness known silent
    // (`SILENT_AFTER`). The series is that witness's `quorate_votes_missing_total`.
    let missing = "quorate_votes_missing_total{witness=\"w2\"}";
    let missing_before = metric(&lab, missing).unwrap_or(0.0);
    lab.signal("w2", "STOP");
    ok(
        &lab,
        poll_until(
            "the coordinator to count w2's votes missing in four rounds",
            DEADLINE,
            Duration::from_millis(200),
            |last| {
                let m = metric(&lab, missing).unwrap_or(0.0);
                *last = format!("{missing} = {m} (was {missing_before})");
                (m >= missing_before + 4.0).then_some(())
            },
        ),
    );
    lab.log("the coordinator counts w2's votes missing");

    let mut stopped = Vec::new();
    for i in 0..TRIALS {
        let at = offset(&lab, i);
        let f = trial(&mut lab, 2, at, &format!("w2 stopped {i}"));
        let id = f.round;
        // The round was decided without w2, not after waiting out its timeout.
        let votes = lab.history().votes(id);
        let w2 = votes.iter().find(|v| v.witness == "w2");
        check(
            &lab,
            w2.is_some_and(|v| !v.valid && v.vote_envelope.is_none()),
            &format!("w2 stopped {i}: w2's record in failover round {id}: {w2:?}"),
        );
        if let Some(e) = w2.and_then(|v| v.error.as_deref()) {
            lab.log(&format!("w2 stopped {i}: w2's record: {e}"));
        }
        stopped.push(f.took);
    }
    lab.signal("w2", "CONT");
    wait_steady(&lab, 3);
    let ticks = assert_no_late_ticks(&lab, "the healthy and w2-stopped trials");

    let (h, s) = (median(&healthy), median(&stopped));
    eprintln!(
        "mesh: healthy median {:.3} s (n={TRIALS}: {}), w2 stopped median {:.3} s (n={TRIALS}: {}); late ticks 0 of {ticks}",
        h.as_secs_f64(),
        secs(&healthy),
        s.as_secs_f64(),
        secs(&stopped)
    );
    let bound = h.mul_f64(STOPPED_RATIO) + NOISE;
    check(
        &lab,
        s <= bound,
        &format!(
            "with w2 stopped the median failover took {s:?}, more than 10 % over the healthy {h:?} (+{NOISE:?} noise: bound {bound:?}); healthy [{}], stopped [{}]",
            secs(&healthy),
            secs(&stopped)
        ),
    );
}

/// A witness behind 1.6 s of extra round trip (0.8 s each way, through a delaying proxy)
/// delays a failover by at most its own answer time: the failover comes within (its answer
/// time, from the latencies the coordinator stored with its votes, + one interval) of the
/// kill. No interval starts late throughout.
#[test]
fn mesh_a_slow_witness_delays_failover_by_at_most_its_answer_time() {
    let _turn = LAB20.lock().unwrap_or_else(|p| p.into_inner());
    let delay = Duration::from_millis(800);
    let mut opts = options();
    opts.delayed_witness = Some(DelayedWitness {
        witness: 3,
        delay,
        // A new connection: ~4 one-way delays (3.2 s) before the answer is back, plus the
        // witness's probe (400 ms at most) and some room.
        timeout: Duration::from_millis(4400),
    });
    let interval = opts.coordinator.interval;
    let mut lab = Lab::start(opts);

    let mut took = Vec::new();
    let mut in_round = Vec::new();
    for i in 0..DELAYED_TRIALS {
        let at = offset(&lab, i);
        let f = trial(&mut lab, 3, at, &format!("w3 delayed {i}"));
        let id = f.round;
        let w3 = lab
            .history()
            .votes(id)
            .into_iter()
            .find(|v| v.witness == "w3");
        let w3_ms = w3.as_ref().filter(|v| v.valid).and_then(|v| v.latency_ms);
        // When the request w3 answered in that round was signed, relative to the kill: a
        // request sent before the round and reused, or one the round sent.
        let signed = w3
            .as_ref()
            .and_then(|v| issued_at_ms(&v.request_envelope))
            .map(|at| at as i64 - f.killed_ms as i64);
        lab.log(&format!(
            "w3 delayed {i}: w3's record in failover round {id}: valid {:?}, latency {:?} ms, request signed {signed:?} ms after the kill, {:?}",
            w3.as_ref().map(|v| v.valid),
            w3.as_ref().and_then(|v| v.latency_ms),
            w3.as_ref().and_then(|v| v.error.clone())
        ));
        took.push(f.took);
        in_round.push(w3_ms);
    }
    let ticks = assert_no_late_ticks(&lab, "the delayed-witness trials");

    // w3's answer time: the median latency of every valid vote of w3 the history kept.
    let h = lab.history();
    let mut lat: Vec<f64> = h
        .rounds()
        .iter()
        .flat_map(|r| h.votes(r.id))
        .filter(|v| v.witness == "w3" && v.valid)
        .filter_map(|v| v.latency_ms)
        .collect();
    check(
        &lab,
        !lat.is_empty(),
        "no valid vote of w3 with a latency in the history",
    );
    lat.sort_by(f64::total_cmp);
    let answer = Duration::from_secs_f64(lat[lat.len() / 2] / 1000.0);
    check(
        &lab,
        answer >= delay * 2,
        &format!("w3's answer time {answer:?} is below the proxy's round trip: is it delayed?"),
    );
    let bound = answer + interval;
    let worst = took.iter().max().copied().unwrap_or_default();
    eprintln!(
        "mesh: delayed-w3 failover {:.3} s median, {:.3} s worst (n={DELAYED_TRIALS}: {}; w3's answer time {:.3} s: median of {} stored votes, {:.3}..{:.3} s; in the failover rounds {:?} ms; bound {:.3} s); late ticks 0 of {ticks}",
        median(&took).as_secs_f64(),
        worst.as_secs_f64(),
        secs(&took),
        answer.as_secs_f64(),
        lat.len(),
        lat[0] / 1000.0,
        lat[lat.len() - 1] / 1000.0,
        in_round,
        bound.as_secs_f64(),
    );
    check(
        &lab,
        worst <= bound,
        &format!(
            "with w3 delayed a failover took {worst:?}, more than w3's answer time {answer:?} + one interval {interval:?}; trials [{}]",
            secs(&took)
        ),
    );
}
