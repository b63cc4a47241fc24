//! The `[dashboard]` table: the web pages the coordinator serves under `/ui/` on the API
//! listener (`crate::dashboard`, `docs/dashboard.md`). Everything has a default; the table may
//! be left out.

use std::time::Duration;

use serde::Deserialize;
use shared::config::Diagnostics;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
    /// `false` turns the pages off (`/ui/` answers 404). On by default: every page needs a
    /// login with one of the API's tokens.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How long a login lasts ("12h"): the session cookie and the server's session both end
    /// then, and the next page goes to the login form.
    #[serde(default)]
    pub session_ttl: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashboardConfig {
    pub enabled: bool,
    pub session_ttl: Duration,
}

/// [`DashboardConfig::session_ttl`] when not set: a working day.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            session_ttl: DEFAULT_SESSION_TTL,
        }
    }
}

pub(super) fn validate(raw: &RawDashboard, e: &mut Diagnostics) -> DashboardConfig {
    let d = DashboardConfig::default();
    // 1 s lets a test see a session expire; 7 days is as long as a forgotten browser tab
    // should keep admin rights.
    let range = Duration::from_secs(1)..=Duration::from_secs(7 * 86_400);
    let session_ttl = match &raw.session_ttl {
        None => d.session_ttl,
        Some(text) => match e.duration("dashboard.session_ttl", text) {
            Some(x) if range.contains(&x) => x,
            Some(_) => {
                e.push(
                    "dashboard.session_ttl",
                    format!("expected between 1s and 7d, got {text:?}"),
                );
                d.session_ttl
            }
            None => d.session_ttl,
        },
    };
    DashboardConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        session_ttl,
    }
}
