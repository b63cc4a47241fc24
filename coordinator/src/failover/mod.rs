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

pub mod mesh;
mod vocab;

pub use vocab::*;

#[cfg(test)]
mod tests;

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

/// What `step` decides for one vote round on its own: the outcome of a `trigger` round with
/// observation `obs` under `policy`, when no hold is in force (not just restarted, not
/// blocked, not damped). `None` when `trigger` is not a vote round, or when `obs` could not
/// have triggered one (a primary-down round whose observation says the primary is up).
///
/// The auditor (`ledger`) and the replay use it to re-derive a recorded outcome from its
/// verified votes; a recorded `startup-hold`, `blocked` or `damped` stands where this says
/// `failover` or `failback` (those holds depend on state the round does not record).
pub fn decide_round(policy: &Policy, trigger: Trigger, obs: &Observation) -> Option<Outcome> {
    let mut s = match trigger {
        Trigger::PrimaryDown => State::new(Side::Primary),
        Trigger::PrimaryUp => State::new(Side::Backup),
        Trigger::Override | Trigger::ManualFailback => return None,
    };
    s.ticks_since_start = MIN_TICKS_BEFORE_SWITCH;
    // One probe short of the threshold: this observation is the one that reaches it.
    s.primary_down_streak = policy.fail_after.saturating_sub(1);
    s.primary_up_streak = policy.recover_after.saturating_sub(1);
    if trigger == Trigger::PrimaryDown {
        s.primary_up_streak = 0;
    } else {
        s.primary_down_streak = 0;
    }
    let (_, actions) = step(policy, &s, Event::Tick(*obs), 0);
    actions.into_iter().find_map(|a| match a {
        Action::RecordRound { outcome, .. } => Some(outcome),
        _ => None,
    })
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
            // Not "DNS still points at {back}": after a conflict the server may serve a
            // third address; the dns-failed event and the status say what it answers.
            let reason = format!(
                "the DNS change to {to} failed permanently; Quorate acts as if {back} were active, the records are as the server has them (see the dns-failed event)"
            );
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
