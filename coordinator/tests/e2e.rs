//! End to end, in one process: three real witnesses over HTTPS, stand-in primary and backup
//! web servers on loopback, the coordinator started with `coordinator::start` from a TOML
//! config loaded through the real validation, and the dry-run DNS backend. Scenarios:
//! the primary stops → exactly one failover round backed by signed votes, DNS moves to the
//! backup; the primary comes back → failback only after the hold-down; every witness gone →
//! `coordinator-isolated`, no failover; one witness still reaching the primary → `disputed`,
//! no failover; the history refusing writes → nothing acted on, counted, retried; witnesses
//! answering with arrays where the protocol says object → every vote invalid, none counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Lab, Opts, Site, TestWitness, eventually};
use coordinator::Coordinator;
use coordinator::dns::dryrun::DryRun;
use coordinator::dns::{DnsBackend as _, RecordSet};
use coordinator::failover::Side;
use coordinator::metrics::{ServiceLabel, WriteLabel};
use coordinator::service::ServiceStatus;
use coordinator::store::{DnsChangeRow, ListFilter, Round, RoundFilter};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "web";
const INTERVAL: Duration = Duration::from_millis(300);
const RECOVER_AFTER: u32 = 5;
/// Generous: the machine is shared and debug builds are slow.
const DEADLINE: Duration = Duration::from_secs(20);

struct Rig {
    lab: Lab,
    primary: Site,
    backup: Site,
    witnesses: Vec<TestWitness>,
    dns: Arc<DryRun>,
    coord: Option<Coordinator>,
    shutdown: CancellationToken,
    primary_records: Vec<RecordSet>,
    backup_records: Vec<RecordSet>,
    zone: String,
    /// The public keys of the coordinator and the witnesses, as an auditor holds them.
    keys: coordinator::ledger::KeySet,
    http: reqwest::Client,
}

impl Rig {
    /// Plain HTTP primary and backup, three witnesses, the coordinator.
    async fn start() -> Rig {
        let lab = Lab::new();
        let (p_addr, b_addr) = common::two_sites_port();
        let witnesses = common::start_witnesses(&lab, p_addr.port(), [vec![], vec![], vec![]]);
        let opts = Opts::new(
            witnesses.iter().map(|w| w.block()).collect(),
            p_addr.ip(),
            b_addr.ip(),
            p_addr.port(),
        );
        Rig::assemble(lab, Site::http(p_addr), Site::http(b_addr), witnesses, opts).await
    }

    /// Starts the sites, then the coordinator from `opts` (interval and hold-down set here).
    async fn assemble(
        lab: Lab,
        mut primary: Site,
        mut backup: Site,
        witnesses: Vec<TestWitness>,
        mut opts: Opts,
    ) -> Rig {
        primary.start().await;
        backup.start().await;
        opts.recover_after = RECOVER_AFTER;
        opts.interval = format!("{}ms", INTERVAL.as_millis());
        // A spell of identical rounds shows a row at each checkpoint: every second here.
        opts.checkpoint_every = Some("1s".into());
        let config = lab.config(&opts.toml());
        assert_eq!(config.dns.backends[0].config.kind(), "dryrun");
        let svc = config.services[0].clone();
        let keys = coordinator::ledger::KeySet::from_config(&config);
        let primary_records = svc.records_for(Side::Primary);
        let backup_records = svc.records_for(Side::Backup);
        // DNS starts out serving the primary, as a real zone would.
        let dns = Arc::new(DryRun::with_records(primary_records.clone()));
        let shutdown = CancellationToken::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let coord = coordinator::start(config, listener, Some(dns.clone()), shutdown.clone())
            .await
            .unwrap();
        Rig {
            lab,
            primary,
            backup,
            witnesses,
            dns,
            coord: Some(coord),
            shutdown,
            primary_records,
            backup_records,
            zone: svc.zone.clone(),
            keys,
            http: reqwest::Client::new(),
        }
    }

    fn coord(&self) -> &Coordinator {
        self.coord.as_ref().unwrap()
    }

    fn status(&self) -> ServiceStatus {
        self.coord().services[SERVICE].current()
    }

    fn ticks(&self) -> u64 {
        self.coord()
            .metrics
            .ticks
            .get_or_create(&ServiceLabel {
                service: SERVICE.into(),
            })
            .get()
    }

    /// Waits until the service has run `n` more probe intervals.
    async fn wait_ticks(&self, n: u64) {
        let start = self.ticks();
        eventually(&format!("{n} more probe intervals"), DEADLINE, || async {
            (self.ticks() >= start + n).then_some(())
        })
        .await;
    }

    async fn served(&self) -> Vec<RecordSet> {
        self.dns
            .current(&self.zone, &self.primary_records)
            .await
            .unwrap()
    }

    async fn serves(&self, side: Side) -> bool {
        let want = match side {
            Side::Primary => &self.primary_records,
            Side::Backup => &self.backup_records,
        };
        &self.served().await == want
    }

    async fn rounds(&self) -> Vec<Round> {
        let f = RoundFilter {
            service: Some(SERVICE.into()),
            limit: 500,
            ..Default::default()
        };
        self.coord()
            .store
            .call(move |s| s.list_rounds(&f))
            .await
            .unwrap()
    }

    async fn rounds_with(&self, outcome: &str) -> Vec<Round> {
        self.rounds()
            .await
            .into_iter()
            .filter(|r| r.round.outcome == outcome)
            .collect()
    }

    async fn changes(&self) -> Vec<DnsChangeRow> {
        let f = ListFilter {
            service: Some(SERVICE.into()),
            limit: 500,
            ..Default::default()
        };
        self.coord()
            .store
            .call(move |s| s.list_dns_changes(&f))
            .await
            .unwrap()
    }

    async fn api(&self, path: &str) -> serde_json::Value {
        let url = format!("http://{}{path}", self.coord().api_addr);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.lab.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(c) = self.coord.take() {
            c.wait(Duration::from_secs(10)).await;
        }
        for w in &mut self.witnesses {
            w.stop().await;
        }
    }
}

impl Rig {
    /// `quorate_history_write_failures_total{what}` as `/metrics` serves it.
    fn write_failures(&self, what: &str) -> u64 {
        self.coord()
            .metrics
            .history_write_failures
            .get_or_create(&WriteLabel { what: what.into() })
            .get()
    }
}

/// The votes of one round as the API shows them, each with its `reverified` field.
async fn round_votes(rig: &Rig, id: i64) -> Vec<serde_json::Value> {
    let body = rig.api(&format!("/v1/rounds/{id}")).await;
    assert_eq!(body["round"]["id"], id);
    body["votes"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_then_failback_after_hold_down_then_isolated_coordinator_does_nothing() {
    let mut rig = Rig::start().await;
    assert!(rig.coord().api_addr.ip().is_loopback());

    // Healthy: the coordinator sees both sides up and every witness votes "up".
    eventually("a healthy tick with 3 up votes", DEADLINE, || async {
        let s = rig.status();
        (s.primary_up == Some(true) && s.backup_up == Some(true) && s.last_votes.up == 3)
            .then_some(())
    })
    .await;
    // Each witness gets each interval's request at its own slot, and never one twice (a
    // request reused across intervals would be refused as replayed).
    for w in &rig.witnesses {
        eventually("six votes from each witness", DEADLINE, || async {
            (w.requests("up").await >= 6.0).then_some(())
        })
        .await;
        assert_eq!(w.requests("replayed").await, 0.0, "{}", w.name);
    }
    assert!(
        rig.rounds().await.is_empty(),
        "a healthy service records no rounds"
    );
    assert!(rig.serves(Side::Primary).await);

    // ---- 1. The primary stops (its port refuses connections) → one failover. ----
    rig.primary.stop().await;
    eventually("DNS to serve the backup", DEADLINE, || async {
        rig.serves(Side::Backup).await.then_some(())
    })
    .await;
    let changes = eventually(
        "the failover DNS change to be recorded as applied",
        DEADLINE,
        || async {
            let c = rig.changes().await;
            (c.len() == 1 && c[0].status == "applied").then_some(c)
        },
    )
    .await;
    eventually(
        "status to show backup-active, no change pending",
        DEADLINE,
        || async {
            let s = rig.status();
            (s.active == Side::Backup && !s.dns_pending).then_some(())
        },
    )
    .await;
    // A few more intervals with the primary down: still exactly one failover, one change.
    rig.wait_ticks(3).await;
    let failovers = rig.rounds_with("failover").await;
    assert_eq!(
        failovers.len(),
        1,
        "exactly one failover round: {failovers:?}"
    );
    let fo = &failovers[0];
    assert_eq!(fo.round.trigger, "primary-down");
    assert!(fo.round.changed_dns);
    assert!(!fo.round.primary_up && fo.round.backup_up);
    assert!(fo.round.votes_down >= 2, "{fo:?}");
    assert_eq!(
        rig.changes().await.len(),
        1,
        "no second DNS change while the primary stays down"
    );
    let change = &changes[0];
    assert_eq!(change.to_side, "backup");
    assert_eq!(change.round_id, Some(fo.id));
    assert_eq!(change.backend, "dryrun");
    assert!(change.attempts >= 1);
    assert!(change.created_ms <= change.updated_ms);
    // The stored votes: at least two valid, signed "down" votes that verify again now.
    let votes = round_votes(&rig, fo.id).await;
    assert_eq!(votes.len(), 3);
    let good_down = votes
        .iter()
        .filter(|v| {
            v["valid"] == true
                && v["verdict"] == "down"
                && v["reverified"] == "ok"
                && v["vote_envelope"].is_string()
        })
        .count();
    assert!(
        good_down >= 2,
        "at least two valid signed down votes, got {votes:#?}"
    );
    let keys = rig.keys.clone();
    let report = rig
        .coord()
        .store
        .call(move |s| coordinator::audit::audit_history(s, Some(SERVICE), &keys))
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.valid_ok >= 2);
    let events = rig.api("/v1/events?service=web").await;
    let kinds: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"dns-applied"), "{kinds:?}");
    assert!(kinds.contains(&"transition"), "{kinds:?}");

    // ---- 4. The primary comes back → failback only after the hold-down. ----
    let back_at = Instant::now();
    let back_at_ms = shared::unix_ms(std::time::SystemTime::now());
    rig.primary.start().await;
    // The coordinator sees the primary up while DNS still serves the backup (the hold-down).
    eventually(
        "a tick that sees the primary up during the hold-down",
        DEADLINE,
        || async {
            let s = rig.status();
            (s.primary_up == Some(true) && s.active == Side::Backup).then_some(())
        },
    )
    .await;
    assert!(
        rig.serves(Side::Backup).await,
        "no failback on the first up probe"
    );
    eventually("DNS to serve the primary again", DEADLINE, || async {
        rig.serves(Side::Primary).await.then_some(())
    })
    .await;
    let took = back_at.elapsed();
    // recover_after consecutive up probes span at least (recover_after - 1) intervals. Half an
    // interval of slack covers one tick that fired late followed by one on time.
    let hold_down = INTERVAL * (RECOVER_AFTER - 1) - INTERVAL / 2;
    assert!(
        took >= hold_down,
        "failback after {took:?}, before the hold-down of {hold_down:?}"
    );
    let failbacks = rig.rounds_with("failback").await;
    assert_eq!(failbacks.len(), 1, "{failbacks:?}");
    assert_eq!(failbacks[0].round.trigger, "primary-up");
    assert!(failbacks[0].round.at_ms >= back_at_ms + hold_down.as_millis() as u64);
    eventually("the failback change applied", DEADLINE, || async {
        let c = rig.changes().await;
        (c.len() == 2 && c[0].status == "applied" && c[0].to_side == "primary").then_some(())
    })
    .await;
    eventually("status primary-active", DEADLINE, || async {
        (rig.status().active == Side::Primary).then_some(())
    })
    .await;

    // ---- 3. Every witness unreachable, primary down → coordinator-isolated, no failover. ----
    for w in &mut rig.witnesses {
        w.stop().await;
    }
    let last_before = rig.rounds().await.first().map(|r| r.id).unwrap_or(0);
    rig.primary.stop().await;
    let isolated = eventually("three coordinator-isolated rounds", DEADLINE, || async {
        let r: Vec<Round> = rig
            .rounds_with("coordinator-isolated")
            .await
            .into_iter()
            .filter(|r| r.id > last_before)
            .collect();
        (r.len() >= 3).then_some(r)
    })
    .await;
    for r in &isolated {
        assert_eq!(r.round.trigger, "primary-down");
        assert!(!r.round.changed_dns);
        assert_eq!(r.round.votes_missing, 3, "{r:?}");
        assert_eq!(r.round.votes_up + r.round.votes_down, 0);
    }
    let votes = round_votes(&rig, isolated[0].id).await;
    assert_eq!(votes.len(), 3);
    for v in &votes {
        assert_eq!(v["valid"], false);
        assert!(v["vote_envelope"].is_null());
        assert_eq!(v["reverified"], "no-answer");
        assert!(v["error"].as_str().unwrap().starts_with("no answer"), "{v}");
    }
    let new_rounds: Vec<Round> = rig
        .rounds()
        .await
        .into_iter()
        .filter(|r| r.id > last_before)
        .collect();
    assert!(
        new_rounds
            .iter()
            .all(|r| r.round.outcome == "coordinator-isolated"),
        "{new_rounds:?}"
    );
    assert_eq!(rig.changes().await.len(), 2, "no DNS change while isolated");
    assert!(rig.serves(Side::Primary).await);
    assert_eq!(rig.status().active, Side::Primary);

    rig.backup.stop().await;
    rig.stop().await;
}

/// A witness that can still reach the primary vetoes the failover.
///
/// How one witness sees "up" while the coordinator sees "down", with real probes of the same
/// target: the primary serves HTTPS with a self-signed certificate. Witness w1 trusts that
/// certificate (its `extra_roots`), so its probe succeeds; w2, w3 and the coordinator do not
/// (the coordinator's `probe_ca_file` holds only the backup's certificate), so theirs fail
/// with a TLS error — the same split a broken path between backup and primary produces. With
/// quorum 2 the two "down" votes would be enough to fail over; the one "up" vote (veto
/// `any`) must stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disputed_round_when_one_witness_still_reaches_the_primary() {
    let rig = start_dispute_rig().await;

    let disputed = eventually("three disputed rounds", DEADLINE, || async {
        let r = rig.rounds_with("disputed").await;
        (r.len() >= 3).then_some(r)
    })
    .await;
    for r in &disputed {
        assert_eq!(r.round.trigger, "primary-down");
        assert!(
            !r.round.primary_up,
            "the coordinator sees the primary down: {r:?}"
        );
        assert!(
            r.round.backup_up,
            "the coordinator sees the backup up: {r:?}"
        );
        // The veto settles the round the moment it arrives: the "down" votes are in the
        // record if they came first, otherwise recorded as not awaited.
        assert_eq!(r.round.votes_up, 1, "{r:?}");
        assert!(r.round.votes_down <= 2, "{r:?}");
        assert!(!r.round.changed_dns);
    }
    for r in &disputed {
        let votes = round_votes(&rig, r.id).await;
        let up: Vec<_> = votes.iter().filter(|v| v["verdict"] == "up").collect();
        assert_eq!(up.len(), 1, "{votes:#?}");
        assert_eq!(up[0]["witness"], "w1");
        for v in &votes {
            let answered = v["valid"] == true && v["reverified"] == "ok";
            let not_awaited = v["valid"] == false
                && v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("settled before it answered"));
            assert!(answered || not_awaited, "{votes:#?}");
        }
    }
    let all = rig.rounds().await;
    assert!(
        all.iter().all(|r| r.round.outcome == "disputed"),
        "only disputed rounds: {all:?}"
    );
    assert!(rig.changes().await.is_empty(), "no DNS change");
    assert!(rig.serves(Side::Primary).await);
    assert_eq!(rig.status().active, Side::Primary);
    rig.stop().await;
}

async fn start_dispute_rig() -> Rig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let lab = Lab::new();
    let (p_addr, b_addr) = common::two_sites_port();
    let (pc, pk) = shared::tls::self_signed(&[p_addr.ip().to_string()]).unwrap();
    let (bc, bk) = shared::tls::self_signed(&[b_addr.ip().to_string()]).unwrap();
    let ca = lab.path().join("backup-ca.pem");
    std::fs::write(&ca, &bc).unwrap();
    let primary_root = CertificateDer::from_pem_slice(pc.as_bytes())
        .unwrap()
        .into_owned();
    let witnesses =
        common::start_witnesses(&lab, p_addr.port(), [vec![primary_root], vec![], vec![]]);
    let mut opts = Opts::new(
        witnesses.iter().map(|w| w.block()).collect(),
        p_addr.ip(),
        b_addr.ip(),
        p_addr.port(),
    );
    opts.probe_kind = "https".into();
    opts.probe_ca_file = Some(ca);
    Rig::assemble(
        lab,
        Site::https(p_addr, pc, pk),
        Site::https(b_addr, bc, bk),
        witnesses,
        opts,
    )
    .await
}

/// A primary that hangs (accepts connections, never answers) is as dead as one that refuses
/// them, and must be failed over with the default timeouts: probe timeout equal to the
/// interval (the shipped defaults are both 1 s) and no `timeout` on the witnesses. A witness
/// can only answer "down" once its own probe has timed out, so the coordinator must wait for
/// it longer than the probe timeout, or every vote goes missing and the round is
/// `coordinator-isolated` for as long as the primary hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hung_primary_fails_over_with_default_timeouts() {
    let lab = Lab::new();
    let (p_addr, b_addr) = common::two_sites_port();
    let _tarpit = common::Tarpit::start(p_addr).await;
    let mut backup = Site::http(b_addr);
    backup.start().await;
    let witnesses = common::start_witnesses(&lab, p_addr.port(), [vec![], vec![], vec![]]);
    let mut opts = Opts::new(
        witnesses
            .iter()
            .map(|w| w.block_default_timeout())
            .collect(),
        p_addr.ip(),
        b_addr.ip(),
        p_addr.port(),
    );
    opts.interval = format!("{}ms", INTERVAL.as_millis());
    opts.probe_timeout = opts.interval.clone();
    let config = lab.config(&opts.toml());
    let svc = config.services[0].clone();
    let dns = Arc::new(DryRun::with_records(svc.records_for(Side::Primary)));
    let shutdown = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let coord = coordinator::start(config, listener, Some(dns.clone()), shutdown.clone())
        .await
        .unwrap();
    let store = coord.store.clone();
    let rounds = eventually("three decision rounds", DEADLINE, || async {
        let f = RoundFilter {
            service: Some(SERVICE.into()),
            limit: 500,
            ..Default::default()
        };
        let s = store.clone();
        let r = s.call(move |s| s.list_rounds(&f)).await.unwrap();
        (r.len() >= 3 || r.iter().any(|r| r.round.outcome == "failover")).then_some(r)
    })
    .await;
    let outcomes: Vec<&str> = rounds.iter().map(|r| r.round.outcome.as_str()).collect();
    assert!(
        outcomes.contains(&"failover"),
        "a hung primary must be failed over, got rounds {outcomes:?}: {rounds:#?}"
    );
    eventually("DNS to serve the backup", DEADLINE, || async {
        (dns.current(&svc.zone, &svc.records_for(Side::Primary))
            .await
            .unwrap()
            == svc.records_for(Side::Backup))
        .then_some(())
    })
    .await;
    shutdown.cancel();
    coord.wait(Duration::from_secs(10)).await;
}

/// The history refuses the failover decision (a trigger stands in for a full disk): nothing is
/// acted on, DNS stays on the primary, and the failure is counted. Once the history takes
/// writes again the next tick decides again and fails over; the DNS result refused meanwhile
/// is kept and written at a later tick, so the history ends up saying what DNS serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_history_write_is_counted_not_acted_on_and_retried() {
    let mut rig = Rig::start().await;
    rig.wait_ticks(2).await;
    let db = rusqlite::Connection::open(rig.lab.path().join("history.sqlite")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_rounds BEFORE INSERT ON rounds
             BEGIN SELECT RAISE(ABORT, 'test: the disk is full'); END;
         CREATE TRIGGER refuse_applied BEFORE UPDATE OF status ON dns_changes
             WHEN NEW.status = 'applied'
             BEGIN SELECT RAISE(ABORT, 'test: the disk is full'); END;",
    )
    .unwrap();

    rig.primary.stop().await;
    eventually("two refused failover decisions", DEADLINE, || async {
        (rig.write_failures("decision") >= 2).then_some(())
    })
    .await;
    assert!(
        rig.serves(Side::Primary).await,
        "a refused decision was acted on"
    );
    assert_eq!(rig.status().active, Side::Primary);
    assert!(rig.changes().await.is_empty());
    assert!(rig.rounds().await.is_empty());
    let text = rig.coord().metrics.encode();
    assert!(
        text.contains(r#"quorate_history_write_failures_total{what="decision"}"#),
        "{text}"
    );

    db.execute_batch("DROP TRIGGER refuse_rounds").unwrap();
    eventually(
        "the failover once the decision is written",
        DEADLINE,
        || async { rig.serves(Side::Backup).await.then_some(()) },
    )
    .await;
    eventually("the refused DNS result counted", DEADLINE, || async {
        (rig.write_failures("dns-finish") >= 1).then_some(())
    })
    .await;
    let changes = rig.changes().await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].status, "pending", "not written yet");

    db.execute_batch("DROP TRIGGER refuse_applied").unwrap();
    eventually(
        "the kept DNS result written at a later tick",
        DEADLINE,
        || async {
            let c = rig.changes().await;
            (c.len() == 1 && c[0].status == "applied").then_some(())
        },
    )
    .await;
    assert_eq!(rig.rounds_with("failover").await.len(), 1);
    let events = rig.api("/v1/events?service=web").await;
    assert!(
        events.to_string().contains("dns-applied"),
        "the dns-applied event came with the result: {events}"
    );
    rig.stop().await;
}

/// How a rogue witness shapes its (correctly signed) "down" vote.
#[derive(Clone, Copy, Debug)]
enum ArrayShape {
    /// `[payload, signature]` instead of `{"payload": .., "signature": ..}`.
    Envelope,
    /// The vote payload as the array of its field values.
    Payload,
    /// The vote's `evidence` as the array of its field values.
    Evidence,
}

/// An HTTPS witness with a key the coordinator pins, which answers every request with a vote
/// "down" for exactly that request, signed by its key, but sent with an array where the
/// protocol says object. serde's derive alone would read each answer as a valid vote.
struct RogueWitness {
    block: String,
    task: tokio::task::JoinHandle<()>,
}

impl RogueWitness {
    fn start(name: &str, shape: ArrayShape) -> RogueWitness {
        use base64::Engine as _;
        use base64::engine::general_purpose::STANDARD as B64;
        use ed25519_dalek::Signer as _;
        use shared::probe::{Evidence, ProbeError};
        use shared::protocol::{Envelope, KeyId, VOTE_DOMAIN, Verdict, Vote, VoteRequest};

        shared::install_crypto_provider();
        let key = shared::keys::generate();
        let (cert, tls_key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        let config = witness::Config::from_parts(
            key.clone(),
            vec![],
            witness::Allowlist(vec![]),
            cert,
            tls_key,
        )
        .unwrap();
        let tls = witness::server_tls_config(&config).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let block = common::witness_block(
            name,
            &format!("https://{addr}"),
            &key.verifying_key(),
            Some(&config.tls.cert_sha256),
        );
        let answer = move |body: bytes::Bytes| {
            let request = Envelope::from_json(&body).unwrap();
            let request_hash = request.request_hash().unwrap().hex();
            let r: VoteRequest =
                serde_json::from_slice(&B64.decode(&request.payload).unwrap()).unwrap();
            let vote = Vote {
                version: r.version,
                witness: KeyId::of(&key.verifying_key()),
                service: r.service,
                round: r.round,
                request_hash,
                verdict: Verdict::Down,
                evidence: Evidence {
                    probe: "http".into(),
                    latency_us: 150,
                    status: None,
                    error: Some(ProbeError::Refused),
                    detail: Some("connection refused".into()),
                },
                probed_at_ms: r.issued_at_ms,
            };
            let e = &vote.evidence;
            let payload = match shape {
                ArrayShape::Envelope => serde_json::to_string(&vote).unwrap(),
                ArrayShape::Payload => serde_json::json!([
                    vote.version,
                    vote.witness,
                    vote.service,
                    vote.round,
                    vote.request_hash,
                    vote.verdict,
                    vote.evidence,
                    vote.probed_at_ms
                ])
                .to_string(),
                ArrayShape::Evidence => {
                    let mut v = serde_json::to_value(&vote).unwrap();
                    v["evidence"] =
                        serde_json::json!([e.probe, e.latency_us, e.status, e.error, e.detail]);
                    v.to_string()
                }
            };
            let mut signed = VOTE_DOMAIN.to_vec();
            signed.extend_from_slice(payload.as_bytes());
            let (payload, signature) = (
                B64.encode(payload.as_bytes()),
                B64.encode(key.sign(&signed).to_bytes()),
            );
            let wire = match shape {
                ArrayShape::Envelope => serde_json::json!([payload, signature]),
                _ => serde_json::json!({"payload": payload, "signature": signature}),
            };
            // What serde's derive alone makes of the answer: this very vote.
            let lenient: Envelope = serde_json::from_value(wire.clone()).unwrap();
            let lenient: Vote =
                serde_json::from_slice(&B64.decode(lenient.payload).unwrap()).unwrap();
            assert_eq!(lenient, vote);
            wire.to_string()
        };
        let app = axum::Router::new().route(
            "/v1/vote",
            axum::routing::post(move |body: bytes::Bytes| {
                let answer = answer.clone();
                async move { answer(body) }
            }),
        );
        let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        );
        let server = axum_server::from_tcp(listener).unwrap().acceptor(acceptor);
        let task = tokio::spawn(async move {
            server.serve(app.into_make_service()).await.unwrap();
        });
        RogueWitness { block, task }
    }
}

impl Drop for RogueWitness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Three witnesses whose signed "down" votes come with an array where the protocol says
/// object (the envelope, the payload, the evidence): with the primary down, every vote is
/// stored `invalid` as `malformed`, re-verifies as `malformed`, and none is counted: no
/// failover, DNS stays on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn votes_sent_as_arrays_are_invalid_and_never_counted() {
    let lab = Lab::new();
    let (p_addr, b_addr) = common::two_sites_port();
    let rogues = [
        RogueWitness::start("w1", ArrayShape::Envelope),
        RogueWitness::start("w2", ArrayShape::Payload),
        RogueWitness::start("w3", ArrayShape::Evidence),
    ];
    let opts = Opts::new(
        rogues.iter().map(|r| r.block.clone()).collect(),
        p_addr.ip(),
        b_addr.ip(),
        p_addr.port(),
    );
    let mut rig = Rig::assemble(lab, Site::http(p_addr), Site::http(b_addr), vec![], opts).await;
    rig.primary.stop().await;
    let rounds = eventually("three rounds with the primary down", DEADLINE, || async {
        let r = rig.rounds().await;
        (r.len() >= 3).then_some(r)
    })
    .await;
    for r in &rounds {
        assert_eq!(r.round.trigger, "primary-down", "{r:?}");
        assert_eq!(r.round.votes_invalid, 3, "{r:?}");
        assert_eq!(r.round.votes_up + r.round.votes_down, 0, "{r:?}");
        assert_ne!(r.round.outcome, "failover", "{r:?}");
        assert!(!r.round.changed_dns, "{r:?}");
    }
    let votes = round_votes(&rig, rounds[0].id).await;
    assert_eq!(votes.len(), 3);
    for v in &votes {
        assert_eq!(v["valid"], false, "{v}");
        assert!(v["vote_envelope"].is_string(), "stored as received: {v}");
        let error = v["error"].as_str().unwrap();
        assert!(
            error.starts_with("invalid: malformed message:")
                && error.contains("must be a JSON object, got an array"),
            "{v}"
        );
        assert!(
            v["reverified"].as_str().unwrap().starts_with("malformed: "),
            "{v}"
        );
    }
    assert!(rig.rounds_with("failover").await.is_empty());
    assert!(rig.changes().await.is_empty(), "no DNS change");
    assert!(rig.serves(Side::Primary).await);
    assert_eq!(rig.status().active, Side::Primary);
    rig.stop().await;
}

/// `quorate-coordinator replay` on a history this run recorded: a failover decided on 2 of 3
/// votes (one witness stopped) and its failback. Replayed under quorum 3 of 3 it names the
/// failover round as one that would not have happened and the hold-down's rounds as not
/// comparable; under the config it ran with, it reports no difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_names_the_failover_a_stricter_quorum_would_not_have_made() {
    let mut rig = Rig::start().await;
    eventually("a healthy tick with 3 up votes", DEADLINE, || async {
        (rig.status().last_votes.up == 3).then_some(())
    })
    .await;
    rig.witnesses[2].stop().await;
    rig.primary.stop().await;
    eventually("DNS to serve the backup", DEADLINE, || async {
        rig.serves(Side::Backup).await.then_some(())
    })
    .await;
    rig.primary.start().await;
    eventually("DNS to serve the primary again", DEADLINE, || async {
        rig.serves(Side::Primary).await.then_some(())
    })
    .await;
    let failovers = rig.rounds_with("failover").await;
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    let fo = failovers[0].clone();
    assert_eq!((fo.round.votes_down, fo.round.votes_missing), (2, 1));
    let failback = rig.rounds_with("failback").await[0].clone();
    rig.shutdown.cancel();
    rig.coord
        .take()
        .unwrap()
        .wait(Duration::from_secs(10))
        .await;

    let dir = rig.lab.path();
    let ran = std::fs::read_to_string(dir.join("coordinator.toml")).unwrap();
    assert!(ran.contains("quorum = 2\n"));
    std::fs::write(
        dir.join("strict.toml"),
        ran.replace("quorum = 2\n", "quorum = 3\n"),
    )
    .unwrap();
    let replay = |config: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
            .args(["replay", "--db", "history.sqlite", "--config", config])
            .current_dir(dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.code(),
            text + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (code, text) = replay("strict.toml");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "round {} at {} (primary-down; 2 down, 0 up, 0 invalid, 1 missing): recorded failover, proposed insufficient-votes",
            fo.id,
            coordinator::cli::fmt_ms(fo.round.at_ms)
        )),
        "{text}"
    );
    assert!(text.contains("proposed: quorum 3 of 3"), "{text}");
    assert!(text.contains("recorded: quorum 2 of 3"), "{text}");
    assert!(
        text.contains(&format!("{}", failback.id)) && text.contains("not comparable"),
        "{text}"
    );
    assert!(
        text.contains("1 round(s) would have been decided differently"),
        "{text}"
    );

    let (code, text) = replay("coordinator.toml");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("0 decided differently, 0 not comparable"),
        "{text}"
    );
    assert!(text.contains("no difference"), "{text}");
}

/// `GET /v1/rounds/{id}/incident` of a real failover, once a checkpoint covers it: the bundle,
/// saved in an empty folder, verifies with the binary and nothing else. An unknown round is
/// 404, a round id that is not a number 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_a_failovers_incident_bundle_that_verifies_alone() {
    let mut rig = Rig::start().await;
    rig.primary.stop().await;
    eventually("DNS to serve the backup", DEADLINE, || async {
        rig.serves(Side::Backup).await.then_some(())
    })
    .await;
    let failover = rig.rounds_with("failover").await[0].id;
    let base = format!("http://{}/v1/rounds", rig.coord().api_addr);
    let get = |path: String| {
        let req = rig
            .http
            .get(format!("{base}{path}"))
            .bearer_auth(&rig.lab.token);
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let bundle = eventually("a checkpoint covering the failover", DEADLINE, || async {
        let (status, body) = get(format!("/{failover}/incident")).await;
        match status {
            200 => Some(body),
            409 => None,
            other => panic!("GET incident: {other} {body}"),
        }
    })
    .await;
    assert_eq!(get("/999999/incident".into()).await.0, 404);
    assert_eq!(get("/abc/incident".into()).await.0, 400);
    rig.stop().await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("incident.json"), &bundle).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(["verify-history", "--incident", "incident.json"])
        .current_dir(dir.path())
        .env("QUORATE_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("PROBLEM"), "{text}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing but the file"
    );
}
