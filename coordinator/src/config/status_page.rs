//! The `[status_page]` table: the public status page, on a listener of its own, for the
//! services the operator lists (`crate::dashboard::status`, `docs/dashboard.md`). Absent: no
//! status page.

use std::net::SocketAddr;

use serde::Deserialize;
use shared::config::Diagnostics;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatusPage {
    /// Where it listens (`"0.0.0.0:8081"`): plain HTTP, no login.
    pub listen: String,
    /// The services shown, by name; the others are not mentioned.
    pub services: Vec<String>,
    /// The page's heading ("Service status").
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusPageConfig {
    pub listen: SocketAddr,
    pub services: Vec<String>,
    pub title: String,
}

/// Longest title: a heading, not a page.
const MAX_TITLE: usize = 200;

pub(super) fn validate(
    raw: &Option<RawStatusPage>,
    known: &[String],
    e: &mut Diagnostics,
) -> Option<StatusPageConfig> {
    let raw = raw.as_ref()?;
    let listen = raw.listen.parse::<SocketAddr>().ok();
    if listen.is_none() {
        e.expected(
            "status_page.listen",
            "an address and port like \"0.0.0.0:8081\"",
            &raw.listen,
        );
    }
    if raw.services.is_empty() {
        e.push(
            "status_page.services",
            "expected the names of the services to show, got none",
        );
    }
    for s in &raw.services {
        if !known.contains(s) {
            e.push(
                "status_page.services",
                format!("no [[service]] is named {s:?}"),
            );
        }
    }
    let title = raw.title.clone().unwrap_or_else(|| "Service status".into());
    if title.len() > MAX_TITLE {
        e.push(
            "status_page.title",
            format!("expected at most {MAX_TITLE} bytes, got {}", title.len()),
        );
    }
    Some(StatusPageConfig {
        listen: listen?,
        services: raw.services.clone(),
        title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: &str, services: &[&str]) -> (Option<StatusPageConfig>, Vec<String>) {
        let mut e = Diagnostics::new(std::path::Path::new("c.toml"));
        let raw = Some(RawStatusPage {
            listen: listen.into(),
            services: services.iter().map(|s| s.to_string()).collect(),
            title: None,
        });
        let c = validate(&raw, &["web".into()], &mut e);
        (c, e.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn only_configured_services_on_a_valid_address() {
        let (c, errors) = check("127.0.0.1:8081", &["web"]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(c.map(|c| c.title), Some("Service status".to_string()));
        let (_, errors) = check("nowhere", &["web", "mail"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("status_page.listen"), "{errors:?}");
        assert!(
            errors[1].contains("no [[service]] is named \"mail\""),
            "{errors:?}"
        );
        let (_, errors) = check("127.0.0.1:8081", &[]);
        assert!(errors[0].contains("status_page.services"), "{errors:?}");
        assert!(validate(&None, &[], &mut Diagnostics::new(std::path::Path::new("c"))).is_none());
    }
}
