//! The DNS worker and retention on tokio's paused clock (backoff and the hourly schedule are
//! checked to the millisecond, without waiting), a panicking worker marked failed in the
//! status, and DNS results that could not be written kept and written later.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::dns_worker::{self, Worker};
use super::history::History;
use super::*;
use crate::config::HooksConfig;
use crate::dns::{Change, DnsError, RecordSet};
use crate::metrics::{TaskLabel, WriteLabel};
use crate::store::{ChangeStatus, Decision, EventKind, ListFilter, PendingChange};

/// A backend that fails `transient` times, then applies; or panics when `panics`.
struct Fake {
    transient: usize,
    panics: bool,
    attempts: Mutex<Vec<Instant>>,
}

impl Fake {
    fn new(transient: usize, panics: bool) -> Arc<Fake> {
        Arc::new(Fake {
            transient,
            panics,
            attempts: Mutex::new(Vec::new()),
        })
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }
}

impl DnsBackend for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn current<'a>(
        &'a self,
        _zone: &'a str,
        _like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn apply<'a>(&'a self, _change: &'a Change) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move {
            let n = {
                let mut a = self.attempts.lock().unwrap();
                a.push(Instant::now());
                a.len()
            };
            assert!(!self.panics, "a bug in the DNS backend");
            if n <= self.transient {
                Err(DnsError::Transient(format!("attempt {n} timed out")))
            } else {
                Ok(())
            }
        })
    }

    fn check<'a>(
        &'a self,
        _zone: &'a str,
        _expected: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<String, DnsError>> {
        Box::pin(async { Ok("fake: nothing to prove".into()) })
    }
}

fn status() -> ServiceStatus {
    ServiceStatus {
        service: "www".into(),
        state: "backup-active".into(),
        active: Side::Backup,
        override_: Override::Auto,
        primary_up: None,
        backup_up: None,
        last_votes: VoteTally::default(),
        last_tick_ms: 0,
        awaiting_manual_failback: false,
        damped: false,
        blocked: false,
        dns_pending: false,
        witnesses: Vec::new(),
        failed: None,
        dns_serves: None,
        readiness: crate::readiness::ReadinessStatus::unknown(),
    }
}

/// One service's DNS worker on a real history file, supervised.
struct Rig {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    store: Store,
    metrics: Arc<Metrics>,
    history: Arc<History>,
    sup: Supervisor,
    jobs: mpsc::Sender<Job>,
    status: watch::Receiver<ServiceStatus>,
    _failed: mpsc::Receiver<(Side, String)>,
}

impl Rig {
    fn start(backend: Arc<Fake>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let store = Store::open(&path).unwrap();
        let metrics = Arc::new(Metrics::new());
        let sup = Supervisor::new(
            TaskTracker::new(),
            metrics.clone(),
            tokio_util::sync::CancellationToken::new(),
        );
        let history = Arc::new(History::new(store.clone(), metrics.clone()));
        let (status_tx, status) = watch::channel(status());
        let (jobs, job_rx) = mpsc::channel(16);
        let (failed_tx, failed) = mpsc::channel(16);
        let worker = Worker {
            service: "www".into(),
            hooks: HooksConfig::default(),
            dns: Arc::new(super::DnsDeps {
                label: backend.kind().to_string(),
                backend,
                authorities: crate::readiness::checks::AuthoritySettings {
                    listed: Vec::new(),
                    discover: true,
                    port: 53,
                    timeout: Duration::from_secs(1),
                    resolvers: None,
                },
            }),
            metrics: metrics.clone(),
            notifier: Notifier::disabled(),
            history: history.clone(),
            failed: failed_tx,
            pending_flag: DnsPending {
                flag: Arc::new(AtomicBool::new(false)),
                status: status_tx.clone(),
                gate_waiting: Arc::new(AtomicBool::new(false)),
                gate_skip: Arc::new(tokio::sync::Notify::new()),
            },
            pending_after: Duration::from_secs(120),
            shutdown: sup.shutdown().clone(),
        };
        sup.spawn(
            "dns-worker:www",
            dns_worker::run(worker, job_rx),
            mark_failed(status_tx, "dns worker"),
        );
        Rig {
            _dir: dir,
            path,
            store,
            metrics,
            history,
            sup,
            jobs,
            status,
            _failed: failed,
        }
    }

    /// Records a pending change to the backup and hands it to the worker.
    async fn send_change(&self) -> i64 {
        let change = Change {
            zone: "example.test.".into(),
            from: vec![],
            to: vec![],
        };
        let (_, id) = self
            .store
            .record_decision(Decision {
                service: "www".into(),
                at_ms: 1,
                dns_change: Some(PendingChange {
                    to_side: Side::Backup,
                    backend: "fake".into(),
                    change: change.clone(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let id = id.unwrap();
        self.jobs
            .send(Job {
                id,
                to: Side::Backup,
                change,
                reason: "test".into(),
            })
            .await
            .unwrap();
        id
    }

    /// Polls (on whatever clock the test runs) until `f` holds, at most `within`.
    async fn until<F: FnMut() -> bool>(&self, what: &str, within: Duration, mut f: F) {
        let deadline = Instant::now() + within;
        while !f() {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn change_status(&self, id: i64) -> (ChangeStatus, u32) {
        let row = self
            .store
            .call(move |s| s.dns_change(id))
            .await
            .unwrap()
            .unwrap();
        (row.status, row.attempts)
    }

    fn failures(&self, what: &str) -> u64 {
        self.metrics
            .history_write_failures
            .get_or_create(&WriteLabel { what: what.into() })
            .get()
    }

    async fn stop(self) {
        self.sup.shutdown().cancel();
        self.sup.tracker().close();
        self.sup.tracker().wait().await;
    }
}

/// Transient errors are retried after 250 ms, doubling to at most 10 s: checked to the
/// millisecond on the paused clock (the test takes no wall-clock time for its 36 s of retries).
#[tokio::test(start_paused = true)]
async fn transient_dns_errors_are_retried_with_backoff_doubling_to_ten_seconds() {
    let backend = Fake::new(8, false);
    let rig = Rig::start(backend.clone());
    let id = rig.send_change().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while rig.change_status(id).await.0 != ChangeStatus::Applied {
        assert!(Instant::now() < deadline, "change {id} never applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = backend.attempts();
    let gaps: Vec<u128> = at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(
        gaps,
        [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000],
        "delays between attempts"
    );
    assert_eq!(
        rig.change_status(id).await,
        (ChangeStatus::Applied, 9),
        "every attempt is in the history"
    );
    rig.stop().await;
}

/// A panic in the DNS worker is counted, and the service's status says it failed (the API
/// shows `failed`), instead of the last reading going on looking live.
#[tokio::test]
async fn a_panicking_dns_worker_is_counted_and_marks_the_service_failed() {
    let rig = Rig::start(Fake::new(0, true));
    rig.send_change().await;
    let mut watch = rig.status.clone();
    let s = tokio::time::timeout(
        Duration::from_secs(20),
        watch.wait_for(|s| s.failed.is_some()),
    )
    .await
    .expect("the status shows the failure within 20 s")
    .unwrap()
    .clone();
    let why = s.failed.clone().unwrap();
    assert!(
        why.starts_with("dns worker panicked: a bug in the DNS backend"),
        "{why}"
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["failed"], why.as_str(), "{json}");
    assert_eq!(
        rig.metrics
            .task_exits
            .get_or_create(&TaskLabel {
                task: "dns-worker:www".into(),
                how: "panicked".into(),
            })
            .get(),
        1
    );
    assert!(
        rig.metrics
            .encode()
            .contains(r#"quorate_task_exits_total{task="dns-worker:www",how="panicked"} 1"#)
    );
    // A healthy status has no `failed` field at all: the API's JSON shape is unchanged.
    assert!(
        serde_json::to_value(status())
            .unwrap()
            .get("failed")
            .is_none()
    );
    rig.stop().await;
}

/// The history refuses the DNS worker's result: the failure is counted, the change is not
/// shown as applied, and once the history is writable again the kept result is written (at
/// the next flush, which the service task runs every tick), with its event.
#[tokio::test]
async fn a_dns_result_that_cannot_be_written_is_kept_and_written_later() {
    let rig = Rig::start(Fake::new(0, false));
    let block = rusqlite::Connection::open(&rig.path).unwrap();
    block
        .execute_batch(
            "CREATE TRIGGER refuse_result BEFORE UPDATE OF status ON dns_changes
             BEGIN SELECT RAISE(ABORT, 'test: the disk refuses'); END;",
        )
        .unwrap();
    let id = rig.send_change().await;
    rig.until(
        "the failed write is counted",
        Duration::from_secs(20),
        || rig.failures("dns-finish") >= 1,
    )
    .await;
    assert_eq!(
        rig.change_status(id).await,
        (ChangeStatus::Pending, 1),
        "the attempt is recorded, the result is not"
    );
    assert!(
        rig.metrics
            .encode()
            .contains(r#"quorate_history_write_failures_total{what="dns-finish"}"#),
        "{}",
        rig.metrics.encode()
    );
    assert!(!rig.history.flush().await, "still refused");
    block.execute_batch("DROP TRIGGER refuse_result").unwrap();
    assert!(rig.history.flush().await, "the backlog is written");
    assert_eq!(rig.change_status(id).await, (ChangeStatus::Applied, 1));
    let events = rig
        .store
        .call(|s| {
            s.list_events(&ListFilter {
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::DnsApplied && e.message == format!("change {id} applied")),
        "{events:?}"
    );
    rig.stop().await;
}

/// Retention runs at start and then every hour, not before: on the paused clock, an old round
/// recorded after the first run survives 59 minutes and is gone once the hour is up.
#[tokio::test(start_paused = true)]
async fn retention_runs_at_start_and_then_hourly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("h.sqlite")).unwrap();
    let old = |at_ms: u64| Decision {
        service: "www".into(),
        at_ms,
        round: Some(crate::store::NewRound {
            service: "www".into(),
            at_ms,
            trigger: crate::failover::Trigger::PrimaryDown,
            outcome: crate::failover::Outcome::Disputed,
            reason: "old".into(),
            primary_up: false,
            backup_up: true,
            votes_up: 1,
            votes_down: 1,
            votes_invalid: 0,
            votes_missing: 1,
            changed_dns: false,
            policy: None,
            spell: None,
        }),
        ..Default::default()
    };
    let rounds = |s: Store| async move {
        s.call(|s| {
            s.list_rounds(&crate::store::RoundFilter {
                limit: 10,
                ..Default::default()
            })
        })
        .await
        .unwrap()
        .len()
    };
    store.record_decision(old(1)).await.unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(retention_loop(
        store.clone(),
        Arc::new(Metrics::new()),
        Duration::from_secs(86_400),
        Arc::new(shared::keys::generate()),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while rounds(store.clone()).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the first run deletes old rounds"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    store.record_decision(old(2)).await.unwrap();
    tokio::time::sleep_until(started + RETENTION_EVERY - Duration::from_secs(60)).await;
    assert_eq!(rounds(store.clone()).await, 1, "no run before the hour");
    let deadline = started + RETENTION_EVERY + Duration::from_secs(60);
    while rounds(store.clone()).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the hourly run deletes old rounds"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
}
