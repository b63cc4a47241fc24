//! The coordinator's offline commands — `check`, `keygen`, `status`, `history`,
//! `verify-history` — as library functions that return the text to print. `main.rs` parses the
//! arguments, calls one of these, prints the text and picks the exit code; the commands that
//! talk to a running coordinator (`override`, `failback`) are in [`crate::client`].
//!
//! The output is read by people, by `tests/src/lab.rs` (the history timeline in failure
//! messages) and by the docs, so it stays byte for byte what it is; the tests below pin it.
//!
//! The two renderings with logic of their own are pure and tested without a database:
//! [`status_line`] (one service's stored state) and [`merge_timeline`] (rounds, events and DNS
//! changes merged oldest first, see [`TimelineLine`] for the order).

use std::path::Path;

use crate::config::Config;
use crate::failover::State;
use crate::store::{DnsChangeRow, Event, ListFilter, Round, RoundFilter, Store};

/// The most timeline entries of each kind `history --limit` may ask for.
const MAX_HISTORY_LIMIT: u32 = 10_000;

/// What a command printed and whether it found everything in order (exit 0) or not (exit 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The text for stdout, newline-terminated.
    pub text: String,
    /// False when the command ran but found a problem (e.g. a vote that does not verify).
    pub success: bool,
}

/// Loads and validates the config, with every problem listed under one heading.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    crate::config::load(path).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

/// `check`: the one-line summary of a config that validated (no trailing newline).
pub fn check_summary(path: &Path, config: &Config) -> String {
    format!(
        "{}: ok ({} services, {} witnesses, dns {} {}, key id {})",
        path.display(),
        config.services.len(),
        config.witnesses.len(),
        if config.dns.backends.len() == 1 {
            "backend"
        } else {
            "backends"
        },
        config
            .dns
            .backends
            .iter()
            .map(|b| b.label())
            .collect::<Vec<_>>()
            .join(", "),
        config.key_id
    )
}

/// `keygen`: creates the coordinator's signing key at `out` (mode 0600, PKCS#8 v1 PEM as
/// OpenSSL writes it) and returns what to tell the operator: the key id and the
/// `[[coordinator]]` block each witness needs.
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    let key = shared::keys::generate();
    shared::keys::write_signing_key(out, &key)?;
    let vk = key.verifying_key();
    Ok(format!(
        "wrote {} (mode 0600)\nkey id: {}\n\nAdd this to each witness's config:\n\n\
         [[coordinator]]\nname = \"coordinator\"\npublic_key = \"{}\"\n",
        out.display(),
        shared::protocol::KeyId::of(&vk),
        shared::keys::format_public_key(&vk)
    ))
}

// ---------------------------------------------------------------------------------------
// status

/// `status`: one line per configured service, from the history database (opened read-only,
/// so it works while the daemon runs).
/// Needs the database and the services' names only (`client::ReadConfig`): no secret.
pub fn status(database: &Path, services: &[String]) -> anyhow::Result<String> {
    let store = Store::open_read_only(database)?;
    let states = store.all_states()?;
    let mut out = String::new();
    for svc in services {
        let stored = states
            .iter()
            .find(|(name, _, _)| name == svc)
            .map(|(_, state, updated_ms)| (state, *updated_ms));
        let pending = store.pending_dns_changes(svc)?.len();
        out.push_str(&status_line(svc, stored, pending));
    }
    Ok(out)
}

/// The readiness part of `status`, from the running coordinator's `/v1/services` (readiness
/// lives in the daemon, not in the history): one line per service, every reason with its fix.
pub fn readiness_lines(services_json: &serde_json::Value) -> String {
    let mut out = String::new();
    let list = services_json["services"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in list {
        let name = s["service"].as_str().unwrap_or("?");
        let r = &s["readiness"];
        let verdict = r["verdict"].as_str().unwrap_or("unknown");
        let since = fmt_ms(r["since_ms"].as_u64().unwrap_or(0));
        match verdict {
            "ready" => out.push_str(&format!("{name:<20} ready since {since}\n")),
            "not-ready" => {
                out.push_str(&format!(
                    "{name:<20} NOT READY since {since}{}\n",
                    if r["alerting"].as_bool() == Some(true) {
                        " (alert sent)"
                    } else {
                        ""
                    }
                ));
                for reason in r["reasons"].as_array().cloned().unwrap_or_default() {
                    out.push_str(&format!(
                        "    {} [{}]: {}\n      fix: {}\n",
                        reason["subject"].as_str().unwrap_or(""),
                        reason["code"].as_str().unwrap_or(""),
                        reason["message"].as_str().unwrap_or(""),
                        reason["fix"].as_str().unwrap_or("")
                    ));
                }
            }
            other => out.push_str(&format!(
                "{name:<20} readiness {other} (not evaluated yet)\n"
            )),
        }
    }
    out
}

/// One service's status line: its stored state and when it was stored (`None`: never
/// stored, so still on the primary), and how many DNS changes are pending.
pub fn status_line(service: &str, stored: Option<(&State, u64)>, pending_dns: usize) -> String {
    let (label, updated_ms) = match stored {
        Some((state, at)) => (
            format!("{} (override {})", state.label(), state.override_.as_str()),
            at,
        ),
        None => ("primary-active (never switched)".to_string(), 0),
    };
    format!(
        "{service:<20} {label:<40} updated {}  pending dns changes: {pending_dns}\n",
        fmt_ms(updated_ms)
    )
}

// ---------------------------------------------------------------------------------------
// history

/// Where a timeline line comes from. The declaration order is the order of lines with the
/// same timestamp: the round that decided, then the events it raised, then the DNS change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Round,
    Event,
    DnsChange,
}

/// One line of the timeline before rendering. Ordered by time, then [`Source`], then text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimelineLine {
    pub at_ms: u64,
    pub source: Source,
    pub text: String,
}

/// `history`: rounds, events and DNS changes of one service (at most `limit` of each, newest
/// first from the store), merged oldest first.
/// Needs the database only (`client::ReadConfig`): no secret.
pub fn history(database: &Path, service: &str, limit: u32) -> anyhow::Result<String> {
    let store = Store::open_read_only(database)?;
    let limit = limit.clamp(1, MAX_HISTORY_LIMIT);
    let rounds = store.list_rounds(&RoundFilter {
        service: Some(service.into()),
        limit,
        ..Default::default()
    })?;
    let filter = ListFilter {
        service: Some(service.into()),
        limit,
        ..Default::default()
    };
    let events = store.list_events(&filter)?;
    let changes = store.list_dns_changes(&filter)?;
    Ok(render_timeline(
        service,
        &merge_timeline(&rounds, &events, &changes),
    ))
}

/// Turns the three kinds of history rows into timeline lines, oldest first.
pub fn merge_timeline(
    rounds: &[Round],
    events: &[Event],
    changes: &[DnsChangeRow],
) -> Vec<TimelineLine> {
    let rounds = rounds.iter().map(|r| {
        let x = &r.round;
        TimelineLine {
            at_ms: x.at_ms,
            source: Source::Round,
            text: format!(
                "round {:>6}  {:<24} trigger {:<14} votes {} down / {} up / {} invalid / {} missing  {}",
                r.id,
                x.outcome,
                x.trigger,
                x.votes_down,
                x.votes_up,
                x.votes_invalid,
                x.votes_missing,
                x.reason
            ),
        }
    });
    let events = events.iter().map(|e| TimelineLine {
        at_ms: e.at_ms,
        source: Source::Event,
        text: format!("event         {:<24} {}", e.kind, e.message),
    });
    let changes = changes.iter().map(|c| TimelineLine {
        at_ms: c.created_ms,
        source: Source::DnsChange,
        text: format!(
            "dns change {:>3} to {:<8} {:<10} attempts {} {}",
            c.id,
            c.to_side,
            c.status,
            c.attempts,
            c.last_error.as_deref().unwrap_or_default()
        ),
    });
    sorted(rounds.chain(events).chain(changes).collect())
}

/// The merge's order: oldest first; at the same millisecond by [`Source`], then by text.
fn sorted(mut lines: Vec<TimelineLine>) -> Vec<TimelineLine> {
    lines.sort();
    lines
}

/// Renders timeline lines, one per line with its RFC 3339 time; says so when there are none.
pub fn render_timeline(service: &str, lines: &[TimelineLine]) -> String {
    if lines.is_empty() {
        return format!("no history for service {service:?}\n");
    }
    lines
        .iter()
        .map(|l| format!("{}  {}\n", fmt_ms(l.at_ms), l.text))
        .collect()
}

// ---------------------------------------------------------------------------------------
// verify-history

/// `verify-history`: re-verifies the history at `db` (of one service, or all) with the
/// public keys alone; unsuccessful when anything does not check out.
pub fn verify_history(
    db: &Path,
    keys: &crate::ledger::KeySet,
    service: Option<&str>,
) -> anyhow::Result<Output> {
    let store = Store::open_read_only(db)?;
    let (rep, chain) = crate::audit::audit_all(&store, service, keys)?;
    let mut out = render_report(&rep);
    let c = render_chain(&chain);
    out.text.push_str(&c.text);
    out.success &= c.success;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// replay

/// `replay`: the rounds of the history at `db` decided again under the policies of
/// `proposed` (see `ledger::replay`); unsuccessful when any round would be decided otherwise.
pub fn replay(db: &Path, proposed_path: &Path, proposed: &Config) -> anyhow::Result<Output> {
    use crate::ledger::replay::{Recorded, replay};
    let store = Store::open_read_only(db)?;
    let mut rounds = Vec::new();
    store.for_each_round_with_votes(None, |r, _| {
        rounds.push(Recorded::from_round(r));
        true
    })?;
    let policies = proposed
        .services
        .iter()
        .map(|s| (s.name.clone(), s.policy.clone()))
        .collect();
    let (services, unknown) = replay(&policies, &rounds);
    Ok(render_replay(
        &db.display().to_string(),
        &proposed_path.display().to_string(),
        &services,
        &unknown,
    ))
}

/// The replay report: per service its totals, both policies, one line per round decided
/// otherwise (runs of rounds that are not comparable in one line), the caveats.
pub fn render_replay(
    db: &str,
    proposed: &str,
    services: &[crate::ledger::replay::ServiceReplay],
    unknown: &[String],
) -> Output {
    use crate::ledger::replay::{Replayed, describe};
    let mut text = format!("replay of {db} under the policies of {proposed}\n");
    let mut differences = 0;
    for s in services {
        let (diff, nc) = (s.differences(), s.not_comparable());
        differences += diff;
        text.push_str(&format!(
            "\nservice {}: {} rounds replayed: {diff} decided differently, {nc} not comparable\n",
            s.service,
            s.rounds()
        ));
        if let Some(p) = &s.recorded_policy {
            text.push_str(&format!("  recorded: {}\n", describe(p)));
        }
        if let Some(p) = &s.proposed {
            text.push_str(&format!("  proposed: {}\n", describe(p)));
        }
        let mut i = 0;
        while i < s.lines.len() {
            let l = &s.lines[i];
            let r = &l.round;
            match &l.replayed {
                Replayed::Same | Replayed::Operator => {}
                Replayed::Different { proposed } => text.push_str(&format!(
                    "  round {} at {} ({}; {}): recorded {}, proposed {}{}\n",
                    r.id,
                    fmt_ms(r.at_ms),
                    r.trigger.as_str(),
                    r.obs.votes,
                    r.outcome.as_str(),
                    match proposed {
                        Some(o) => o.as_str().to_string(),
                        None => format!(
                            "no round yet (streak {} below the threshold)",
                            r.streak.unwrap_or(0)
                        ),
                    },
                    if r.stands_for > 1 {
                        format!(
                            " (closes a spell: {} identical rounds up to here)",
                            r.stands_for
                        )
                    } else {
                        String::new()
                    }
                )),
                Replayed::NotComparable { recorded } => {
                    let run = s.lines[i..]
                        .iter()
                        .take_while(|x| x.replayed == l.replayed)
                        .count();
                    let last = &s.lines[i + run - 1].round;
                    let which = if run == 1 {
                        format!("round {}", r.id)
                    } else {
                        format!("rounds {}..{} ({run} rounds)", r.id, last.id)
                    };
                    text.push_str(&format!(
                        "  {which} from {}: recorded while {recorded}-active; under the proposed policy the service would be {}-active: not comparable\n",
                        fmt_ms(r.at_ms),
                        recorded.other()
                    ));
                    i += run;
                    continue;
                }
            }
            i += 1;
        }
        for n in &s.notes {
            text.push_str(&format!("  note: {n}\n"));
        }
    }
    for u in unknown {
        text.push_str(&format!(
            "\nservice {u}: in the history but not in {proposed}: not replayed\n"
        ));
    }
    text.push_str(&match differences {
        0 => "\nno difference: every comparable round is decided as recorded\n".to_string(),
        n => format!("\n{n} round(s) would have been decided differently\n"),
    });
    Output {
        text,
        success: differences == 0,
    }
}

/// The chain's part of `verify-history`: what the links and checkpoints prove, then one
/// `PROBLEM` line each.
pub fn render_chain(c: &crate::ledger::chain::ChainReport) -> Output {
    let mut text = format!(
        "chain links {}  rows pruned under a signed checkpoint {}  rows older than the chain {}  checkpoints verified {}\n",
        c.links, c.pruned, c.before_chain, c.checkpoints_ok
    );
    match c.proven_through {
        Some((seq, at)) => text.push_str(&format!(
            "the newest checkpoint (signed {}) proves links 1..{seq}; {} later link(s) are not covered yet: a truncation among them cannot be detected\n",
            fmt_ms(at),
            c.unproven_links
        )),
        None => text.push_str(
            "no checkpoint verifies: a truncated tail cannot be detected (the coordinator signs one every [history] checkpoint_every)\n",
        ),
    }
    for p in &c.problems {
        text.push_str(&format!("PROBLEM {p}\n"));
    }
    Output {
        text,
        success: c.problems.is_empty(),
    }
}

/// The report as `verify-history` prints it: one summary line, then one `PROBLEM` line each.
pub fn render_report(rep: &crate::audit::Report) -> Output {
    let mut text = format!(
        "rounds {}  votes {}  valid and verified {}  invalid as recorded {}  no answer {}\n\
         requests signed by the coordinator {}  outcomes re-derived {}  not counted {}\n",
        rep.rounds,
        rep.votes,
        rep.valid_ok,
        rep.invalid_confirmed,
        rep.no_answer,
        rep.requests_ok,
        rep.outcomes_checked,
        rep.not_counted
    );
    if rep.spell_rounds > 0 {
        text.push_str(&format!(
            "spells: {} more identical round(s) were decided, counted in their spell's closing round and not kept\n",
            rep.spell_rounds
        ));
    }
    if rep.outcomes_unchecked > 0 {
        text.push_str(&format!(
            "note: {} round(s) were written before the policy was recorded with each round: their votes are checked, their outcome is not\n",
            rep.outcomes_unchecked
        ));
    }
    for p in &rep.problems {
        text.push_str(&format!("PROBLEM {p}\n"));
    }
    Output {
        text,
        success: rep.is_clean(),
    }
}

// ---------------------------------------------------------------------------------------
// incident proofs

/// `export-incident`: the bundle of round `round` of the history at `db` (opened read-only)
/// as JSON text, carrying the keys file at `keys_path`.
pub fn export_incident(db: &Path, round: i64, keys_path: &Path) -> anyhow::Result<String> {
    let keys_toml = std::fs::read_to_string(keys_path).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot read the keys file: {e} (`quorate-coordinator keys --config F` writes one)",
            keys_path.display()
        )
    })?;
    let keys = crate::ledger::KeySet::parse(&keys_toml, keys_path)?;
    let store = Store::open_read_only(db)?;
    let inc = crate::ledger::incident::export(&store, round, &keys_toml, &keys)
        .map_err(|e| anyhow::anyhow!("{}: {e}", db.display()))?;
    let mut text = serde_json::to_string_pretty(&inc)?;
    text.push('\n');
    Ok(text)
}

/// `verify-history --incident`: verifies the bundle at `path` with its own keys, or with
/// `pinned` (a keys file the auditor trusts) when given.
pub fn verify_incident(path: &Path, pinned: Option<&Path>) -> anyhow::Result<Output> {
    use crate::ledger::incident;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let inc = incident::parse(&text, path).map_err(|e| anyhow::anyhow!(e))?;
    let bundled = crate::ledger::KeySet::parse(&inc.keys_toml, &path.join("keys_toml"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = String::new();
    let keys = match pinned {
        Some(k) => {
            let pinned = crate::ledger::KeySet::load(k)?;
            if pinned == bundled {
                out.push_str(&format!(
                    "keys: pinned by {}; the bundle carries the same keys\n",
                    k.display()
                ));
            } else {
                out.push_str(&format!(
                    "note: the bundle's keys differ from {}: verified with {}\n",
                    k.display(),
                    k.display()
                ));
            }
            pinned
        }
        None => {
            out.push_str(
                "keys: the bundle's own (keys_toml): compare them with keys you got out of band, or pin yours with --keys\n",
            );
            bundled
        }
    };
    let rep = incident::verify(&inc, &keys);
    let r = &inc.round;
    out.push_str(&format!(
        "round {} ({}) at {}: {} by {}; votes {}  valid and verified {}  requests signed by the coordinator {}  outcome re-derived {}\n",
        r.id,
        r.round.service,
        fmt_ms(r.round.at_ms),
        r.round.outcome,
        r.round.trigger,
        rep.votes,
        rep.valid_ok,
        rep.requests_ok,
        if rep.outcome_checked { "yes" } else { "no" }
    ));
    if let Some(d) = &inc.dns_change {
        out.push_str(&format!(
            "dns change {} to {} via {}: {}\n",
            d.created.id, d.created.to_side, d.created.backend, d.status
        ));
    }
    if let Some((a, b)) = rep.links {
        out.push_str(&format!("chain links {a}..{b}\n"));
    }
    if let Some((seq, at, key)) = &rep.checkpoint {
        out.push_str(&format!(
            "checkpoint of link {seq} signed {} by coordinator key {key}: verified\n",
            fmt_ms(*at)
        ));
    }
    for p in &rep.problems {
        out.push_str(&format!("PROBLEM {p}\n"));
    }
    Ok(Output {
        text: out,
        success: rep.problems.is_empty(),
    })
}

/// A stored Unix-millisecond time as RFC 3339 with milliseconds; 0 is "never".
pub fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::failover::{Outcome, Override, Side, Trigger};
    use crate::store::{ChangeStatus, EventKind, NewRound};

    /// 2026-11-24T20:38:17.114Z
    const T: u64 = 1_795_552_697_114;

    fn line(at_ms: u64, source: Source, text: &str) -> TimelineLine {
        TimelineLine {
            at_ms,
            source,
            text: text.into(),
        }
    }

    /// A table row: its name, what the merge is given (in store order, i.e. any order), and
    /// the texts in the order the timeline must show them.
    type Case = (
        &'static str,
        &'static [(u64, Source, &'static str)],
        &'static [&'static str],
    );

    #[test]
    fn timeline_merge_orders_oldest_first_then_round_event_dns_change_then_text() {
        use Source::{DnsChange, Event, Round};
        #[rustfmt::skip]
        let table: &[Case] = &[
            ("nothing stays nothing",
                &[], &[]),
            ("older first, whatever the kind",
                &[(T + 2, Round, "r"), (T + 1, Event, "e"), (T, DnsChange, "d")], &["d", "e", "r"]),
            ("store order (newest first) is reversed",
                &[(T + 2, Round, "r2"), (T + 1, Round, "r1"), (T, Round, "r0")], &["r0", "r1", "r2"]),
            ("same millisecond: the round, then its events, then its dns change",
                &[(T, DnsChange, "d"), (T, Event, "e"), (T, Round, "r")], &["r", "e", "d"]),
            ("same millisecond and kind: by text",
                &[(T, Event, "event b"), (T, Event, "event a")], &["event a", "event b"]),
            ("time beats kind",
                &[(T, DnsChange, "d"), (T + 1, Round, "r")], &["d", "r"]),
            ("time 0 (never) sorts first",
                &[(T, Round, "r"), (0, Event, "e")], &["e", "r"]),
        ];
        for (name, input, expected) in table {
            let lines = input.iter().map(|(at, s, t)| line(*at, *s, t)).collect();
            let got: Vec<String> = sorted(lines).into_iter().map(|l| l.text).collect();
            assert_eq!(&got, expected, "{name}");
        }
    }

    #[test]
    fn history_renders_rows_byte_for_byte() {
        let round = Round {
            id: 7,
            round: NewRound {
                service: "www".into(),
                at_ms: T,
                trigger: Trigger::PrimaryDown,
                outcome: Outcome::Failover,
                reason: "3 of 3 witnesses see the primary down".into(),
                primary_up: false,
                backup_up: true,
                votes_up: 0,
                votes_down: 3,
                votes_invalid: 0,
                votes_missing: 1,
                changed_dns: true,
                policy: None,
                spell: None,
            },
        };
        let event = Event {
            id: 3,
            service: "www".into(),
            at_ms: T,
            kind: EventKind::DnsApplied,
            message: "backup addresses served".into(),
        };
        let change = |status: &str, last_error: Option<&str>| DnsChangeRow {
            id: 12,
            service: "www".into(),
            round_id: Some(7),
            to_side: Side::Backup,
            backend: "dryrun".into(),
            change: serde_json::json!({}),
            status: ChangeStatus::parse(status).expect("a known status"),
            attempts: 2,
            last_error: last_error.map(String::from),
            verification: None,
            created_ms: T,
            updated_ms: T + 5,
        };
        let lines = merge_timeline(
            &[round],
            &[event],
            &[
                change("applied", None),
                change("failed", Some("auth: refused")),
            ],
        );
        assert_eq!(
            render_timeline("www", &lines),
            "2026-11-24T20:38:17.114Z  round      7  failover                 trigger primary-down   votes 3 down / 0 up / 0 invalid / 1 missing  3 of 3 witnesses see the primary down\n\
             2026-11-24T20:38:17.114Z  event         dns-applied              backup addresses served\n\
             2026-11-24T20:38:17.114Z  dns change  12 to backup   applied    attempts 2 \n\
             2026-11-24T20:38:17.114Z  dns change  12 to backup   failed     attempts 2 auth: refused\n"
        );
        assert_eq!(
            render_timeline("www", &[]),
            "no history for service \"www\"\n"
        );
    }

    #[test]
    fn status_line_renders_the_stored_state_or_never_switched() {
        let mut state = State::new(Side::Backup);
        state.override_ = Override::PinBackup;
        assert_eq!(
            status_line("www", Some((&state, T)), 1),
            "www                  backup-active (override pin-backup)      updated 2026-11-24T20:38:17.114Z  pending dns changes: 1\n"
        );
        assert_eq!(
            status_line("mail", None, 0),
            "mail                 primary-active (never switched)          updated never  pending dns changes: 0\n"
        );
    }

    #[test]
    fn keygen_writes_a_private_key_and_prints_its_witness_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.key");
        let text = keygen(&path).unwrap();
        let key = shared::keys::load_signing_key(&path).unwrap();
        let vk = key.verifying_key();
        assert_eq!(
            text,
            format!(
                "wrote {} (mode 0600)\nkey id: {}\n\nAdd this to each witness's config:\n\n\
                 [[coordinator]]\nname = \"coordinator\"\npublic_key = \"{}\"\n",
                path.display(),
                shared::protocol::KeyId::of(&vk),
                shared::keys::format_public_key(&vk)
            )
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // PKCS#8 v1 as OpenSSL writes it (RFC 8410: 302e020100300506032b657004220420 ‖ seed).
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"),
            "{pem}"
        );
    }

    #[test]
    fn fmt_ms_is_rfc3339_with_milliseconds_and_zero_is_never() {
        assert_eq!(fmt_ms(0), "never");
        assert_eq!(fmt_ms(T), "2026-11-24T20:38:17.114Z");
        assert_eq!(fmt_ms(1), "1970-01-01T00:00:00.001Z");
    }
}
