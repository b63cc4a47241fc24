//! Notifications: every transition, alert, resolution, operator action, hook failure and
//! stuck DNS change goes to the configured channels — email, ntfy, Slack-compatible chat and
//! the signed generic webhook (`docs/notifications.md`).
//!
//! Never blocking the decision loop: [`Notifier::send`] only `try_send`s into a bounded queue.
//! A dispatcher task fans each notice out to the channels that want its event, each into its
//! own bounded queue; each channel has its own task (quiet window, retries with backoff), so
//! a receiver that is down delays nothing but itself. A full queue drops the notice, counts it
//! (`quorate_notices_dropped_total{channel}`), and the channels are told with a
//! `notices-dropped` notice as soon as there is room again.
//!
//! - `event`: the vocabulary ([`Event`]) and the notice ([`Notice`]);
//! - `render`: the text, the webhook payload, ntfy's headers, the email body (pure);
//! - `quiet`: the quiet window (pure);
//! - `email`: SMTP and the incident threads;
//! - `channel`: the configured channels and their delivery ([`Sender`]).

pub mod channel;
pub mod email;
pub mod event;
pub mod quiet;
pub mod render;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use self::channel::{ChannelConfig, EmailConfig, NotifyConfig, Secret, Sender, Target};
pub use self::email::SmtpTls;
pub use self::event::{Event, Notice, Severity};
pub use self::render::Context;
use crate::metrics::{ChannelLabel, DeliveryLabel, Metrics};
use crate::supervise::Supervisor;

/// Notices waiting for the dispatcher: a burst of every service's alerts at once (1,000
/// services) fits; past it the notice is dropped and counted, never waited for.
const QUEUE: usize = 1024;
/// Notices waiting for one channel while it delivers or retries: a receiver down for the
/// whole retry schedule (~8 s) holds back at most this many before drops are counted.
const CHANNEL_QUEUE: usize = 256;
/// Tries per notice and channel: 0.5 s, 1 s, 2 s, 4 s apart (~8 s), then given up and
/// counted as failed; the receiver's next notice is tried afresh.
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// This host's name, for the notices' `coordinator` field and email ids.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "quorate".into())
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notice>>,
    /// Notices dropped at the shared queue.
    pub dropped: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
}

impl Notifier {
    /// A notifier that sends nowhere (no channel configured).
    pub fn disabled() -> Notifier {
        Notifier {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
            metrics: None,
        }
    }

    /// Builds every channel and starts the dispatcher and one task per channel (supervised as
    /// `notifier` and `notify:<name>`). A channel that cannot be built is logged and left out.
    pub fn start(cfg: &NotifyConfig, metrics: Arc<Metrics>, sup: &Supervisor) -> Notifier {
        if cfg.channels.is_empty() {
            return Notifier::disabled();
        }
        let ctx = Context {
            dashboard_url: cfg.dashboard_url.clone(),
            coordinator: host_name(),
        };
        let mut outs = Vec::new();
        for c in &cfg.channels {
            let name = c.name.clone();
            let sender = match Sender::new(c.clone(), ctx.clone()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(channel = %name, error = %e, "notification channel not started");
                    continue;
                }
            };
            let (tx, rx) = mpsc::channel(CHANNEL_QUEUE);
            let dropped = Arc::new(AtomicU64::new(0));
            let task = ChannelTask {
                quiet: quiet::Quiet::new(c.quiet.as_millis() as u64),
                sender,
                dropped: dropped.clone(),
                metrics: metrics.clone(),
                shutdown: sup.shutdown().clone(),
            };
            sup.spawn(format!("notify:{name}"), task.run(rx), |_| {});
            outs.push(Out {
                config: c.clone(),
                tx,
                dropped,
            });
        }
        let (tx, rx) = mpsc::channel::<Notice>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        sup.spawn(
            "notifier",
            dispatch(rx, outs, dropped.clone(), sup.shutdown().clone()),
            |_| {},
        );
        Notifier {
            tx: Some(tx),
            dropped,
            metrics: Some(metrics),
        }
    }

    /// Queues a notice; never waits.
    pub fn send(&self, n: Notice) {
        if let Some(tx) = &self.tx
            && tx.try_send(n).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.notices_dropped
                    .get_or_create(&ChannelLabel {
                        channel: "queue".into(),
                    })
                    .inc();
            }
            tracing::warn!("notification queue full; notification dropped");
        }
    }
}

/// One channel as the dispatcher sees it.
struct Out {
    config: ChannelConfig,
    tx: mpsc::Sender<Notice>,
    dropped: Arc<AtomicU64>,
}

fn dropped_notice(n: u64, queue: &str) -> Notice {
    Notice::new(
        "coordinator",
        Event::NoticesDropped,
        format!(
            "{n} notices were dropped because {queue} was full; see the coordinator's log and history"
        ),
        shared::unix_ms(std::time::SystemTime::now()),
    )
}

async fn dispatch(
    mut rx: mpsc::Receiver<Notice>,
    outs: Vec<Out>,
    dropped: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut reported = 0;
    loop {
        let n = tokio::select! {
            n = rx.recv() => match n { Some(n) => n, None => return },
            _ = shutdown.cancelled() => return,
        };
        let now = dropped.load(Ordering::Relaxed);
        let lost = (now > reported).then(|| dropped_notice(now - reported, "the notifier's queue"));
        reported = now;
        for out in &outs {
            for n in lost.iter().chain(std::iter::once(&n)) {
                if out.config.wants(n.event) && out.tx.try_send(n.clone()).is_err() {
                    out.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

struct ChannelTask {
    sender: Sender,
    quiet: quiet::Quiet,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl ChannelTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Notice>) {
        let origin = tokio::time::Instant::now();
        let mono = || origin.elapsed().as_millis() as u64;
        let mut reported = 0;
        loop {
            let next = self
                .quiet
                .next_due()
                .map(|ms| origin + Duration::from_millis(ms));
            let mut out = Vec::new();
            tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => {
                        let event = n.event;
                        match self.quiet.offer(n, mono()) {
                            Some(n) => out.push(n),
                            None => {
                                tracing::debug!(channel = %self.sender.name(), event = event.as_str(), "held back by the quiet window");
                                self.metrics.notices_coalesced.get_or_create(&self.label()).inc();
                            }
                        }
                    }
                    None => return,
                },
                _ = sleep_until(next), if next.is_some() => out = self.quiet.due(mono()),
                _ = self.shutdown.cancelled() => return,
            }
            let now = self.dropped.load(Ordering::Relaxed);
            if now > reported {
                self.metrics
                    .notices_dropped
                    .get_or_create(&self.label())
                    .inc_by(now - reported);
                let queue = format!("the queue of channel {:?}", self.sender.name());
                if let Some(n) = self
                    .quiet
                    .offer(dropped_notice(now - reported, &queue), mono())
                {
                    out.push(n);
                }
                reported = now;
            }
            for n in out {
                self.deliver(&n).await;
            }
        }
    }

    fn label(&self) -> ChannelLabel {
        ChannelLabel {
            channel: self.sender.name().to_string(),
        }
    }

    /// Tries [`ATTEMPTS`] times with backoff; stops early at shutdown.
    async fn deliver(&self, n: &Notice) {
        let name = self.sender.name();
        let mut delay = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            match self.sender.deliver(n).await {
                Ok(answer) => {
                    tracing::debug!(channel = %name, event = n.event.as_str(), %answer, "notice delivered");
                    self.count("sent");
                    return;
                }
                Err(e) => {
                    tracing::warn!(channel = %name, event = n.event.as_str(), attempt, error = %e, "notice not delivered")
                }
            }
            if attempt < ATTEMPTS {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {},
                    _ = self.shutdown.cancelled() => return,
                }
                delay *= 2;
            }
        }
        self.count("failed");
        tracing::error!(channel = %name, service = %n.service, event = n.event.as_str(), "notice given up after {ATTEMPTS} attempts");
    }

    fn count(&self, result: &str) {
        self.metrics
            .notices
            .get_or_create(&DeliveryLabel {
                channel: self.sender.name().to_string(),
                result: result.into(),
            })
            .inc();
    }
}

/// `quorate-coordinator notify test`: sends one `test` notice through each channel (or the
/// one named), directly, one after the other, each tried once; one line per channel with what
/// its receiver answered. `false` when any failed or no channel matched.
pub async fn test_channels(cfg: &NotifyConfig, only: Option<&str>) -> (String, bool) {
    let ctx = Context {
        dashboard_url: cfg.dashboard_url.clone(),
        coordinator: host_name(),
    };
    let chosen: Vec<&ChannelConfig> = cfg
        .channels
        .iter()
        .filter(|c| only.is_none_or(|n| c.name == n))
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = cfg.channels.iter().map(|c| c.name.as_str()).collect();
        let text = match only {
            Some(n) => format!(
                "no channel named {n:?}; the config has: {}\n",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
            None => "no notification channel is configured ([[notify.webhook]], [[notify.ntfy]], [[notify.email]])\n".to_string(),
        };
        return (text, false);
    }
    let mut out = String::new();
    let mut ok = true;
    for c in chosen {
        let notice = Notice::new(
            "coordinator",
            Event::Test,
            format!(
                "test notice from quorate-coordinator notify test to channel {:?}",
                c.name
            ),
            shared::unix_ms(std::time::SystemTime::now()),
        );
        let result = match Sender::new(c.clone(), ctx.clone()) {
            Ok(s) => s.deliver(&notice).await,
            Err(e) => Err(e),
        };
        let line = match result {
            Ok(answer) => format!("OK    {} ({}): {answer}", c.name, c.target.kind()),
            Err(e) => {
                ok = false;
                format!("FAIL  {} ({}): {e}", c.name, c.target.kind())
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    (out, ok)
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let n = Notifier::disabled();
        n.send(Notice::new("www", Event::BothDown, "x", 1));
        assert_eq!(n.dropped.load(Ordering::Relaxed), 0);
        let (tx, _rx) = mpsc::channel(1);
        let metrics = Arc::new(Metrics::new());
        let n = Notifier {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
            metrics: Some(metrics.clone()),
        };
        n.send(Notice::new("www", Event::BothDown, "1", 1));
        n.send(Notice::new("www", Event::BothDown, "2", 1));
        assert_eq!(n.dropped.load(Ordering::Relaxed), 1);
        assert!(
            metrics
                .encode()
                .contains("quorate_notices_dropped_total{channel=\"queue\"} 1"),
            "{}",
            metrics.encode()
        );
    }
}
