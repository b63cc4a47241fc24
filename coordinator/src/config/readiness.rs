//! The `[readiness]` table: how often the costly readiness checks run (the DNS backend's
//! harmless operation, the authoritative servers, the backup as the witnesses see it), and how
//! long a condition must hold before it is an alert (`docs/readiness.md`).

use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReadiness {
    /// How often the DNS side and the backup are re-proven ("60s").
    #[serde(default)]
    pub interval: Option<String>,
    /// How long readiness must be lost (or regained) before the alert ("30s").
    #[serde(default)]
    pub alert_after: Option<String>,
    /// How long a witness may be silent or refusing before an alert of its own ("2m").
    #[serde(default)]
    pub witness_alert_after: Option<String>,
    /// How long a `disputed` spell (this coordinator cannot reach the primary, a witness
    /// can) may last before an alert ("10m").
    #[serde(default)]
    pub disputed_alert_after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadinessConfig {
    pub interval: Duration,
    pub alert_after: Duration,
    pub witness_alert_after: Duration,
    pub disputed_alert_after: Duration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            interval: Duration::from_secs(60),
            alert_after: Duration::from_secs(30),
            witness_alert_after: Duration::from_secs(120),
            disputed_alert_after: Duration::from_secs(600),
        }
    }
}

pub(super) fn validate(raw: &RawReadiness, e: &mut Diagnostics) -> ReadinessConfig {
    let d = ReadinessConfig::default();
    let mut get = |key: &str, v: &Option<String>, default: Duration| match v {
        None => default,
        Some(text) => match e.duration(format!("readiness.{key}"), text) {
            Some(x) if x >= Duration::from_millis(100) => x,
            Some(_) => {
                e.push(
                    format!("readiness.{key}"),
                    format!("expected at least 100ms, got {text:?}"),
                );
                default
            }
            None => default,
        },
    };
    ReadinessConfig {
        interval: get("interval", &raw.interval, d.interval),
        alert_after: get("alert_after", &raw.alert_after, d.alert_after),
        witness_alert_after: get(
            "witness_alert_after",
            &raw.witness_alert_after,
            d.witness_alert_after,
        ),
        disputed_alert_after: get(
            "disputed_alert_after",
            &raw.disputed_alert_after,
            d.disputed_alert_after,
        ),
    }
}
