//! Prometheus metrics of the coordinator (prometheus-client): per-service state, rounds by
//! outcome, vote latency per witness, invalid votes by reason, DNS change latency and result.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoundLabel {
    pub service: String,
    pub outcome: String,
}

/// What started a confirmation round (mesh-speed detection).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfirmLabel {
    pub service: String,
    /// `coordinator` (our own probe saw the primary down), `witness` (a witness's vote),
    /// `overdue` (a probe not answered within its usual time), `streak` (the next round of a
    /// streak, one interval on), `missed` (a down seen while a round was in flight).
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WitnessLabel {
    pub witness: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InvalidLabel {
    pub witness: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServedLabel {
    pub server: String,
    /// `served` or `lagging`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabel {
    pub backend: String,
    pub result: String,
}

/// Which history write failed (`decision`, `event`, `dns-attempt`, `dns-finish`,
/// `dns-verified`, `retention`, or `dropped` when a backlog overflowed).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabel {
    pub what: String,
}

/// A long-lived task that ended: `task` names it (`service:www`, `dns-worker:www`, `api`,
/// ...), `how` is `returned` (before shutdown), `panicked` or `stopped` (at shutdown).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    pub task: String,
    pub how: String,
}

/// A readiness reason code of a service (`docs/readiness.md` lists them).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub service: String,
    pub reason: String,
}

/// A notification channel (`[[notify.*]] name`), or `queue` for the notifier's shared queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// A notification channel and what became of a delivery (`sent` or `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    pub channel: String,
    pub result: String,
}

pub type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

pub struct Metrics {
    registry: Mutex<Registry>,
    /// 1 when the service is ready (a failover now would work as configured).
    pub ready: Family<ServiceLabel, Gauge>,
    /// How many reasons of each code keep the service from being ready (0 once cleared).
    pub readiness_reasons: Family<ReasonLabel, Gauge>,
    pub witness_answer_ratio: Family<WitnessLabel, FloatGauge>,
    pub witness_latency_p50: Family<WitnessLabel, FloatGauge>,
    pub witness_latency_p99: Family<WitnessLabel, FloatGauge>,
    pub witness_disagreement_ratio: Family<WitnessLabel, FloatGauge>,
    /// 0 = primary active, 1 = backup active.
    pub backup_active: Family<ServiceLabel, Gauge>,
    pub primary_up: Family<ServiceLabel, Gauge>,
    pub backup_up: Family<ServiceLabel, Gauge>,
    pub rounds: Family<RoundLabel, Counter>,
    pub ticks: Family<ServiceLabel, Counter>,
    pub late_ticks: Family<ServiceLabel, Counter>,
    pub confirmation_rounds: Family<ConfirmLabel, Counter>,
    /// Overdue probes that started no confirmation round: the coordinator-wide budget
    /// (`failover::mesh::OverdueBudget`) was spent.
    pub overdue_refused: Family<ServiceLabel, Counter>,
    pub vote_latency: Family<WitnessLabel, Histogram>,
    pub votes_missing: Family<WitnessLabel, Counter>,
    pub invalid_votes: Family<InvalidLabel, Counter>,
    pub dns_changes: Family<DnsLabel, Counter>,
    pub dns_change_seconds: Family<DnsLabel, Histogram>,
    pub dns_verify: Family<ServedLabel, Counter>,
    pub dns_verify_seconds: Family<ServedLabel, Histogram>,
    pub history_write_failures: Family<WriteLabel, Counter>,
    pub task_exits: Family<TaskLabel, Counter>,
    /// Notices dropped because a queue was full (`channel="queue"`: the shared one).
    pub notices_dropped: Family<ChannelLabel, Counter>,
    /// Notices a channel delivered, or gave up on after its retries.
    pub notices: Family<DeliveryLabel, Counter>,
    /// Notices a channel's quiet window held back (counted into a later summary).
    pub notices_coalesced: Family<ChannelLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let latency = || Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("quorate")),
            ready: Family::default(),
            readiness_reasons: Family::default(),
            witness_answer_ratio: Family::default(),
            witness_latency_p50: Family::default(),
            witness_latency_p99: Family::default(),
            witness_disagreement_ratio: Family::default(),
            backup_active: Family::default(),
            primary_up: Family::default(),
            backup_up: Family::default(),
            rounds: Family::default(),
            ticks: Family::default(),
            late_ticks: Family::default(),
            confirmation_rounds: Family::default(),
            overdue_refused: Family::default(),
            vote_latency: Family::new_with_constructor(latency),
            votes_missing: Family::default(),
            invalid_votes: Family::default(),
            dns_changes: Family::default(),
            dns_verify: Family::default(),
            history_write_failures: Family::default(),
            task_exits: Family::default(),
            notices_dropped: Family::default(),
            notices: Family::default(),
            notices_coalesced: Family::default(),
            dns_verify_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            dns_change_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register(
                "service_backup_active",
                "1 when the backup's records are active",
                m.backup_active.clone(),
            );
            r.register(
                "service_primary_up",
                "1 when the coordinator's own probe saw the primary up",
                m.primary_up.clone(),
            );
            r.register(
                "service_backup_up",
                "1 when the coordinator's own probe saw the backup up",
                m.backup_up.clone(),
            );
            r.register("rounds", "decision rounds by outcome", m.rounds.clone());
            r.register(
                "ready",
                "1 when a failover of the service would work now (docs/readiness.md)",
                m.ready.clone(),
            );
            r.register(
                "readiness_reasons",
                "reasons the service is not ready, by code (0 once cleared)",
                m.readiness_reasons.clone(),
            );
            r.register(
                "witness_answer_ratio",
                "share of vote requests answered with a valid vote, sliding window",
                m.witness_answer_ratio.clone(),
            );
            r.register(
                "witness_latency_p50_seconds",
                "median latency of valid answers, sliding window",
                m.witness_latency_p50.clone(),
            );
            r.register(
                "witness_latency_p99_seconds",
                "99th percentile latency of valid answers, sliding window",
                m.witness_latency_p99.clone(),
            );
            r.register(
                "witness_disagreement_ratio",
                "share of valid votes that disagreed with the round's majority, sliding window",
                m.witness_disagreement_ratio.clone(),
            );
            r.register(
                "history_write_failures",
                "history writes that failed (each is logged; decisions are retried next tick, DNS results re-written later)",
                m.history_write_failures.clone(),
            );
            r.register(
                "task_exits",
                "long-lived tasks that ended, by how (returned, panicked, stopped)",
                m.task_exits.clone(),
            );
            r.register(
                "notices_dropped",
                "notices dropped because a queue was full, by channel (queue: the notifier's shared queue)",
                m.notices_dropped.clone(),
            );
            r.register(
                "notices",
                "notices delivered (sent) or given up after retries (failed), by channel",
                m.notices.clone(),
            );
            r.register(
                "notices_coalesced",
                "notices a channel's quiet window held back and counted into a summary",
                m.notices_coalesced.clone(),
            );
            r.register("ticks", "probe intervals run", m.ticks.clone());
            r.register(
                "late_ticks",
                "probe intervals whose first slot started more than one slot (interval / (witnesses + 1)) late",
                m.late_ticks.clone(),
            );
            r.register(
                "confirmation_rounds",
                "confirmation rounds started (every witness asked at once), by cause",
                m.confirmation_rounds.clone(),
            );
            r.register(
                "overdue_refused",
                "overdue probes that started no confirmation round because the coordinator-wide budget for them was spent (a busy coordinator, or many services' primaries silent at once)",
                m.overdue_refused.clone(),
            );
            r.register(
                "vote_latency_seconds",
                "round-trip time of vote requests by witness",
                m.vote_latency.clone(),
            );
            r.register(
                "votes_missing",
                "vote requests without an answer, by witness",
                m.votes_missing.clone(),
            );
            r.register(
                "invalid_votes",
                "answers that failed verification, by witness and reason",
                m.invalid_votes.clone(),
            );
            r.register(
                "dns_changes",
                "DNS changes by backend and result",
                m.dns_changes.clone(),
            );
            r.register(
                "dns_change_seconds",
                "time from decision to a DNS change applied",
                m.dns_change_seconds.clone(),
            );
            r.register(
                "dns_verify",
                "per authoritative server: did it serve a change before the verification deadline",
                m.dns_verify.clone(),
            );
            r.register(
                "dns_verify_seconds",
                "per authoritative server: time until it served a change",
                m.dns_verify_seconds.clone(),
            );
        }
        m
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}
