//! The decision function of the coordinator: `step(policy, state, event, now_ms)` turns the
//! persisted per-service [`State`] and one [`Event`] into the next state and a list of
//! [`Action`]s (switch DNS, record a round, alert, log a transition).
//!
//! Invariant: this module is pure. No tokio, no clock, no network, no SQL: time comes in as
//! `now_ms`, probe results and verified vote counts come in as an [`Observation`], and every
//! effect goes out as an [`Action`] that the driver carries out in order. That is what lets
//! the whole decision table of SPEC.md §3 be a table test (see `failover/tests.rs`).
//!
//! The rules, in one place (the rest of this file implements exactly these):
//!
//! - **primary-active, primary up**: nothing; no round is recorded.
//! - **primary-active, primary down for `fail_after` consecutive probes**: every such probe is a
//!   decision round over that probe's votes. No valid vote → `coordinator-isolated`; the veto
//!   rule fires → `disputed`; fewer than `quorum` valid down votes → `insufficient-votes`;
//!   quorum but the backup is down → `both-down` (DNS left alone, alert once); quorum and the
//!   backup up → `failover`.
//! - **backup-active, primary down**: nothing.
//! - **backup-active, primary up for `recover_after` consecutive probes** (the hold-down) and,
//!   when `failback_needs_quorum`, at least `quorum` valid up votes → `failback`; with
//!   [`FailbackMode::Manual`] the round is `failback-awaiting-operator` and the switch waits
//!   for [`Event::ManualFailback`].
//! - **start-up**: [`Event::Started`] resumes the persisted state but forgets the streaks; no
//!   switch before [`MIN_TICKS_BEFORE_SWITCH`] probes since start (never on the first one).
//! - **override**: a pin switches to its side at once and stops automatic decisions; `auto`
//!   resumes them with fresh streaks.
//! - **flap damping**: at most `max_flips` automatic switches within `flap_window_ms`; a switch
//!   beyond that is held (`damped`, alert once) until the oldest counted switch leaves the
//!   window.
//! - **permanent DNS failure**: the switch is undone in the state and automatic switching is
//!   blocked until an operator sets an override.
//! - **alerts** are raised once per episode (latched in [`State::alerts`]) and resolved when
//!   the condition ends, so a webhook is not hit every probe interval.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

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

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        f.write_str(self.as_str())
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
#[derive(Clone, Debug, PartialEq, Eq)]
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
        f.write_str(self.as_str())
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

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// Decides what one event means for one service. Pure: the same inputs always give the same
/// output, and nothing happens until the driver carries out the returned actions in order.
pub fn step(policy: &Policy, state: &State, event: Event, now_ms: u64) -> (State, Vec<Action>) {
    let mut m = Machine {
        policy,
        s: state.clone(),
        out: Vec::new(),
        now: now_ms,
    };
    match event {
        Event::Started => m.started(),
        Event::Tick(obs) => m.tick(&obs),
        Event::SetOverride(o) => m.set_override(o),
        Event::ManualFailback => m.manual_failback(),
        Event::SwitchFailed { to, permanent } => m.switch_failed(to, permanent),
    }
    (m.s, m.out)
}

/// One step in progress: the state being built and the actions collected so far.
struct Machine<'a> {
    policy: &'a Policy,
    s: State,
    out: Vec<Action>,
    now: u64,
}

impl Machine<'_> {
    fn started(&mut self) {
        self.reset_streaks();
        self.s.backup_down_streak = 0;
        self.s.ticks_since_start = 0;
    }

    fn tick(&mut self, obs: &Observation) {
        let s = &mut self.s;
        s.ticks_since_start = s.ticks_since_start.saturating_add(1);
        if obs.primary_up {
            s.primary_up_streak = s.primary_up_streak.saturating_add(1);
            s.primary_down_streak = 0;
        } else {
            s.primary_down_streak = s.primary_down_streak.saturating_add(1);
            s.primary_up_streak = 0;
        }
        if obs.backup_up {
            s.backup_down_streak = 0;
        } else {
            s.backup_down_streak = s.backup_down_streak.saturating_add(1);
        }
        self.prune_flips();
        self.health_alerts(obs);
        match (self.s.override_.pinned(), self.s.active) {
            // Pinned: the operator decides; no rounds, no switches.
            (Some(_), _) => {}
            (None, Side::Primary) => self.primary_active(obs),
            (None, Side::Backup) => self.backup_active(obs),
        }
    }

    /// Forgets switches older than the window and ends a damping hold once fewer than
    /// `max_flips` remain. A time later than `now` (the clock stepped back) is treated as `now`,
    /// so a clock jump can lengthen a hold by at most one window, never make it permanent.
    fn prune_flips(&mut self) {
        let (now, window) = (self.now, self.policy.flap_window_ms);
        for t in &mut self.s.flips {
            *t = (*t).min(now);
        }
        self.s.flips.retain(|&t| now - t < window);
        if self.s.damped && self.s.flips.len() < self.max_flips() {
            self.s.damped = false;
            let msg = format!(
                "flap damping released: fewer than {} automatic switches in the last {} ms",
                self.policy.max_flips, window
            );
            self.resolve(AlertKind::Damped, msg);
        }
    }

    fn max_flips(&self) -> usize {
        usize::try_from(self.policy.max_flips).unwrap_or(usize::MAX)
    }

    /// Health alerts that do not depend on a decision round.
    fn health_alerts(&mut self, obs: &Observation) {
        let fail_after = self.policy.fail_after;
        if obs.backup_up {
            self.resolve(AlertKind::BackupDown, "backup up again".into());
        }
        if obs.primary_up || obs.backup_up {
            let which = if obs.primary_up { "primary" } else { "backup" };
            self.resolve(AlertKind::BothDown, format!("{which} up again"));
        }
        let backup_long_down = self.s.backup_down_streak >= fail_after;
        if backup_long_down && obs.primary_up {
            let msg = format!(
                "backup down for {} consecutive probes while the primary is up: a failover would not be possible",
                self.s.backup_down_streak
            );
            self.raise(AlertKind::BackupDown, msg);
        }
        // In primary-active automatic mode, "both down" is the decision round's call (it needs
        // the witnesses to agree the primary is down); elsewhere our own probes are all we use.
        let round_decides = self.s.active == Side::Primary && self.s.override_ == Override::Auto;
        if !round_decides
            && backup_long_down
            && !obs.primary_up
            && self.s.primary_down_streak >= fail_after
        {
            let msg = format!(
                "primary and backup both down ({} is active): DNS left as it is",
                self.s.active
            );
            self.raise(AlertKind::BothDown, msg);
        }
    }

    fn primary_active(&mut self, obs: &Observation) {
        if obs.primary_up || self.s.primary_down_streak < self.policy.fail_after {
            return;
        }
        let p = self.policy;
        let v = obs.votes;
        let base = format!(
            "primary down for {} consecutive probes; votes: {v}",
            self.s.primary_down_streak
        );
        let round = |m: &mut Self, outcome, detail: String| {
            m.round(Trigger::PrimaryDown, outcome, format!("{base}; {detail}"));
        };
        if v.valid() == 0 {
            let detail = "no valid vote from any witness: this coordinator is probably cut off";
            return round(self, Outcome::CoordinatorIsolated, detail.into());
        }
        let vetoed = match p.veto {
            VetoRule::Any => v.up >= 1,
            VetoRule::Majority => v.up >= v.down,
        };
        if vetoed {
            let rule = match p.veto {
                VetoRule::Any => "veto any: at least one witness reaches the primary",
                VetoRule::Majority => "veto majority: as many witnesses see it up as down",
            };
            return round(self, Outcome::Disputed, rule.into());
        }
        if v.down < p.quorum {
            let detail = format!(
                "{} valid down votes, quorum is {}: trying again next probe",
                v.down, p.quorum
            );
            return round(self, Outcome::InsufficientVotes, detail);
        }
        if !obs.backup_up {
            round(
                self,
                Outcome::BothDown,
                "quorum agrees but the backup is down too: DNS left as it is".into(),
            );
            let msg = "primary down (witness quorum agrees) and backup down: DNS left as it is";
            return self.raise(AlertKind::BothDown, msg.into());
        }
        self.automatic_switch(Trigger::PrimaryDown, Side::Backup, Outcome::Failover, base);
    }

    fn backup_active(&mut self, obs: &Observation) {
        if !obs.primary_up {
            if self.s.awaiting_manual_failback {
                self.s.awaiting_manual_failback = false;
                let msg = "primary down again: no failback pending".into();
                self.resolve(AlertKind::FailbackAwaitingOperator, msg);
            }
            return;
        }
        let p = self.policy;
        if self.s.primary_up_streak < p.recover_after || self.s.awaiting_manual_failback {
            return;
        }
        let v = obs.votes;
        let base = format!(
            "primary up for {} consecutive probes (hold-down {}); votes: {v}",
            self.s.primary_up_streak, p.recover_after
        );
        if p.failback_needs_quorum && v.up < p.quorum {
            let reason = format!(
                "{base}; {} valid up votes, quorum is {}: not failing back yet",
                v.up, p.quorum
            );
            return self.round(Trigger::PrimaryUp, Outcome::FailbackNotAgreed, reason);
        }
        if p.failback == FailbackMode::Manual {
            self.s.awaiting_manual_failback = true;
            let reason = format!("{base}; failback is manual: waiting for an operator");
            self.round(
                Trigger::PrimaryUp,
                Outcome::FailbackAwaitingOperator,
                reason,
            );
            let msg = "primary is back up: failback waits for an operator's command".into();
            return self.raise(AlertKind::FailbackAwaitingOperator, msg);
        }
        self.automatic_switch(Trigger::PrimaryUp, Side::Primary, Outcome::Failback, base);
    }

    /// The one place an automatic switch happens, after the holds that can stop it.
    fn automatic_switch(&mut self, trigger: Trigger, to: Side, outcome: Outcome, base: String) {
        if self.s.ticks_since_start < MIN_TICKS_BEFORE_SWITCH {
            let reason = format!(
                "{base}; {outcome} due but only {} probe(s) since restart: never flip on the first",
                self.s.ticks_since_start
            );
            return self.round(trigger, Outcome::StartupHold, reason);
        }
        if let Some(b) = self.s.blocked {
            let reason = format!(
                "{base}; {outcome} due but automatic switching is blocked since the DNS change to {} failed: set an override to clear it",
                b.to
            );
            return self.round(trigger, Outcome::Blocked, reason);
        }
        if self.s.flips.len() >= self.max_flips() {
            let (n, w) = (self.policy.max_flips, self.policy.flap_window_ms);
            let reason = format!(
                "{base}; {outcome} due but {n} automatic switches already happened within {w} ms: holding"
            );
            self.round(trigger, Outcome::Damped, reason);
            self.s.damped = true;
            let msg = format!("flap damping: {n} switches within {w} ms, holding {outcome}");
            return self.raise(AlertKind::Damped, msg);
        }
        let reason = format!("{base}; switching to {to}");
        self.round(trigger, outcome, reason.clone());
        self.switch(to, reason);
        self.s.flips.push(self.now);
    }

    fn set_override(&mut self, o: Override) {
        let target = o.pinned();
        let needs_switch = target.is_some_and(|t| t != self.s.active);
        let changed = o != self.s.override_;
        if !changed && self.s.blocked.is_none() && !needs_switch {
            // Setting the mode already in force is idempotent.
            return;
        }
        self.s.override_ = o;
        self.reset_streaks();
        if self.s.blocked.take().is_some() {
            let msg = format!("cleared by the operator's override {o}");
            self.resolve(AlertKind::SwitchBlocked, msg);
        }
        if self.s.awaiting_manual_failback {
            self.s.awaiting_manual_failback = false;
            let msg = format!("superseded by the operator's override {o}");
            self.resolve(AlertKind::FailbackAwaitingOperator, msg);
        }
        let mut reason = format!("operator set override {o}");
        match target {
            None => reason.push_str(": automatic decisions resume with fresh streaks"),
            Some(t) if needs_switch => {
                reason.push_str(&format!(": switching to {t}"));
                if t == Side::Backup && self.s.backup_down_streak > 0 {
                    reason.push_str(" (the backup was down at the last probe)");
                }
            }
            Some(t) => reason.push_str(&format!(": already on {t}")),
        }
        self.round(Trigger::Override, Outcome::Override, reason.clone());
        if let (Some(t), true) = (target, needs_switch) {
            self.switch(t, reason);
        }
    }

    fn manual_failback(&mut self) {
        let refusal = if self.s.active == Side::Primary {
            Some("already primary-active".to_string())
        } else if self.s.override_ == Override::PinBackup {
            Some("pinned to the backup: set the override to auto or pin-primary instead".into())
        } else if let Some(b) = self.s.blocked {
            Some(format!(
                "switching is blocked since the DNS change to {} failed: set an override to clear it",
                b.to
            ))
        } else if self.s.primary_up_streak == 0 {
            Some("the primary was down at the last probe (or not probed since restart)".into())
        } else {
            None
        };
        if let Some(why) = refusal {
            let reason = format!("operator asked for failback, refused: {why}");
            self.round(
                Trigger::ManualFailback,
                Outcome::FailbackRefused,
                reason.clone(),
            );
            return self.raise(AlertKind::FailbackRefused, reason);
        }
        let reason = format!(
            "operator asked for failback; primary up for {} consecutive probes: switching to primary",
            self.s.primary_up_streak
        );
        self.round(Trigger::ManualFailback, Outcome::Failback, reason.clone());
        if self.s.awaiting_manual_failback {
            self.s.awaiting_manual_failback = false;
            self.resolve(AlertKind::FailbackAwaitingOperator, "failback done".into());
        }
        // An operator's command: not counted against flap damping.
        self.switch(Side::Primary, reason);
    }

    fn switch_failed(&mut self, to: Side, permanent: bool) {
        if !permanent {
            // The driver retries transient failures with backoff; nothing to decide.
            return;
        }
        let back = to.other();
        if self.s.active == to {
            let reason =
                format!("the DNS change to {to} failed permanently: DNS still points at {back}");
            self.s.active = back;
            self.reset_streaks();
            self.out.push(Action::Transition {
                from: to,
                to: back,
                reason,
            });
        }
        self.s.blocked = Some(Blocked {
            to,
            at_ms: self.now,
        });
        let msg = format!(
            "the DNS change to {to} failed permanently (a retry cannot help): automatic switching is blocked until an operator sets an override"
        );
        self.raise(AlertKind::SwitchBlocked, msg);
    }

    fn switch(&mut self, to: Side, reason: String) {
        let from = self.s.active;
        self.s.active = to;
        self.reset_streaks();
        self.out.push(Action::Switch {
            to,
            reason: reason.clone(),
        });
        self.out.push(Action::Transition { from, to, reason });
    }

    fn reset_streaks(&mut self) {
        self.s.primary_down_streak = 0;
        self.s.primary_up_streak = 0;
    }

    fn round(&mut self, trigger: Trigger, outcome: Outcome, reason: String) {
        self.out.push(Action::RecordRound {
            trigger,
            outcome,
            reason,
        });
    }

    /// Sends an alert; latched kinds only if not already raised in this episode.
    fn raise(&mut self, kind: AlertKind, message: String) {
        if kind.is_latched() && !self.s.alerts.insert(kind) {
            return;
        }
        self.out.push(Action::Alert { kind, message });
    }

    /// Ends a latched alert's episode, if it was raised.
    fn resolve(&mut self, kind: AlertKind, message: String) {
        if self.s.alerts.remove(&kind) {
            self.out.push(Action::Resolve { kind, message });
        }
    }
}
