//! Notifications: every state change and alert goes to the configured webhooks as generic
//! JSON (with a Slack-compatible `text` field). Sending happens on its own task behind a
//! bounded queue, with retries and backoff, so it never blocks the decision loop; when the
//! queue is full the newest notification is dropped and counted, never the loop stalled.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::supervise::Supervisor;

use crate::config::WebhookConfig;

/// One notification.
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub service: String,
    /// `transition`, `alert`, `dns-applied`, `dns-failed`, `override`.
    pub kind: String,
    pub message: String,
    pub at_ms: u64,
    /// Slack renders this field; generic receivers get the structured fields too.
    pub text: String,
}

impl Notice {
    pub fn new(service: &str, kind: &str, message: impl Into<String>, at_ms: u64) -> Notice {
        let message = message.into();
        Notice {
            text: format!("[quorate] {service}: {kind}: {message}"),
            service: service.into(),
            kind: kind.into(),
            message,
            at_ms,
        }
    }
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: Option<mpsc::Sender<Notice>>,
    pub dropped: Arc<AtomicU64>,
}

const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 5;

impl Notifier {
    /// A notifier that sends nowhere (no webhooks configured).
    pub fn disabled() -> Notifier {
        Notifier {
            tx: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts the sending task (supervised as `notifier`).
    pub fn start(hooks: Vec<WebhookConfig>, sup: &Supervisor) -> Notifier {
        let shutdown = sup.shutdown().clone();
        if hooks.is_empty() {
            return Notifier::disabled();
        }
        let (tx, mut rx) = mpsc::channel::<Notice>(QUEUE);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(shared::tls::webpki_client_config())
            .timeout(Duration::from_secs(10))
            .build()
            .ok();
        let Some(http) = http else {
            tracing::error!("cannot build the webhook HTTP client; notifications are not sent");
            return Notifier::disabled();
        };
        let send = async move {
            loop {
                let notice = tokio::select! {
                    n = rx.recv() => match n { Some(n) => n, None => return },
                    _ = shutdown.cancelled() => return,
                };
                for hook in &hooks {
                    send_with_retry(&http, hook, &notice, &shutdown).await;
                }
            }
        };
        sup.spawn("notifier", send, |_| {});
        Notifier {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues a notice; never waits.
    pub fn send(&self, n: Notice) {
        if let Some(tx) = &self.tx
            && tx.try_send(n).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("notification queue full; notification dropped");
        }
    }
}

async fn send_with_retry(
    http: &reqwest::Client,
    hook: &WebhookConfig,
    n: &Notice,
    shutdown: &CancellationToken,
) {
    let body = if hook.slack {
        serde_json::json!({ "text": n.text })
    } else {
        serde_json::to_value(n).unwrap_or_default()
    };
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match http.post(&hook.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => tracing::warn!(status = %r.status(), attempt, "webhook refused notification"),
            // The URL may hold a secret: log the error kind, not the URL.
            Err(e) => tracing::warn!(
                timeout = e.is_timeout(),
                connect = e.is_connect(),
                attempt,
                "webhook unreachable"
            ),
        }
        if attempt < ATTEMPTS {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {},
                _ = shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
    tracing::error!(service = %n.service, kind = %n.kind, "webhook notification given up after {ATTEMPTS} attempts");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A webhook receiver on loopback that fails its first request, then records bodies.
    async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let calls = Arc::new(AtomicU64::new(0));
        let s2 = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let (seen, calls) = (s2.clone(), calls.clone());
                async move {
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    seen.lock().unwrap().push(v);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, seen)
    }

    async fn wait_for(seen: &Mutex<Vec<serde_json::Value>>, n: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v = seen.lock().unwrap().clone();
            if v.len() >= n || tokio::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn generic_and_slack_webhooks_get_the_notice_after_a_retry() {
        shared::install_crypto_provider();
        let (json_url, json_seen) = receiver().await;
        let (slack_url, slack_seen) = receiver().await;
        let sd = CancellationToken::new();
        let n = Notifier::start(
            vec![
                WebhookConfig {
                    url: json_url,
                    slack: false,
                },
                WebhookConfig {
                    url: slack_url,
                    slack: true,
                },
            ],
            &crate::supervise::Supervisor::new(
                tokio_util::task::TaskTracker::new(),
                Arc::new(crate::metrics::Metrics::new()),
                sd.clone(),
            ),
        );
        n.send(Notice::new(
            "www",
            "transition",
            "primary-active -> backup-active",
            42,
        ));
        let got = wait_for(&json_seen, 1).await;
        assert_eq!(got.len(), 1, "the generic hook got nothing after its retry");
        assert_eq!(got[0]["service"], "www");
        assert_eq!(got[0]["kind"], "transition");
        assert_eq!(got[0]["at_ms"], 42);
        let got = wait_for(&slack_seen, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0],
            serde_json::json!({"text": "[quorate] www: transition: primary-active -> backup-active"})
        );
        sd.cancel();
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let n = Notifier::disabled();
        n.send(Notice::new("www", "alert", "x", 1));
        assert_eq!(n.dropped.load(Ordering::Relaxed), 0);
        let (tx, _rx) = mpsc::channel(1);
        let n = Notifier {
            tx: Some(tx),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        n.send(Notice::new("www", "alert", "1", 1));
        n.send(Notice::new("www", "alert", "2", 1));
        assert_eq!(n.dropped.load(Ordering::Relaxed), 1);
    }
}
