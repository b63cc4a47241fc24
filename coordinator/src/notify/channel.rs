//! The channels as configured (validated by `config::notify`) and their delivery: the generic
//! webhook (versioned JSON, HMAC-SHA256 signed), Slack-compatible chat, ntfy and email. One
//! [`Sender`] per channel, built once; `deliver` sends one notice and says what the receiver
//! answered (an HTTP status and the start of the body, or the SMTP server's reply). Used by the
//! daemon's channel tasks and, directly, by `quorate-coordinator notify test`.
//!
//! Secrets (signing keys, tokens, passwords, URLs that carry a token) are never in a `Debug`,
//! a log line or an error message.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use super::email::{Mailer, SmtpTls};
use super::event::{Event, Notice};
use super::render::{self, Context};
use crate::dns::http::{Trust, client, read_body};

/// A secret read from the config: compared, never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `[notify]` validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyConfig {
    /// `{service}` is replaced by the service's name; linked from every notice.
    pub dashboard_url: Option<String>,
    /// A DNS change still pending this long is a `dns-pending` notice.
    pub dns_pending_after: Duration,
    pub channels: Vec<ChannelConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            dashboard_url: None,
            dns_pending_after: Duration::from_secs(120),
            channels: Vec::new(),
        }
    }
}

/// One channel.
#[derive(Clone, PartialEq)]
pub struct ChannelConfig {
    /// `name`, or `<table>[i]` (`webhook[0]`): in logs, metrics and `notify test --channel`.
    pub name: String,
    /// `None`: every event.
    pub events: Option<BTreeSet<Event>>,
    /// The quiet window; zero: none.
    pub quiet: Duration,
    pub target: Target,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.target.kind())
            .field("events", &self.events)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

impl ChannelConfig {
    pub fn wants(&self, e: Event) -> bool {
        // The test notice goes wherever it is sent; a channel cannot opt out of it.
        e == Event::Test || self.events.as_ref().is_none_or(|set| set.contains(&e))
    }
}

/// Where and how a channel delivers. URLs are secrets too: Slack's and ntfy's carry tokens.
#[derive(Clone, PartialEq)]
pub enum Target {
    /// `format = "json"`: the versioned payload, signed when `secret` is set.
    Webhook {
        url: Secret,
        secret: Option<Secret>,
    },
    /// `format = "slack"`: `{"text": ...}`.
    Slack {
        url: Secret,
    },
    Ntfy {
        /// The topic's URL: `https://ntfy.example.com/quorate`.
        url: Secret,
        token: Option<Secret>,
    },
    Email(Box<EmailConfig>),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { .. } => "webhook",
            Target::Slack { .. } => "slack",
            Target::Ntfy { .. } => "ntfy",
            Target::Email(_) => "email",
        }
    }
}

/// `[[notify.email]]` validated.
#[derive(Clone, Debug, PartialEq)]
pub struct EmailConfig {
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Extra CA certificates (PEM) trusted besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
    pub from: String,
    pub to: Vec<String>,
}

/// Time for one delivery (connect, TLS, request, answer) before it counts as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of a receiver's answer kept, to show (`notify test`) or log: enough for an error
/// message, and a hostile receiver cannot make us hold more.
const ANSWER_KEEP: usize = 512;

/// The webhook signature's headers (`docs/notifications.md`: how to verify).
pub const SIGNATURE_HEADER: &str = "X-Quorate-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Quorate-Timestamp";

/// `sha256=<hex>`: HMAC-SHA256 with `secret` over `timestamp` (decimal Unix seconds), `.`, and
/// the body exactly as sent.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex::encode(ctx.sign().as_ref()))
}

/// A channel ready to deliver.
pub struct Sender {
    pub config: ChannelConfig,
    ctx: Context,
    how: How,
}

enum How {
    Http(reqwest::Client),
    Email(Mutex<Mailer>),
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Builds the channel's client. Errors say what is wrong without the secrets.
    pub fn new(config: ChannelConfig, ctx: Context) -> Result<Sender, String> {
        let how = match &config.target {
            Target::Email(e) => How::Email(Mutex::new(Mailer::new(e)?)),
            _ => How::Http(
                client(DELIVERY_TIMEOUT, &Trust::System)
                    .map_err(|e| format!("cannot set up the HTTP client: {}", e.message))?,
            ),
        };
        Ok(Sender { config, ctx, how })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Sends `n` once: `Ok(what the receiver answered)`, or why it failed.
    pub async fn deliver(&self, n: &Notice) -> Result<String, String> {
        match (&self.how, &self.config.target) {
            (How::Email(m), _) => {
                let (mailer, message) = {
                    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                    (m.transport(), m.compose(n, &self.ctx)?)
                };
                let answer = Mailer::send(&mailer, message.message).await;
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.sent(n, message.id, answer.is_ok());
                answer
            }
            (How::Http(http), Target::Webhook { url, secret }) => {
                let body = serde_json::to_vec(&render::payload(n, &self.ctx))
                    .map_err(|e| format!("cannot encode the payload: {e}"))?;
                let mut req = http
                    .post(url.expose())
                    .header("Content-Type", "application/json");
                if let Some(secret) = secret {
                    let ts = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs();
                    req = req.header(TIMESTAMP_HEADER, ts.to_string()).header(
                        SIGNATURE_HEADER,
                        signature(secret.expose().as_bytes(), ts, &body),
                    );
                }
                answer(req.body(body).send().await).await
            }
            (How::Http(http), Target::Slack { url }) => {
                answer(
                    http.post(url.expose())
                        .json(&render::slack(n, &self.ctx))
                        .send()
                        .await,
                )
                .await
            }
            (How::Http(http), Target::Ntfy { url, token }) => {
                let mut req = http.post(url.expose());
                for (k, v) in render::ntfy_headers(n, &self.ctx) {
                    req = req.header(k, header_safe(&v));
                }
                if let Some(t) = token {
                    req = req.bearer_auth(t.expose());
                }
                answer(req.body(render::text(n, &self.ctx)).send().await).await
            }
            (How::Http(_), Target::Email(_)) => Err("email channel without a mailer".into()),
        }
    }
}

/// HTTP header values must be visible ASCII: anything else becomes `?` (ntfy's titles are ours,
/// but a service name is the operator's).
fn header_safe(v: &str) -> String {
    v.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// A 2xx is delivered; anything else is an error quoting the status and the start of the body.
/// The URL is never in the message (it may carry a token).
async fn answer(r: Result<reqwest::Response, reqwest::Error>) -> Result<String, String> {
    let resp = r.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        // reqwest's error text names the URL: keep only the kind, and its source's text.
        let source = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        format!("{what}{}", strip_urls(&source))
    })?;
    let status = resp.status();
    let body = read_body(resp, ANSWER_KEEP)
        .await
        .map(|b| b.text.trim().replace('\n', " "))
        .unwrap_or_default();
    let said = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    if status.is_success() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// Removes anything that looks like a URL from an error text.
fn strip_urls(s: &str) -> String {
    s.split(' ')
        .map(|w| if w.contains("://") { "<url>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The framing: one MAC over `timestamp.body`, as a receiver computes it in one call.
        let sig = signature(b"Jefe", 1_700_000_000, b"{\"version\":1}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let want = ring::hmac::sign(&key, b"1700000000.{\"version\":1}");
        assert_eq!(sig, format!("sha256={}", hex::encode(want.as_ref())));
        // RFC 4231 case 2, to pin the primitive itself.
        let rfc = ring::hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(rfc.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = ChannelConfig {
            name: "hook".into(),
            events: None,
            quiet: Duration::ZERO,
            target: Target::Webhook {
                url: Secret::new("https://x.example/T0KEN".into()),
                secret: Some(Secret::new("s3cret".into())),
            },
        };
        let d = format!("{c:?}");
        assert!(!d.contains("T0KEN") && !d.contains("s3cret"), "{d}");
        assert_eq!(
            strip_urls("error sending request for url (http://x/T0KEN)"),
            "error sending request for url <url>"
        );
    }
}
