//! The `[[notify.webhook]]` tables: where state changes and alerts are posted, and in which
//! format. A URL that carries a secret (Slack's do) can live in a `url_file`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use shared::config::{Diagnostics, resolve};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(default)]
    pub webhook: Vec<RawWebhook>,
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
}

/// The body a webhook gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    #[default]
    Json,
    Slack,
}

#[derive(Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    pub slack: bool,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token: never print it.
        f.debug_struct("WebhookConfig")
            .field("slack", &self.slack)
            .finish_non_exhaustive()
    }
}

pub(super) fn validate(raw: &RawNotify, base: &Path, e: &mut Diagnostics) -> Vec<WebhookConfig> {
    let mut webhooks = Vec::new();
    for (i, w) in raw.webhook.iter().enumerate() {
        let key = format!("notify.webhook[{i}]");
        let url = match (&w.url, &w.url_file) {
            (Some(u), None) => Some(u.clone()),
            (None, Some(f)) => shared::keys::read_secret_file(&resolve(base, f))
                .map_err(|err| e.push(format!("{key}.url_file"), err))
                .ok(),
            _ => {
                e.push(&key, "set exactly one of url or url_file");
                None
            }
        };
        if let Some(url) = url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                e.push(format!("{key}.url"), "expected an http(s):// URL");
            }
            webhooks.push(WebhookConfig {
                url,
                slack: w.format == WebhookFormat::Slack,
            });
        }
    }
    webhooks
}
