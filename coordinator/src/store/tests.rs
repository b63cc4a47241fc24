//! The history's own tests: migrations, atomic decisions, typed columns, retention.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::dns::Change;
use crate::failover::{Outcome, Side, Trigger};

/// The private writer, as the async facade calls it.
fn record(s: &Store, d: &Decision) -> Result<(Option<i64>, Option<i64>), StoreError> {
    writes::record_decision(&mut s.lock(), d)
}

fn write(s: &Store, w: HistoryWrite) -> Result<(), StoreError> {
    writes::write(&mut s.lock(), &w)
}

const DAY: u64 = 86_400_000;

fn decision(service: &str, at_ms: u64, changed: bool, votes: usize) -> Decision {
    let vote = VoteRecord {
        witness: "w1".into(),
        witness_key_id: "0123456789abcdef".into(),
        request_envelope: "r".repeat(900),
        vote_envelope: Some(vec![b'v'; 700]),
        valid: true,
        verdict: Some("down".into()),
        error: None,
        latency_ms: Some(3.5),
    };
    Decision {
        service: service.into(),
        at_ms,
        state: None,
        round: Some(NewRound {
            service: service.into(),
            at_ms,
            trigger: Trigger::PrimaryDown,
            outcome: if changed {
                Outcome::Failover
            } else {
                Outcome::Disputed
            },
            reason: "test".into(),
            primary_up: false,
            backup_up: true,
            votes_up: 0,
            votes_down: votes as u32,
            votes_invalid: 0,
            votes_missing: 0,
            changed_dns: changed,
            policy: None,
            spell: None,
        }),
        votes: vec![vote; votes],
        events: vec![(EventKind::Alert, "x".into())],
        dns_change: changed.then(|| PendingChange {
            to_side: Side::Backup,
            backend: "dryrun".into(),
            change: Change {
                zone: "example.com".into(),
                from: vec![],
                to: vec![],
            },
        }),
    }
}

fn file_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn migrates_a_new_file_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    record(&s, &decision("www", 1, true, 3)).unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(
        s.list_rounds(&RoundFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .len(),
        1
    );
    let mode: String = s
        .lock()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A file written by schema 1 (no policy, no chain) opens: migrations 2 and 3 run forward,
/// the genesis link says which rows predate the chain, and the old round verifies as "older
/// than the chain", not as a row added behind its back.
#[test]
fn a_schema_1_file_migrates_forward_and_its_rows_predate_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(super::schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "INSERT INTO rounds (service, at_ms, trigger, outcome, reason, primary_up, backup_up,
                votes_up, votes_down, votes_invalid, votes_missing, changed_dns)
             VALUES ('www', 5, 'primary-down', 'disputed', 'old', 0, 1, 1, 0, 0, 2, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let (old, _) = s.round(1).unwrap().unwrap();
    assert_eq!(old.round.policy, None);
    record(&s, &decision("www", 10, false, 0)).unwrap();
    let keys = crate::ledger::fixtures::Keys::new().set();
    let rep = crate::ledger::chain::check_chain(&keys, &s.chain_input().unwrap());
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    assert_eq!(
        (rep.before_chain, rep.links),
        (1, 3),
        "genesis, round 2, its event"
    );
}

#[test]
fn refuses_a_database_from_a_newer_build() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    drop(Store::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("newer than this build") && err.contains("h.sqlite"),
        "{err}"
    );
}

#[test]
fn a_decision_lands_whole_and_a_new_change_supersedes_a_pending_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let (r1, c1) = record(&s, &decision("www", 10, true, 3)).unwrap();
    let (round, votes) = s.round(r1.unwrap()).unwrap().unwrap();
    assert!(round.round.changed_dns);
    assert_eq!(votes.len(), 3);
    assert_eq!(s.pending_dns_changes("www").unwrap().len(), 1);
    let (_, c2) = record(&s, &decision("www", 20, true, 2)).unwrap();
    let pending = s.pending_dns_changes("www").unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, c2.unwrap());
    assert_eq!(
        s.dns_change(c1.unwrap()).unwrap().unwrap().status,
        "superseded"
    );
    write(
        &s,
        HistoryWrite::DnsAttempt {
            id: c2.unwrap(),
            at_ms: 30,
            error: Some("timeout".into()),
        },
    )
    .unwrap();
    write(
        &s,
        HistoryWrite::DnsFinish {
            id: c2.unwrap(),
            at_ms: 40,
            status: ChangeStatus::Applied,
            error: None,
            event: None,
        },
    )
    .unwrap();
    let row = s.dns_change(c2.unwrap()).unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("applied", 1));
    assert_eq!(row.last_error.as_deref(), Some("timeout"));
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
    // Break the last insert of the transaction (the DNS change) and check that the
    // round written before it in the same transaction did not land either.
    s.lock().execute_batch("DROP TABLE dns_changes").unwrap();
    assert!(record(&s, &decision("www", 10, true, 3)).is_err());
    assert!(
        s.list_rounds(&RoundFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .is_empty()
    );
}

/// A year of history on a compressed clock: 150 no-op rounds a day (each with three
/// ~1.6 KB votes) and a failover every 30 days, retention 90 days applied daily. The file
/// must stop growing once the retention window is full, and no round that changed DNS
/// may be lost.
#[test]
fn retention_keeps_the_file_bounded_and_keeps_dns_changing_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let key = shared::keys::generate();
    let mut size_at = std::collections::BTreeMap::new();
    let mut changing = 0;
    for day in 0..365u64 {
        let base = day * DAY;
        for i in 0..150u64 {
            record(&s, &decision("www", base + i * 500_000, false, 3)).unwrap();
        }
        if day % 30 == 0 {
            record(&s, &decision("www", base + 1, true, 3)).unwrap();
            changing += 1;
        }
        s.apply_retention(base + DAY - 1, 90 * DAY, &key).unwrap();
        size_at.insert(day, file_size(dir.path()));
    }
    let at_120 = size_at[&120];
    let at_364 = size_at[&364];
    assert!(
        at_364 <= at_120 + at_120 / 5,
        "history grew from {at_120} bytes (day 120) to {at_364} bytes (day 364)"
    );
    let kept = s
        .list_rounds(&RoundFilter {
            outcome: Some(Outcome::Failover),
            limit: 500,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(kept.len(), changing);
    let oldest = s
        .list_rounds(&RoundFilter {
            outcome: Some(Outcome::Disputed),
            limit: 500,
            until_ms: Some(270 * DAY),
            ..Default::default()
        })
        .unwrap();
    assert!(oldest.is_empty(), "rounds older than the window survived");
}

/// Typing the boundary changed no stored text: the columns hold exactly the spellings the
/// untyped code wrote, so an existing file reads back and no migration is needed.
#[test]
fn typed_values_are_stored_as_the_same_text_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let mut d = decision("www", 10, true, 1);
    d.state = Some(crate::failover::State::new(Side::Backup));
    record(&s, &d).unwrap();
    let conn = s.lock();
    let text = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(text("SELECT trigger FROM rounds"), "primary-down");
    assert_eq!(text("SELECT outcome FROM rounds"), "failover");
    assert_eq!(text("SELECT kind FROM events"), "alert");
    assert_eq!(text("SELECT to_side FROM dns_changes"), "backup");
    assert_eq!(text("SELECT status FROM dns_changes"), "pending");
    assert_eq!(
        text("SELECT change_json FROM dns_changes"),
        r#"{"zone":"example.com","from":[],"to":[]}"#
    );
    let state = text("SELECT state_json FROM service_state");
    assert!(
        state.starts_with(r#"{"active":"backup","override":"auto","#),
        "{state}"
    );
    drop(conn);
    let loaded = s.load_state("www").unwrap().unwrap();
    assert_eq!(loaded, crate::failover::State::new(Side::Backup));
}

/// A spelling this build does not know is an error naming table, row, column and value; it
/// never silently becomes a default (an unknown `to_side` used to become the primary).
#[test]
fn an_unknown_stored_value_is_an_error_naming_table_row_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let (_, c) = record(&s, &decision("www", 10, true, 1)).unwrap();
    let id = c.unwrap();
    let cases = [
        (
            "UPDATE dns_changes SET to_side = 'secondary'",
            "table dns_changes, row",
            "column to_side: unknown value \"secondary\"",
        ),
        (
            "UPDATE dns_changes SET to_side = 'backup', status = 'done'",
            "table dns_changes, row",
            "column status: unknown value \"done\"",
        ),
    ];
    for (sql, table, what) in cases {
        s.lock().execute_batch(sql).unwrap();
        let err = s.dns_change(id).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{table} {id}")) && err.contains(what),
            "{sql}: {err}"
        );
    }
    s.lock()
        .execute_batch("UPDATE rounds SET outcome = 'flipped'")
        .unwrap();
    let err = s
        .list_rounds(&RoundFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table rounds, row 1, column outcome: unknown value \"flipped\"")
            && err.contains("expected one of: failover, failback"),
        "{err}"
    );
    s.lock()
        .execute_batch("UPDATE events SET kind = 'gossip'")
        .unwrap();
    let err = s
        .list_events(&ListFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("table events, row 1, column kind: unknown value \"gossip\""),
        "{err}"
    );
    s.lock()
        .execute_batch(
            "INSERT INTO service_state (service, state_json, updated_ms) VALUES ('www', '{\"active\":\"sideways\"}', 1)",
        )
        .unwrap();
    let err = s.load_state("www").unwrap_err().to_string();
    assert!(
        err.contains("service www: stored state is unreadable")
            && err.contains("service_state")
            && err.contains("refusing to guess"),
        "{err}"
    );
}

/// A disputed round with no event: what a service stuck disputed decides every interval.
fn stuck(service: &str, at_ms: u64) -> Decision {
    let mut d = decision(service, at_ms, false, 3);
    d.events.clear();
    d
}

fn spells_of(s: &Store, service: &str) -> Vec<(i64, u64, Option<Spell>)> {
    let mut rounds = s
        .list_rounds(&RoundFilter {
            service: Some(service.into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    rounds.reverse();
    rounds
        .into_iter()
        .map(|r| (r.id, r.round.at_ms, r.round.spell))
        .collect()
}

#[test]
fn identical_rounds_are_one_spell_closed_by_a_different_round_a_checkpoint_or_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    let s = Store::open(&path).unwrap();
    // Round 1 opens the spell; the next 9 are counted, not written.
    for i in 0..10 {
        let ids = record(&s, &stuck("web", 1_000 * (i + 1))).unwrap();
        assert_eq!(ids.0.is_some(), i == 0, "round {i}");
    }
    assert_eq!(spells_of(&s, "web"), [(1, 1_000, None)]);
    // Another service's rounds do not end it.
    record(&s, &stuck("shop", 10_500)).unwrap();

    // A checkpoint writes the closing round, and the spell runs on from it.
    let key = shared::keys::generate();
    s.checkpoint_now(&key, 10_600, "periodic", None)
        .unwrap()
        .unwrap();
    let spell = |first_round, rounds| {
        Some(Spell {
            first_round,
            rounds,
        })
    };
    assert_eq!(
        spells_of(&s, "web"),
        [(1, 1_000, None), (3, 10_000, spell(1, 9))]
    );
    record(&s, &stuck("web", 11_000)).unwrap();
    record(&s, &stuck("web", 12_000)).unwrap();

    // An event ends it: the closing round, then the round with the event.
    let mut alert = stuck("web", 13_000);
    alert.events = vec![(EventKind::Alert, "x".into())];
    record(&s, &alert).unwrap();
    assert_eq!(
        spells_of(&s, "web"),
        [
            (1, 1_000, None),
            (3, 10_000, spell(1, 9)),
            (4, 12_000, spell(3, 2)),
            (5, 13_000, None)
        ]
    );

    // A crash with a spell open: the next writable open closes it; nothing is lost.
    record(&s, &stuck("web", 14_000)).unwrap();
    record(&s, &stuck("web", 15_000)).unwrap();
    record(&s, &stuck("web", 16_000)).unwrap();
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(
        spells_of(&s, "web")[4..],
        [(6, 14_000, None), (7, 16_000, spell(6, 2))]
    );
    // "shop"'s spell had only its first round (2): closing it writes nothing.
    assert_eq!(spells_of(&s, "shop"), [(2, 10_500, None)]);
    // The same round after the restart starts a new spell.
    assert!(record(&s, &stuck("web", 17_000)).unwrap().0.is_some());
}

fn announcement(service: &str, start_ms: u64, end_ms: u64, title: &str) -> NewMaintenance {
    NewMaintenance {
        service: service.into(),
        start_ms,
        end_ms,
        title: title.into(),
        details: String::new(),
        created_ms: 100,
        created_by: "admin".into(),
    }
}

/// An announcement and its removal each land with a `maintenance` event in the chain; the
/// list shows only the ones not ended, soonest first; a service's open announcements are
/// bounded.
#[test]
fn maintenance_is_added_listed_and_removed_with_an_event_each_in_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let m = |a: NewMaintenance| maintenance::add(&mut s.lock(), &a, 3).unwrap();
    let late = m(announcement("www", 5_000, 6_000, "late")).unwrap();
    let early = m(announcement("www", 1_000, 2_000, "early")).unwrap();
    let other = m(announcement("mail", 1_000, 9_000, "mail")).unwrap();
    let ids = |service: Option<&str>, after: u64| -> Vec<i64> {
        s.list_maintenance(service, after, 10)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect()
    };
    assert_eq!(ids(None, 0), [early, other, late]);
    assert_eq!(ids(Some("www"), 0), [early, late]);
    assert_eq!(ids(Some("www"), 2_000), [late], "ended ones are not listed");
    assert_eq!(s.maintenance(late).unwrap().unwrap().title, "late");
    // The bound counts only announcements not ended at the time of the new one.
    m(announcement("www", 7_000, 8_000, "third")).unwrap();
    assert_eq!(
        m(announcement("www", 7_000, 8_000, "fourth")),
        Err(AddRefused::TooMany(3))
    );

    let removed = maintenance::remove(&mut s.lock(), early, 200, "read").unwrap();
    assert_eq!(removed.map(|m| m.title), Some("early".to_string()));
    assert_eq!(
        maintenance::remove(&mut s.lock(), early, 200, "admin").unwrap(),
        None
    );
    assert_eq!(ids(Some("www"), 0).len(), 2);

    let events = s
        .list_events(&ListFilter {
            service: Some("www".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let texts: Vec<(EventKind, &str)> = events
        .iter()
        .map(|e| (e.kind, e.message.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            (
                EventKind::Maintenance,
                "maintenance #2 removed by read (was 1970-01-01T00:00:01Z to 1970-01-01T00:00:02Z: \"early\")"
            ),
            (
                EventKind::Maintenance,
                "maintenance #4 announced by admin: 1970-01-01T00:00:07Z to 1970-01-01T00:00:08Z: \"third\""
            ),
            (
                EventKind::Maintenance,
                "maintenance #2 announced by admin: 1970-01-01T00:00:01Z to 1970-01-01T00:00:02Z: \"early\""
            ),
            (
                EventKind::Maintenance,
                "maintenance #1 announced by admin: 1970-01-01T00:00:05Z to 1970-01-01T00:00:06Z: \"late\""
            ),
        ]
    );
    let keys = crate::ledger::fixtures::Keys::new().set();
    let rep = crate::ledger::chain::check_chain(&keys, &s.chain_input().unwrap());
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // genesis, four announcements, one removal (the refused one wrote nothing)
    assert_eq!(rep.links, 6);
}

/// A file written by schema 3 (before announcements: the first three migrations and the
/// chain's genesis, exactly as `migrate` ran them) opens: the later migrations run, and
/// decisions and announcements are written and verify in the chain.
#[test]
fn a_schema_3_file_migrates_forward_and_takes_announcements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    {
        let mut conn = Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &super::schema::MIGRATIONS[..3] {
            tx.execute_batch(sql).unwrap();
        }
        super::chain::genesis(&tx).unwrap();
        tx.pragma_update(None, "user_version", 3).unwrap();
        tx.commit().unwrap();
        let has_table: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'maintenance'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_table, 0);
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    record(&s, &decision("www", 10, true, 3)).unwrap();
    maintenance::add(&mut s.lock(), &announcement("www", 1, 2, "db"), 100)
        .unwrap()
        .unwrap();
    assert_eq!(s.list_maintenance(None, 0, 10).unwrap().len(), 1);
    let keys = crate::ledger::fixtures::Keys::new().set();
    let rep = crate::ledger::chain::check_chain(&keys, &s.chain_input().unwrap());
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // genesis, the round, its event, its DNS change, the announcement's event
    assert_eq!(rep.links, 5);
}
