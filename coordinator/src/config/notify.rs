//! The `[notify]` table and its channels: `[[notify.webhook]]` (the signed JSON payload, or
//! Slack-compatible text), `[[notify.ntfy]]`, `[[notify.email]]`. Every channel takes
//! `name`, `events = [...]` (default: every event) and `quiet = "10m"` (default: none).
//! Secrets — a webhook's signing key, ntfy's token, the SMTP password — come from a file
//! (mode 0600), an environment variable or a systemd credential (`<prefix>_file`,
//! `<prefix>_env`, `<prefix>_credential`); a URL that carries a token can live in a `url_file`.
//! `docs/notifications.md` describes every key.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared::config::{Diagnostics, resolve};

use crate::dns::secret::{NTFY_TOKEN, SMTP_PASSWORD, SecretKeys, SecretSource, WEBHOOK_SECRET};
use crate::notify::{ChannelConfig, EmailConfig, Event, NotifyConfig, Secret, SmtpTls, Target};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// Linked from every notice; `{service}` is replaced by the service's name.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// A DNS change still pending this long is a `dns-pending` notice ("2m").
    #[serde(default)]
    pub dns_pending_after: Option<String>,
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
    #[serde(default)]
    pub ntfy: Vec<RawNtfy>,
    #[serde(default)]
    pub email: Vec<RawEmail>,
}

/// What every channel takes (`name`, `events`, `quiet`), borrowed from its table.
struct Common<'a> {
    name: &'a Option<String>,
    events: &'a Option<Vec<String>>,
    quiet: &'a Option<String>,
}

macro_rules! common {
    ($raw:expr) => {
        Common {
            name: &$raw.name,
            events: &$raw.events,
            quiet: &$raw.quiet,
        }
    };
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// The URL, or `url_file` when the URL carries a secret (Slack hooks do).
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// The HMAC-SHA256 signing key (`json` only).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(default)]
    pub secret_credential: Option<String>,
    /// For logs, metrics and `notify test --channel` (default `webhook[0]`, `ntfy[1]`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// The events this channel gets; default every one.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Repeats of an event for a service within this window are held back and counted.
    #[serde(default)]
    pub quiet: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNtfy {
    /// The topic's URL: `https://ntfy.example.com/quorate`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// An access token (sent as `Authorization: Bearer`).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub token_credential: Option<String>,
    /// For logs, metrics and `notify test --channel` (default `webhook[0]`, `ntfy[1]`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// The events this channel gets; default every one.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Repeats of an event for a service within this window are held back and counted.
    #[serde(default)]
    pub quiet: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// The SMTP server's name (checked against its certificate) or address.
    pub server: String,
    /// Default by `tls`: 587, 465, 25.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS), or `none` (a relay on a loopback address).
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_credential: Option<String>,
    /// Extra CA certificates (PEM) to trust besides the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    /// For logs, metrics and `notify test --channel` (default `webhook[0]`, `ntfy[1]`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// The events this channel gets; default every one.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Repeats of an event for a service within this window are held back and counted.
    #[serde(default)]
    pub quiet: Option<String>,
}

/// The body a webhook gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

pub(super) fn validate(raw: &RawNotify, base: &Path, e: &mut Diagnostics) -> NotifyConfig {
    let mut cfg = NotifyConfig::default();
    if let Some(u) = &raw.dashboard_url {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            e.expected("notify.dashboard_url", "an http(s):// URL", u);
        }
        cfg.dashboard_url = Some(u.clone());
    }
    if let Some(t) = &raw.dns_pending_after
        && let Some(d) = e.duration("notify.dns_pending_after", t)
    {
        cfg.dns_pending_after = d;
    }
    for (i, w) in raw.webhook.iter().enumerate() {
        let key = format!("notify.webhook[{i}]");
        let url = url(&w.url, &w.url_file, base, &key, e);
        let secret = secret(
            WEBHOOK_SECRET,
            &w.secret_file,
            &w.secret_env,
            &w.secret_credential,
            base,
            &key,
            e,
        );
        if secret.is_some() && w.format == WebhookFormat::Slack {
            e.push(
                format!("{key}.secret_file"),
                "a Slack-compatible hook is not signed; the secret is for format = \"json\"",
            );
        }
        let target = url.map(|url| match w.format {
            WebhookFormat::Json => Target::Webhook { url, secret },
            WebhookFormat::Slack => Target::Slack { url },
        });
        push(&mut cfg, common!(w), target, "webhook", i, e);
    }
    for (i, n) in raw.ntfy.iter().enumerate() {
        let key = format!("notify.ntfy[{i}]");
        let url = url(&n.url, &n.url_file, base, &key, e);
        let token = secret(
            NTFY_TOKEN,
            &n.token_file,
            &n.token_env,
            &n.token_credential,
            base,
            &key,
            e,
        );
        let target = url.map(|url| Target::Ntfy { url, token });
        push(&mut cfg, common!(n), target, "ntfy", i, e);
    }
    for (i, m) in raw.email.iter().enumerate() {
        let key = format!("notify.email[{i}]");
        let target = email(m, base, &key, e).map(|c| Target::Email(Box::new(c)));
        push(&mut cfg, common!(m), target, "email", i, e);
    }
    let mut names = BTreeSet::new();
    for c in &cfg.channels {
        if !names.insert(c.name.clone()) {
            e.push(
                "notify",
                format!("two channels are named {:?}; names must differ", c.name),
            );
        }
    }
    cfg
}

/// Validates what every channel takes and adds the channel.
fn push(
    cfg: &mut NotifyConfig,
    c: Common<'_>,
    target: Option<Target>,
    table: &str,
    i: usize,
    e: &mut Diagnostics,
) {
    let key = format!("notify.{table}[{i}]");
    let name = c.name.clone().unwrap_or_else(|| format!("{table}[{i}]"));
    if name.is_empty() || name.len() > 64 || name.chars().any(|ch| ch.is_control()) {
        e.push(
            format!("{key}.name"),
            "expected 1..=64 printable characters",
        );
    }
    let events = c.events.as_ref().map(|list| {
        let mut set = BTreeSet::new();
        for (j, s) in list.iter().enumerate() {
            match Event::parse(s) {
                Some(ev) => {
                    set.insert(ev);
                }
                None => e.push(
                    format!("{key}.events[{j}]"),
                    format!("unknown event {s:?}; expected one of: {}", Event::list()),
                ),
            }
        }
        if list.is_empty() {
            e.push(
                format!("{key}.events"),
                format!(
                    "an empty list sends nothing; leave it out for every event, or list some of: {}",
                    Event::list()
                ),
            );
        }
        set
    });
    let quiet = match &c.quiet {
        Some(t) => e
            .duration(format!("{key}.quiet"), t)
            .unwrap_or(Duration::ZERO),
        None => Duration::ZERO,
    };
    if let Some(target) = target {
        cfg.channels.push(ChannelConfig {
            name,
            events,
            quiet,
            target,
        });
    }
}

fn url(
    url: &Option<String>,
    file: &Option<PathBuf>,
    base: &Path,
    key: &str,
    e: &mut Diagnostics,
) -> Option<Secret> {
    let url = match (url, file) {
        (Some(u), None) => Some(u.clone()),
        (None, Some(f)) => shared::keys::read_secret_file(&resolve(base, f))
            .map_err(|err| e.push(format!("{key}.url_file"), err))
            .ok(),
        _ => {
            e.push(key, "set exactly one of url or url_file");
            None
        }
    }?;
    let url = url.trim().to_string();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        // Never quote it: it may carry a token.
        e.push(format!("{key}.url"), "expected an http(s):// URL");
        return None;
    }
    Some(Secret::new(url))
}

/// A secret from its `_file` / `_env` / `_credential` keys, read now.
fn secret(
    keys: SecretKeys,
    file: &Option<PathBuf>,
    env: &Option<String>,
    credential: &Option<String>,
    base: &Path,
    key: &str,
    e: &mut Diagnostics,
) -> Option<Secret> {
    let file = file.as_ref().map(|f| resolve(base, f));
    let read = SecretSource::choose(keys, file.as_ref(), env.as_ref(), credential.as_ref())
        .and_then(|source| {
            source
                .map(|s| s.read_as(keys, &|n| std::env::var(n).ok()))
                .transpose()
        });
    match read {
        Ok(v) => v.map(Secret::new),
        Err(err) => {
            e.push(format!("{key}.{}", err.key), err.message);
            None
        }
    }
}

fn email(m: &RawEmail, base: &Path, key: &str, e: &mut Diagnostics) -> Option<EmailConfig> {
    let before = e.len();
    let tls = match m.tls.as_deref() {
        None => SmtpTls::StartTls,
        Some(t) => SmtpTls::parse(t).unwrap_or_else(|| {
            e.expected(format!("{key}.tls"), "\"starttls\", \"tls\" or \"none\"", t);
            SmtpTls::StartTls
        }),
    };
    if m.server.trim().is_empty() {
        e.push(format!("{key}.server"), "expected the SMTP server's name");
    }
    if tls == SmtpTls::None {
        let loopback =
            m.server == "localhost" || m.server.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            e.push(
                format!("{key}.tls"),
                "\"none\" sends mail and password in the clear: only to a relay on this machine (localhost, 127.0.0.1, ::1); use \"starttls\" or \"tls\"",
            );
        }
    }
    let password = secret(
        SMTP_PASSWORD,
        &m.password_file,
        &m.password_env,
        &m.password_credential,
        base,
        key,
        e,
    );
    if password.is_some() != m.username.is_some() {
        e.push(
            format!("{key}.username"),
            "give both username and a password (password_file, password_env or password_credential), or neither",
        );
    }
    let ca_pem = m.ca_file.as_ref().and_then(|f| {
        let path = resolve(base, f);
        match shared::tls::read_cert_bundle(&path) {
            Ok(certs) if !certs.is_empty() => std::fs::read(&path).ok(),
            Ok(_) => {
                e.push(
                    format!("{key}.ca_file"),
                    format!("{}: no certificate in the file", path.display()),
                );
                None
            }
            Err(err) => {
                e.push(format!("{key}.ca_file"), err);
                None
            }
        }
    });
    if m.from.parse::<lettre::message::Mailbox>().is_err() {
        e.expected(
            format!("{key}.from"),
            "an address like \"Quorate <quorate@example.com>\"",
            &m.from,
        );
    }
    if m.to.is_empty() {
        e.push(format!("{key}.to"), "list at least one address");
    }
    for (j, t) in m.to.iter().enumerate() {
        if t.parse::<lettre::message::Mailbox>().is_err() {
            e.expected(
                format!("{key}.to[{j}]"),
                "an address like \"oncall@example.com\"",
                t,
            );
        }
    }
    if e.len() != before {
        return None;
    }
    Some(EmailConfig {
        server: m.server.clone(),
        port: m.port.unwrap_or(tls.default_port()),
        tls,
        username: m.username.clone(),
        password,
        ca_pem,
        from: m.from.clone(),
        to: m.to.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(toml_text: &str) -> Result<NotifyConfig, String> {
        #[derive(Deserialize)]
        struct W {
            notify: RawNotify,
        }
        let raw: W = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut e = Diagnostics::new(Path::new("/etc/quorate/c.toml"));
        let cfg = validate(&raw.notify, Path::new("/nonexistent"), &mut e);
        if e.is_empty() {
            Ok(cfg)
        } else {
            Err(e.to_string())
        }
    }

    #[test]
    fn an_unknown_event_names_the_key_and_lists_the_valid_ones() {
        let e = check(
            "[[notify.webhook]]\nurl = \"http://127.0.0.1:9/h\"\nevents = [\"failover\", \"transiton\"]\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with(
                "/etc/quorate/c.toml: notify.webhook[0].events[1]: unknown event \"transiton\"; expected one of: failover, failback, backup-down,"
            ),
            "{e}"
        );
        assert!(e.contains("notices-dropped"), "{e}");
    }

    #[test]
    fn channels_get_names_filters_and_windows() {
        let c = check(
            r#"
[notify]
dashboard_url = "https://q.example.com/s/{service}"
dns_pending_after = "90s"
[[notify.webhook]]
url = "http://127.0.0.1:9/h"
events = ["failover", "failback", "both-down"]
quiet = "10m"
[[notify.webhook]]
name = "chat"
url = "http://127.0.0.1:9/s"
format = "slack"
[[notify.ntfy]]
url = "https://ntfy.example.com/quorate"
[[notify.email]]
name = "mail"
server = "127.0.0.1"
tls = "none"
from = "Quorate <q@example.com>"
to = ["ops@example.com"]
"#,
        )
        .unwrap();
        assert_eq!(c.dns_pending_after, Duration::from_secs(90));
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["webhook[0]", "chat", "ntfy[0]", "mail"]);
        let w = &c.channels[0];
        assert_eq!(w.quiet, Duration::from_secs(600));
        assert!(w.wants(Event::BothDown) && !w.wants(Event::NotReady));
        assert!(w.wants(Event::Test), "a test notice goes everywhere");
        assert!(c.channels[1].wants(Event::NotReady));
        let Target::Email(m) = &c.channels[3].target else {
            panic!()
        };
        assert_eq!((m.port, m.tls), (25, SmtpTls::None));
    }

    #[test]
    fn what_is_refused() {
        for (text, want) in [
            (
                "[[notify.email]]\nserver = \"smtp.example.com\"\ntls = \"none\"\nfrom = \"q@example.com\"\nto = [\"o@example.com\"]\n",
                "notify.email[0].tls: \"none\" sends mail and password in the clear",
            ),
            (
                "[[notify.email]]\nserver = \"smtp.example.com\"\nusername = \"q\"\nfrom = \"q@example.com\"\nto = [\"o@example.com\"]\n",
                "notify.email[0].username: give both username and a password",
            ),
            (
                "[[notify.email]]\nserver = \"smtp.example.com\"\nfrom = \"not an address\"\nto = []\n",
                "notify.email[0].from: expected an address",
            ),
            (
                "[[notify.webhook]]\nurl = \"http://127.0.0.1:9/h\"\nsecret_file = \"missing\"\nsecret_env = \"X\"\n",
                "notify.webhook[0].secret_file: give only one of secret_file, secret_env and secret_credential",
            ),
            (
                "[[notify.webhook]]\nurl = \"http://127.0.0.1:9/h\"\nsecret_file = \"missing\"\n",
                "notify.webhook[0].secret_file:",
            ),
            (
                "[[notify.ntfy]]\nurl = \"ftp://x/T0KEN\"\n",
                "notify.ntfy[0].url: expected an http(s):// URL",
            ),
            (
                "[[notify.webhook]]\nname = \"a\"\nurl = \"http://x/\"\n[[notify.ntfy]]\nname = \"a\"\nurl = \"http://y/\"\n",
                "notify: two channels are named \"a\"",
            ),
            (
                "[[notify.webhook]]\nurl = \"http://x/\"\nquiet = \"soon\"\n",
                "notify.webhook[0].quiet: expected a duration",
            ),
            (
                "[[notify.webhook]]\nurl = \"http://x/\"\nevents = []\n",
                "notify.webhook[0].events: an empty list sends nothing",
            ),
        ] {
            let e = check(text).unwrap_err();
            assert!(e.contains(want), "{text}\n→ {e}");
            assert!(!e.contains("T0KEN"), "a URL is never quoted: {e}");
        }
    }

    #[test]
    fn unknown_keys_in_a_channel_are_refused() {
        let e = check("[[notify.ntfy]]\nurl = \"http://x/\"\npriority = 5\n").unwrap_err();
        assert!(e.contains("priority"), "{e}");
    }
}
