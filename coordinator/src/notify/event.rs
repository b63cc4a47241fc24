//! What a notice is about: the closed list of events a channel can subscribe to
//! (`events = [...]`), and the notice itself. An alert and its resolution share one event
//! name (`both-down`, then `both-down` with `resolved: true`), so a channel that asks for an
//! alert also hears when it ends.

use serde::Serialize;

use crate::failover::{AlertKind, Side, VoteTally};

/// Every event a notice can be about. `as_str` is the spelling in `events = [...]`, in the
/// webhook payload's `event` field and in `docs/notifications.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// The backup's records went live (a transition decided on the witnesses' votes, or an
    /// operator's `pin-backup`).
    Failover,
    /// The primary's records are going back.
    Failback,
    BackupDown,
    BothDown,
    Damped,
    SwitchBlocked,
    FailbackAwaitingOperator,
    FailbackRefused,
    /// Readiness lost (resolved: ready again).
    NotReady,
    /// A witness silent or refusing for too long (resolved: it answers again).
    WitnessAlert,
    /// This coordinator cannot reach the primary while a witness can (resolved: it can again).
    DisputedAlert,
    /// An operator set an override.
    Override,
    /// An operator asked for a failback.
    ManualFailback,
    /// An operator hook failed.
    HookFailed,
    /// The pre-failback gate is still failing after `hooks.gate_alert_after` (resolved: it
    /// passed, or the failback was superseded or forced).
    GateFailing,
    DnsApplied,
    DnsFailed,
    /// Some authoritative server did not serve a change in time.
    DnsLagging,
    /// A DNS change still pending after `notify.dns_pending_after` (resolved: applied).
    DnsPending,
    /// A configuration reload was refused or only partly applied.
    ConfigReload,
    /// Notices were dropped because a queue was full.
    NoticesDropped,
    /// `quorate-coordinator notify test`.
    Test,
}

impl Event {
    pub const ALL: [Event; 22] = [
        Event::Failover,
        Event::Failback,
        Event::BackupDown,
        Event::BothDown,
        Event::Damped,
        Event::SwitchBlocked,
        Event::FailbackAwaitingOperator,
        Event::FailbackRefused,
        Event::NotReady,
        Event::WitnessAlert,
        Event::DisputedAlert,
        Event::Override,
        Event::ManualFailback,
        Event::HookFailed,
        Event::GateFailing,
        Event::DnsApplied,
        Event::DnsFailed,
        Event::DnsLagging,
        Event::DnsPending,
        Event::ConfigReload,
        Event::NoticesDropped,
        Event::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failover => "failover",
            Event::Failback => "failback",
            Event::BackupDown => "backup-down",
            Event::BothDown => "both-down",
            Event::Damped => "damped",
            Event::SwitchBlocked => "switch-blocked",
            Event::FailbackAwaitingOperator => "failback-awaiting-operator",
            Event::FailbackRefused => "failback-refused",
            Event::NotReady => "not-ready",
            Event::WitnessAlert => "witness-alert",
            Event::DisputedAlert => "disputed-alert",
            Event::Override => "override",
            Event::ManualFailback => "manual-failback",
            Event::HookFailed => "hook-failed",
            Event::GateFailing => "gate-failing",
            Event::DnsApplied => "dns-applied",
            Event::DnsFailed => "dns-failed",
            Event::DnsLagging => "dns-lagging",
            Event::DnsPending => "dns-pending",
            Event::ConfigReload => "config-reload",
            Event::NoticesDropped => "notices-dropped",
            Event::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Every spelling, for error messages: `failover, failback, ...`.
    pub fn list() -> String {
        Event::ALL.map(Event::as_str).join(", ")
    }

    pub fn from_alert(kind: AlertKind) -> Event {
        match kind {
            AlertKind::BackupDown => Event::BackupDown,
            AlertKind::BothDown => Event::BothDown,
            AlertKind::Damped => Event::Damped,
            AlertKind::SwitchBlocked => Event::SwitchBlocked,
            AlertKind::FailbackAwaitingOperator => Event::FailbackAwaitingOperator,
            AlertKind::FailbackRefused => Event::FailbackRefused,
        }
    }

    /// The transition event of a switch to `to`.
    pub fn switch_to(to: Side) -> Event {
        match to {
            Side::Backup => Event::Failover,
            Side::Primary => Event::Failback,
        }
    }

    /// The payload's older, coarser `kind` field (kept for receivers written against it):
    /// `transition`, `alert`, `resolved`, or the event's own spelling.
    pub fn kind(self, resolved: bool) -> &'static str {
        match self {
            Event::Failover | Event::Failback => "transition",
            Event::BackupDown
            | Event::BothDown
            | Event::Damped
            | Event::SwitchBlocked
            | Event::FailbackAwaitingOperator
            | Event::FailbackRefused
            | Event::DnsLagging
            | Event::ConfigReload
            | Event::GateFailing
            | Event::DnsPending
            | Event::NoticesDropped => {
                if resolved {
                    "resolved"
                } else {
                    "alert"
                }
            }
            Event::NotReady if resolved => "ready-again",
            Event::WitnessAlert if resolved => "witness-ok",
            Event::DisputedAlert if resolved => "disputed-over",
            Event::ManualFailback => "override",
            other => other.as_str(),
        }
    }

    /// How loud: `critical` (a switch, both sides down, switching blocked), `warning`
    /// (something an operator should look at), `info`.
    pub fn severity(self, resolved: bool) -> Severity {
        if resolved {
            return Severity::Info;
        }
        match self {
            Event::Failover
            | Event::Failback
            | Event::BothDown
            | Event::SwitchBlocked
            | Event::DnsFailed => Severity::Critical,
            Event::DnsApplied | Event::Test | Event::Override | Event::ManualFailback => {
                Severity::Info
            }
            _ => Severity::Warning,
        }
    }

    /// Transitions are never held back by a quiet window (flap damping bounds them instead).
    pub fn is_transition(self) -> bool {
        matches!(self, Event::Failover | Event::Failback)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One notification, as data: every channel renders it its own way (`render`).
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The service, or `coordinator` for notices about the coordinator itself.
    pub service: String,
    pub event: Event,
    /// The end of the condition `event` names.
    pub resolved: bool,
    /// One line a human reads first.
    pub message: String,
    /// Unix milliseconds.
    pub at_ms: u64,
    /// For a transition: from which side to which.
    pub switch: Option<(Side, Side)>,
    /// For a transition decided on votes: the round's tally.
    pub votes: Option<VoteTally>,
    /// For an operator's action: the API token role that did it (`admin`).
    pub by: Option<String>,
    /// Notices of the same event and service a quiet window held back before this one.
    pub suppressed: u32,
}

impl Notice {
    pub fn new(service: &str, event: Event, message: impl Into<String>, at_ms: u64) -> Notice {
        Notice {
            service: service.into(),
            event,
            resolved: false,
            message: message.into(),
            at_ms,
            switch: None,
            votes: None,
            by: None,
            suppressed: 0,
        }
    }

    /// The same notice, as the end of its condition.
    pub fn resolved(mut self) -> Notice {
        self.resolved = true;
        self
    }

    pub fn by(mut self, role: &str) -> Notice {
        self.by = Some(role.into());
        self
    }

    pub fn kind(&self) -> &'static str {
        self.event.kind(self.resolved)
    }

    pub fn severity(&self) -> Severity {
        self.event.severity(self.resolved)
    }

    /// `failover`, or `both-down resolved`: the event as a human reads it.
    pub fn title_event(&self) -> String {
        if self.resolved {
            format!("{} resolved", self.event.as_str())
        } else {
            self.event.as_str().to_string()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_one_spelling_that_parses_back() {
        let mut seen = std::collections::BTreeSet::new();
        for e in Event::ALL {
            assert!(seen.insert(e.as_str()), "{} twice", e.as_str());
            assert_eq!(Event::parse(e.as_str()), Some(e));
        }
        assert_eq!(Event::parse("transition"), None);
    }

    #[test]
    fn the_older_kind_field_keeps_its_spellings() {
        assert_eq!(Event::Failover.kind(false), "transition");
        assert_eq!(Event::BothDown.kind(false), "alert");
        assert_eq!(Event::BothDown.kind(true), "resolved");
        assert_eq!(Event::NotReady.kind(false), "not-ready");
        assert_eq!(Event::NotReady.kind(true), "ready-again");
        assert_eq!(Event::WitnessAlert.kind(true), "witness-ok");
        assert_eq!(Event::DnsApplied.kind(false), "dns-applied");
        assert_eq!(Event::ConfigReload.kind(false), "alert");
    }
}
