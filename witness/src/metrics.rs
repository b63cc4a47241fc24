//! The witness's Prometheus metrics: requests by outcome, probe latency, requests in flight.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Registry,
    /// Vote requests by outcome: `up`, `down`, or the refusal code.
    requests: Family<Labels, Counter>,
    /// How long probes took, in seconds, by probe kind.
    probe_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    /// Vote requests being handled right now.
    pub in_flight: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("quorate_witness");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "vote_requests",
            "Vote requests by outcome (up, down or the refusal code)",
            requests.clone(),
        );
        let probe_seconds: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(probe_histogram);
        registry.register(
            "probe_duration_seconds",
            "Time from probe start to verdict, by probe kind",
            probe_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "vote_requests_in_flight",
            "Vote requests being handled right now",
            in_flight.clone(),
        );
        Metrics {
            registry,
            requests,
            probe_seconds,
            in_flight,
        }
    }

    pub fn outcome(&self, outcome: &'static str) {
        self.requests.get_or_create(&[("outcome", outcome)]).inc();
    }

    pub fn probe(&self, kind: &str, latency_us: u64) {
        let kind: &'static str = match kind {
            "http" => "http",
            "https" => "https",
            "tcp" => "tcp",
            "dns" => "dns",
            _ => "other",
        };
        self.probe_seconds
            .get_or_create(&[("probe", kind)])
            .observe(latency_us as f64 / 1e6);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn probe_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}
