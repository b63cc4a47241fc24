//! The vocabulary of the decision function: sides, overrides, policy, observations, events,
//! actions and the persisted [`State`]. Plain data with their spellings; no behaviour beyond
//! naming and validation (the rules live in `step`, in `mod.rs`).

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// No automatic switch before this many probes have been observed since [`Event::Started`]:
/// the first probe after a restart may be taken while the network, or the coordinator's own
/// view of it, is still settling, so it is never enough on its own to flip DNS.
pub const MIN_TICKS_BEFORE_SWITCH: u32 = 2;

/// Which server the service's DNS records point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Primary,
    Backup,
}

impl Side {
    /// The side a switch away from `self` goes to.
    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Backup,
            Side::Backup => Side::Primary,
        }
    }

    /// `"primary"` / `"backup"`: the spelling used in config, history and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Backup => "backup",
        }
    }
}

/// Maintenance mode of one service, set by an operator through the API or CLI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    /// The decision rules run as usual.
    #[default]
    Auto,
    /// DNS points at the primary whatever the probes say (e.g. maintenance on the backup).
    PinPrimary,
    /// DNS points at the backup whatever the probes say (e.g. maintenance on the primary).
    PinBackup,
}

impl Override {
    /// The side this override pins DNS to, `None` for [`Override::Auto`].
    pub fn pinned(self) -> Option<Side> {
        match self {
            Override::Auto => None,
            Override::PinPrimary => Some(Side::Primary),
            Override::PinBackup => Some(Side::Backup),
        }
    }

    /// `"auto"` / `"pin-primary"` / `"pin-backup"`: the spelling used in the API and history.
    pub fn as_str(self) -> &'static str {
        match self {
            Override::Auto => "auto",
            Override::PinPrimary => "pin-primary",
            Override::PinBackup => "pin-backup",
        }
    }
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// When witnesses who can still reach the primary stop a failover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VetoRule {
    /// One valid "up" vote is enough to call the round `disputed` (the seed rule, default):
    /// if anybody can reach the primary, the trouble is more likely between the backup and
    /// the primary than at the primary.
    #[default]
    Any,
    /// The round is `disputed` when the valid "up" votes are at least as many as the valid
    /// "down" votes (`up >= down`). A tie vetoes: moving every visitor on a split vote is worse
    /// than waiting one more probe interval. So 1 up against 2 down does not veto.
    Majority,
}

/// What happens once the primary has been up for the hold-down while the backup is active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailbackMode {
    /// Switch back to the primary by itself.
    #[default]
    Auto,
    /// Alert and wait for [`Event::ManualFailback`] (e.g. data must be synced back first).
    Manual,
}

/// The numbers the rules run on, per service. Built and defaulted by the config module
/// (e.g. `quorum` = majority of the configured witnesses); [`Policy::validate`] checks them.
/// Stored with every round (as this JSON) so the round's outcome can be re-derived from its
/// votes later, under the policy in force then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Consecutive "down" probes of the primary before a decision round is held; also how long
    /// the backup must be down before the "backup down" alert (one failed probe is noise).
    pub fail_after: u32,
    /// Consecutive "up" probes of the primary before failing back (the hold-down), so a
    /// primary that flickers back for one probe does not pull the traffic back.
    pub recover_after: u32,
    /// Valid "down" votes needed to fail over (and valid "up" votes to fail back when
    /// `failback_needs_quorum`).
    pub quorum: u32,
    /// How many witnesses are configured; only used to check `quorum` and in messages.
    pub witnesses: u32,
    /// When "up" votes stop a failover.
    pub veto: VetoRule,
    /// Whether failback is automatic or waits for an operator.
    pub failback: FailbackMode,
    /// Whether failback also needs `quorum` witnesses to see the primary up, not only our
    /// own probes.
    pub failback_needs_quorum: bool,
    /// At most this many automatic switches within `flap_window_ms`.
    pub max_flips: u32,
    /// The flap-damping window, in milliseconds.
    pub flap_window_ms: u64,
}

/// A [`Policy`] field holds a value the rules cannot run on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The [`Policy`] field (named like the config key) that is wrong.
    pub field: &'static str,
    /// What was expected and what was found.
    pub message: String,
}

impl Policy {
    /// Checks the numbers once, before anything runs, so `step` never has to guess.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |field, message: String| Err(PolicyError { field, message });
        if self.fail_after == 0 {
            return err("fail_after", "expected at least 1 probe, got 0".into());
        }
        if self.recover_after == 0 {
            return err("recover_after", "expected at least 1 probe, got 0".into());
        }
        if self.witnesses == 0 {
            return err(
                "witnesses",
                "expected at least 1 witness: without witnesses no failover can ever be agreed"
                    .into(),
            );
        }
        if self.quorum == 0 || self.quorum > self.witnesses {
            return err(
                "quorum",
                format!(
                    "expected between 1 and the number of witnesses ({}), got {}",
                    self.witnesses, self.quorum
                ),
            );
        }
        if self.max_flips == 0 {
            return err(
                "max_flips",
                "expected at least 1: 0 would forbid every automatic switch".into(),
            );
        }
        if self.flap_window_ms == 0 {
            return err("flap_window", "expected a window longer than 0".into());
        }
        Ok(())
    }
}

/// The witnesses' answers in one probe interval, after the driver verified them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteTally {
    /// Valid (verified, fresh, bound to this request) votes saying the primary is up.
    pub up: u32,
    /// Valid votes saying the primary is down.
    pub down: u32,
    /// Answers that failed verification (bad signature, wrong request hash, late, unknown
    /// witness): they count for nothing but are worth telling the operator about.
    pub invalid: u32,
    /// Witnesses that did not answer in time.
    pub missing: u32,
}

impl VoteTally {
    /// Votes that count: only verified votes ever decide anything.
    pub fn valid(&self) -> u32 {
        self.up.saturating_add(self.down)
    }
}

impl fmt::Display for VoteTally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} down, {} up, {} invalid, {} missing",
            self.down, self.up, self.invalid, self.missing
        )
    }
}

/// What the driver saw in one probe interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Our own probe of the primary succeeded.
    pub primary_up: bool,
    /// Our own probe of the backup succeeded (never fail over to a dead backup).
    pub backup_up: bool,
    /// The witnesses' votes gathered in the same interval.
    pub votes: VoteTally,
}

/// Everything that can happen to one service; the driver's loop feeds these in one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The coordinator (re)started with this state loaded from storage: streaks are forgotten
    /// (they describe probes from before the restart) and the start-up hold begins.
    Started,
    /// One probe interval's results.
    Tick(Observation),
    /// An operator set the maintenance mode.
    SetOverride(Override),
    /// An operator asked to fail back now (the answer to `failback-awaiting-operator`).
    ManualFailback,
    /// A [`Action::Switch`] could not be applied. `permanent` failures (conflict, auth,
    /// rejected) undo the switch in the state and block automatic switching; transient ones
    /// are retried by the driver and are a no-op here.
    SwitchFailed { to: Side, permanent: bool },
}

/// Why automatic switching is blocked: a DNS change failed in a way a retry cannot fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// The side the failed change tried to switch to.
    pub to: Side,
    /// When the failure was reported.
    pub at_ms: u64,
}

/// Conditions worth telling a human about. Latched kinds are raised once per episode and
/// resolved when the episode ends; the others are one-off notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// The backup has been down for `fail_after` probes while the primary is up: a failover
    /// would not be possible right now.
    BackupDown,
    /// Both primary and backup are down: DNS is left as it is.
    BothDown,
    /// Flap damping is holding an automatic switch.
    Damped,
    /// A DNS change failed permanently; automatic switching waits for an override.
    SwitchBlocked,
    /// Failback is due and waits for an operator's command.
    FailbackAwaitingOperator,
    /// An operator's failback command was refused (one-off, not latched).
    FailbackRefused,
}

impl AlertKind {
    /// Whether this kind is raised once per episode (and later resolved).
    pub fn is_latched(self) -> bool {
        !matches!(self, AlertKind::FailbackRefused)
    }

    /// Kebab-case name for notifications and the events log.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::BackupDown => "backup-down",
            AlertKind::BothDown => "both-down",
            AlertKind::Damped => "damped",
            AlertKind::SwitchBlocked => "switch-blocked",
            AlertKind::FailbackAwaitingOperator => "failback-awaiting-operator",
            AlertKind::FailbackRefused => "failback-refused",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What started a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The primary has been down for `fail_after` probes (the votes of this tick belong to the
    /// round).
    PrimaryDown,
    /// The primary has been up for `recover_after` probes while the backup is active (the votes
    /// of this tick belong to the round).
    PrimaryUp,
    /// An operator set an override (no votes).
    Override,
    /// An operator asked for a failback (no votes).
    ManualFailback,
}

impl Trigger {
    /// Kebab-case name stored in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::PrimaryDown => "primary-down",
            Trigger::PrimaryUp => "primary-up",
            Trigger::Override => "override",
            Trigger::ManualFailback => "manual-failback",
        }
    }

    /// Whether this round was decided on the current tick's votes, so the driver stores them
    /// with it.
    pub fn has_votes(self) -> bool {
        matches!(self, Trigger::PrimaryDown | Trigger::PrimaryUp)
    }
}

/// How a round ended. Stored in the history as [`Outcome::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// DNS switched to the backup.
    Failover,
    /// DNS switched back to the primary (automatically or by the operator's command).
    Failback,
    /// No valid vote at all: the coordinator itself is probably cut off; nothing done.
    CoordinatorIsolated,
    /// The veto rule fired: witnesses can reach the primary; nothing done.
    Disputed,
    /// Fewer than `quorum` valid down votes; nothing done, tried again next probe.
    InsufficientVotes,
    /// Quorum says the primary is down but the backup is down too; DNS left alone.
    BothDown,
    /// A switch was due on a probe too soon after a restart; nothing done.
    StartupHold,
    /// A switch was due but flap damping holds it.
    Damped,
    /// A switch was due but automatic switching is blocked after a permanent DNS failure.
    Blocked,
    /// Failback is due; waiting for an operator's command.
    FailbackAwaitingOperator,
    /// The hold-down is over but fewer than `quorum` witnesses see the primary up.
    FailbackNotAgreed,
    /// An operator's failback command was refused (reason says why).
    FailbackRefused,
    /// An operator's override was applied.
    Override,
}

impl Outcome {
    /// Every outcome, e.g. for a schema CHECK or an API enum.
    pub const ALL: [Outcome; 13] = [
        Outcome::Failover,
        Outcome::Failback,
        Outcome::CoordinatorIsolated,
        Outcome::Disputed,
        Outcome::InsufficientVotes,
        Outcome::BothDown,
        Outcome::StartupHold,
        Outcome::Damped,
        Outcome::Blocked,
        Outcome::FailbackAwaitingOperator,
        Outcome::FailbackNotAgreed,
        Outcome::FailbackRefused,
        Outcome::Override,
    ];

    /// Kebab-case name stored in the history (same as the serde spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Failover => "failover",
            Outcome::Failback => "failback",
            Outcome::CoordinatorIsolated => "coordinator-isolated",
            Outcome::Disputed => "disputed",
            Outcome::InsufficientVotes => "insufficient-votes",
            Outcome::BothDown => "both-down",
            Outcome::StartupHold => "startup-hold",
            Outcome::Damped => "damped",
            Outcome::Blocked => "blocked",
            Outcome::FailbackAwaitingOperator => "failback-awaiting-operator",
            Outcome::FailbackNotAgreed => "failback-not-agreed",
            Outcome::FailbackRefused => "failback-refused",
            Outcome::Override => "override",
        }
    }

    /// The inverse of [`Outcome::as_str`], for reading the history back.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// An effect for the driver to carry out, in the order returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Rewrite the service's records to `to`'s addresses (then verify). The state already says
    /// `to` is active; if the change fails permanently, send [`Event::SwitchFailed`].
    Switch { to: Side, reason: String },
    /// Store a round in the history; when `trigger.has_votes()`, with this tick's raw votes.
    RecordRound {
        trigger: Trigger,
        outcome: Outcome,
        reason: String,
    },
    /// Notify operators (webhook, log at warn).
    Alert { kind: AlertKind, message: String },
    /// A latched alert's condition ended (notify "resolved").
    Resolve { kind: AlertKind, message: String },
    /// The active side changed (events log, info-level trace with `from` and `to`).
    Transition {
        from: Side,
        to: Side,
        reason: String,
    },
}

/// The persisted per-service decision state (the driver stores it as JSON after every step).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Where DNS points (or is being switched to).
    pub active: Side,
    /// The operator's maintenance mode.
    #[serde(rename = "override")]
    pub override_: Override,
    /// Consecutive probes since start that saw the primary down.
    pub primary_down_streak: u32,
    /// Consecutive probes since start that saw the primary up; > 0 means "up at the last probe".
    pub primary_up_streak: u32,
    /// Consecutive probes since start that saw the backup down.
    pub backup_down_streak: u32,
    /// Probes since the last [`Event::Started`] (saturating), for the start-up hold.
    pub ticks_since_start: u32,
    /// Manual failback mode: the failback is due and we are waiting for the operator.
    pub awaiting_manual_failback: bool,
    /// Times of the automatic switches inside the flap window, oldest first; never longer than
    /// `max_flips`.
    pub flips: Vec<u64>,
    /// Flap damping is holding automatic switches (cleared when the window has passed).
    pub damped: bool,
    /// Automatic switching is blocked after a permanent DNS failure (cleared by any override).
    pub blocked: Option<Blocked>,
    /// Latched alerts currently raised, so each is sent once per episode.
    pub alerts: BTreeSet<AlertKind>,
}

impl State {
    /// A fresh service pointing at `active` (normally the primary), automatic mode.
    pub fn new(active: Side) -> State {
        State {
            active,
            override_: Override::Auto,
            primary_down_streak: 0,
            primary_up_streak: 0,
            backup_down_streak: 0,
            ticks_since_start: 0,
            awaiting_manual_failback: false,
            flips: Vec::new(),
            damped: false,
            blocked: None,
            alerts: BTreeSet::new(),
        }
    }

    /// `"primary-active"` / `"backup-active"`: the state name of SPEC.md §3.
    pub fn label(&self) -> &'static str {
        match self.active {
            Side::Primary => "primary-active",
            Side::Backup => "backup-active",
        }
    }
}

impl Side {
    /// The inverse of [`Side::as_str`], for reading the history back.
    pub fn parse(s: &str) -> Option<Side> {
        [Side::Primary, Side::Backup]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

impl Trigger {
    /// The inverse of [`Trigger::as_str`], for reading the history back.
    pub fn parse(s: &str) -> Option<Trigger> {
        [
            Trigger::PrimaryDown,
            Trigger::PrimaryUp,
            Trigger::Override,
            Trigger::ManualFailback,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// For an enum with one stored spelling (`as_str`): `Display` writes it (padded, so tables
/// line up), and the value compares with it (`round.outcome == "failover"`), so code and tests
/// that read the history keep reading naturally. Used here and by `store`'s own enums.
macro_rules! spelled {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )*};
}
pub(crate) use spelled;

spelled!(Side, Trigger, Outcome);
