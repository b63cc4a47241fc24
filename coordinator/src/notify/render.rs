//! How each channel shows a notice: the one-line text (Slack-compatible chat, ntfy's body, the
//! email's first line), the generic webhook's versioned JSON payload (`docs/notifications.md`
//! describes every field), ntfy's headers, an email's subject and body. Pure: the context
//! (dashboard URL, this host's name) comes in as an argument.

use std::time::{Duration, UNIX_EPOCH};

use super::event::{Notice, Severity};

/// What every rendering may mention besides the notice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// `notify.dashboard_url`; `{service}` in it is replaced by the service's name.
    pub dashboard_url: Option<String>,
    /// This coordinator's host name.
    pub coordinator: String,
}

impl Context {
    /// The dashboard link for the notice's service, when a dashboard is configured.
    pub fn link(&self, n: &Notice) -> Option<String> {
        if n.service == "coordinator" {
            // About the coordinator itself: no service page to link.
            return None;
        }
        self.dashboard_url
            .as_ref()
            .map(|u| u.replace("{service}", &n.service))
    }
}

/// The webhook payload's version; bumped only when a field changes meaning or goes away
/// (fields may be added within a version).
pub const PAYLOAD_VERSION: u32 = 1;

/// `2026-12-01T10:00:00Z`.
pub fn rfc3339(at_ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(at_ms)).to_string()
}

/// `3 down, 0 up, 0 invalid, 0 missing`.
pub fn votes(n: &Notice) -> Option<String> {
    n.votes.map(|v| {
        format!(
            "{} down, {} up, {} invalid, {} missing",
            v.down, v.up, v.invalid, v.missing
        )
    })
}

/// The one line: `[quorate] www: failover: <message> (votes: ...) <link>`.
pub fn text(n: &Notice, ctx: &Context) -> String {
    let mut s = format!(
        "[quorate] {}: {}: {}",
        n.service,
        n.title_event(),
        n.message
    );
    // A round's reason usually quotes its votes already.
    if let Some(v) = votes(n)
        && !n.message.contains("votes: ")
    {
        s.push_str(&format!(" (votes: {v})"));
    }
    if let Some(by) = &n.by {
        s.push_str(&format!(" (by the {by} token)"));
    }
    if n.suppressed > 0 {
        s.push_str(&format!(
            " ({} more like it held back by the quiet window)",
            n.suppressed
        ));
    }
    if let Some(link) = ctx.link(n) {
        s.push(' ');
        s.push_str(&link);
    }
    s
}

/// The generic webhook's body, version 1 (every field in `docs/notifications.md`).
pub fn payload(n: &Notice, ctx: &Context) -> serde_json::Value {
    serde_json::json!({
        "version": PAYLOAD_VERSION,
        "event": n.event.as_str(),
        "resolved": n.resolved,
        "kind": n.kind(),
        "severity": n.severity().as_str(),
        "service": n.service,
        "message": n.message,
        "text": text(n, ctx),
        "at_ms": n.at_ms,
        "at": rfc3339(n.at_ms),
        "coordinator": ctx.coordinator,
        "from": n.switch.map(|(from, _)| from.as_str()),
        "to": n.switch.map(|(_, to)| to.as_str()),
        "votes": n.votes.map(|v| serde_json::json!({
            "up": v.up, "down": v.down, "invalid": v.invalid, "missing": v.missing,
        })),
        "by": n.by,
        "suppressed": n.suppressed,
        "dashboard_url": ctx.link(n),
    })
}

/// Slack's incoming-webhook body (Mattermost and Discord's `/slack` take it too).
pub fn slack(n: &Notice, ctx: &Context) -> serde_json::Value {
    serde_json::json!({ "text": text(n, ctx) })
}

/// ntfy's title, priority (1–5) and tags (emoji short codes) for a notice.
pub fn ntfy_headers(n: &Notice, ctx: &Context) -> Vec<(&'static str, String)> {
    let (priority, tag) = match (n.severity(), n.resolved) {
        (_, true) => ("3", "white_check_mark"),
        (Severity::Critical, _) => ("5", "rotating_light"),
        (Severity::Warning, _) => ("4", "warning"),
        (Severity::Info, _) => ("3", "information_source"),
    };
    let mut h = vec![
        ("Title", subject(n)),
        ("Priority", priority.to_string()),
        ("Tags", format!("{tag},quorate,{}", n.event.as_str())),
    ];
    if let Some(link) = ctx.link(n) {
        h.push(("Click", link));
    }
    h
}

/// An email's subject (a follow-up in a thread is `Re: ` + the thread's first subject).
pub fn subject(n: &Notice) -> String {
    format!("[quorate] {}: {}", n.service, n.title_event())
}

/// An email's plain-text body, for a terminal mail client: the message, then one fact per
/// line, aligned.
pub fn email_body(n: &Notice, ctx: &Context) -> String {
    let mut facts: Vec<(&str, String)> = vec![
        ("Service", n.service.clone()),
        ("Event", n.title_event()),
        ("Severity", n.severity().as_str().to_string()),
        ("When", format!("{} ({} ms)", rfc3339(n.at_ms), n.at_ms)),
    ];
    if let Some((from, to)) = n.switch {
        facts.push(("Switch", format!("{from} -> {to}")));
    }
    if let Some(v) = votes(n) {
        facts.push(("Votes", v));
    }
    if let Some(by) = &n.by {
        facts.push(("By", format!("the {by} token")));
    }
    if n.suppressed > 0 {
        facts.push((
            "Held back",
            format!("{} more like it in the quiet window", n.suppressed),
        ));
    }
    if let Some(link) = ctx.link(n) {
        facts.push(("Dashboard", link));
    }
    facts.push(("Coordinator", ctx.coordinator.clone()));
    // Wrapped for a terminal (and so the body needs no quoted-printable soft breaks).
    let mut s = format!("{}\n\n", wrap(&n.message, 72));
    for (k, v) in facts {
        s.push_str(&format!("{:<12} {v}\n", format!("{k}:")));
    }
    s.push_str("\n-- \nQuorate: docs/notifications.md explains every event.\n");
    s
}

/// Breaks `text` into lines of at most `width` characters at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        let len = word.chars().count();
        if line > 0 && line + 1 + len > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += len;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::failover::{Side, VoteTally};
    use crate::notify::event::Event;

    fn failover() -> Notice {
        let mut n = Notice::new(
            "www",
            Event::Failover,
            "primary-active -> backup-active: quorum reached",
            1_764_583_200_000,
        );
        n.switch = Some((Side::Primary, Side::Backup));
        n.votes = Some(VoteTally {
            up: 0,
            down: 3,
            invalid: 0,
            missing: 0,
        });
        n
    }

    fn ctx() -> Context {
        Context {
            dashboard_url: Some("https://q.example.com/services/{service}".into()),
            coordinator: "backup-1".into(),
        }
    }

    #[test]
    fn the_one_line_carries_votes_role_and_link() {
        assert_eq!(
            text(&failover(), &ctx()),
            "[quorate] www: failover: primary-active -> backup-active: quorum reached (votes: 3 down, 0 up, 0 invalid, 0 missing) https://q.example.com/services/www"
        );
        let o = Notice::new("www", Event::Override, "operator set pin-backup", 0).by("admin");
        assert_eq!(
            text(&o, &Context::default()),
            "[quorate] www: override: operator set pin-backup (by the admin token)"
        );
    }

    #[test]
    fn the_payload_has_every_documented_field() {
        let p = payload(&failover(), &ctx());
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "version",
            "event",
            "resolved",
            "kind",
            "severity",
            "service",
            "message",
            "text",
            "at_ms",
            "at",
            "coordinator",
            "from",
            "to",
            "votes",
            "by",
            "suppressed",
            "dashboard_url",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(p["version"], 1);
        assert_eq!(p["event"], "failover");
        assert_eq!(p["kind"], "transition");
        assert_eq!(p["severity"], "critical");
        assert_eq!(p["from"], "primary");
        assert_eq!(p["to"], "backup");
        assert_eq!(p["votes"]["down"], 3);
        assert_eq!(p["at"], "2025-12-01T10:00:00Z");
        assert_eq!(p["dashboard_url"], "https://q.example.com/services/www");
        // The docs list the same fields.
        let docs = include_str!("../../../docs/notifications.md");
        for k in want {
            assert!(
                docs.contains(&format!("| `{k}` |")),
                "docs/notifications.md does not describe `{k}`"
            );
        }
    }

    #[test]
    fn the_email_body_reads_in_a_terminal() {
        let b = email_body(&failover(), &ctx());
        assert!(
            b.starts_with("primary-active -> backup-active: quorum reached\n\nService:     www\n"),
            "{b}"
        );
        assert!(
            b.contains("Votes:       3 down, 0 up, 0 invalid, 0 missing\n"),
            "{b}"
        );
        assert!(b.lines().all(|l| l.len() <= 100), "{b}");
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
    }

    #[test]
    fn ntfy_priority_follows_severity() {
        let h = ntfy_headers(&failover(), &ctx());
        assert!(h.contains(&("Priority", "5".into())), "{h:?}");
        assert!(h.contains(&("Title", "[quorate] www: failover".into())));
        let r = Notice::new("www", Event::BothDown, "over", 0).resolved();
        let h = ntfy_headers(&r, &Context::default());
        assert!(h.contains(&("Priority", "3".into())), "{h:?}");
        assert!(h.iter().all(|(k, _)| *k != "Click"));
    }
}
