//! `quorate-bench-history`: what the history costs on disk for a service stuck in a
//! persistent state (disputed: one witness sees the primary down, one up, one does not
//! answer), decided every interval with real signed requests and votes through the real
//! store (`Store::record_decision`, a signed checkpoint every `--checkpoint-every`).
//!
//! Two runs, each in a fresh temp dir:
//! - **spells**: the same round every interval for `--hours` (simulated time: nothing
//!   sleeps), recorded as spells (`store::spells`);
//! - **every round**: the same number of votes, but the two answering witnesses swap
//!   verdicts every round, so no two rounds in a row are identical and each is a row: what
//!   every round costs without spells, for `--baseline-minutes`, scaled to a day.
//!
//! Then both files are verified as `verify-history` does (every signature, every outcome, the
//! chain) and the run prints one JSON object: rows, bytes, bytes per day, write rate,
//! verification time.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use clap::Parser;
use coordinator::failover::Outcome;
use coordinator::ledger::fixtures::{Keys, round};
use coordinator::store::{Decision, Store};
use shared::protocol::Verdict::{Down, Up};

#[derive(Parser)]
#[command(about = "History size for a service stuck disputed: spells against every round")]
struct Args {
    /// Simulated hours stuck disputed, recorded as spells.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    /// Simulated minutes of rounds that each differ from the last (no spell), scaled to a day.
    #[arg(long, default_value_t = 60)]
    baseline_minutes: u64,
    /// The probe interval, seconds.
    #[arg(long, default_value_t = 1)]
    interval_secs: u64,
    /// `[history] checkpoint_every`, seconds (the default config: 600).
    #[arg(long, default_value_t = 600)]
    checkpoint_every_secs: u64,
}

const DAY_MS: u64 = 86_400_000;

struct Run {
    rounds_decided: u64,
    rows: i64,
    bytes: u64,
    write_secs: f64,
    verify_secs: f64,
}

/// Decides `n` disputed rounds from `t0`; `swap` makes every round differ from the last.
async fn run(dir: &Path, a: &Args, n: u64, swap: bool) -> anyhow::Result<Run> {
    let path = dir.join("history.sqlite");
    let store = Store::open(&path)?;
    let keys = Keys::new();
    let signer = std::sync::Arc::new(keys.coordinator.clone());
    let t0 = 1_796_083_200_000u64;
    let (interval, every) = (a.interval_secs * 1000, a.checkpoint_every_secs * 1000);
    let started = Instant::now();
    let mut next_checkpoint = t0 + every;
    for i in 0..n {
        let at = t0 + i * interval;
        let pattern = if swap && i % 2 == 1 {
            [Some(Up), Some(Down), None]
        } else {
            [Some(Down), Some(Up), None]
        };
        let votes = keys.votes("www", at, &pattern);
        let mut r = round("www", at, Outcome::Disputed, &votes);
        r.reason = format!(
            "primary down for {} consecutive probes; votes: 1 down, 1 up, 0 invalid, 1 missing; a witness sees the primary up",
            i + 2
        );
        store
            .record_decision(Decision {
                service: "www".into(),
                at_ms: at,
                round: Some(r),
                votes,
                ..Default::default()
            })
            .await?;
        if at >= next_checkpoint {
            store.checkpoint(signer.clone(), at, "periodic").await?;
            next_checkpoint += every;
        }
    }
    store
        .checkpoint(signer, t0 + n * interval, "shutdown")
        .await?;
    let write_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let (rep, chain) = coordinator::audit::audit_all(&store, None, &keys.set())?;
    let verify_secs = started.elapsed().as_secs_f64();
    ensure!(
        rep.is_clean() && chain.problems.is_empty(),
        "the history does not verify: {:?} {:?}",
        rep.problems.first(),
        chain.problems.first()
    );
    ensure!(
        rep.rounds + rep.spell_rounds == n,
        "verify-history counts {} rounds kept and {} in spells, {n} were decided",
        rep.rounds,
        rep.spell_rounds
    );
    let rows = store.call(|s| s.count_rounds()).await?;
    drop(store);
    // The WAL folded into the file, as after a clean stop.
    let conn = rusqlite::Connection::open(&path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    let bytes = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.metadata()?.len()))
        .sum::<std::io::Result<u64>>()?;
    Ok(Run {
        rounds_decided: n,
        rows,
        bytes,
        write_secs,
        verify_secs,
    })
}

fn json(r: &Run, interval_ms: u64) -> serde_json::Value {
    let span_ms = r.rounds_decided * interval_ms;
    serde_json::json!({
        "rounds_decided": r.rounds_decided,
        "rows": r.rows,
        "bytes": r.bytes,
        "bytes_per_day": (r.bytes as f64 * DAY_MS as f64 / span_ms as f64).round(),
        "bytes_per_round_decided": (r.bytes as f64 / r.rounds_decided as f64).round(),
        "rounds_per_second_written": (r.rounds_decided as f64 / r.write_secs).round(),
        "verify_seconds": (r.verify_secs * 1000.0).round() / 1000.0,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    ensure!(
        a.interval_secs > 0 && a.hours > 0 && a.baseline_minutes > 0,
        "--hours, --baseline-minutes and --interval-secs must be at least 1"
    );
    let spells_dir = tempfile::tempdir().context("temp dir")?;
    let spells = run(
        spells_dir.path(),
        &a,
        a.hours * 3600 / a.interval_secs,
        false,
    )
    .await?;
    let base_dir = tempfile::tempdir().context("temp dir")?;
    let every = run(
        base_dir.path(),
        &a,
        a.baseline_minutes * 60 / a.interval_secs,
        true,
    )
    .await?;
    let interval_ms = a.interval_secs * 1000;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "state": "disputed (1 down, 1 up, 1 missing), 3 witnesses",
            "interval_secs": a.interval_secs,
            "checkpoint_every_secs": a.checkpoint_every_secs,
            "spells": json(&spells, interval_ms),
            "every_round": json(&every, interval_ms),
        }))?
    );
    Ok(())
}
