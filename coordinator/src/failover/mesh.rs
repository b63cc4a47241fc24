//! Mesh-speed detection, the pure half (issue #20; README "How it decides", and the
//! arithmetic with the measurements in `docs/benchmarks.md`).
//!
//! A service has n + 1 vantage points: the coordinator's own probe and its n witnesses. Each
//! probes once per interval, at its own evenly spread phase ([`vantage_offsets`]), so a death is
//! first seen within interval / (n + 1) instead of within one interval. The first "down" from
//! any vantage point starts a **confirmation round** at once ([`Triggers`]): the coordinator
//! probes and asks every witness in parallel and `step` decides on those fresh votes with the
//! usual rules. A confirmation round is over as soon as its outcome can no longer change
//! ([`settled`]), not when its slowest witness times out.
//!
//! `fail_after` keeps its meaning and its protection in time: the decision needs `fail_after`
//! consecutive rounds that see the primary down, one interval apart; only the first of them
//! starts earlier, at the first "down" seen from anywhere.
//!
//! Pure: no clock (times come in as milliseconds), no I/O.

use super::{Observation, Policy, Trigger, decide_round};

/// Where each vantage point probes within the interval, in ms after the service's own phase:
/// the coordinator (index 0) at 0, witness `j` (index `j + 1`) at `(j + 1) · interval / (n + 1)`.
pub fn vantage_offsets(witnesses: usize, interval_ms: u64) -> Vec<u64> {
    let points = witnesses as u64 + 1;
    (0..points).map(|k| k * interval_ms / points).collect()
}

/// Decides when a vantage point's "down" starts a confirmation round.
///
/// - Only a vantage point's first "down" after an "up" (or after nothing) starts one: a witness
///   that keeps answering "down" alone (its own path to the primary is cut) starts one round,
///   whose other vantage points outvote it, and none after that until it has seen the primary
///   up again.
/// - The coordinator's own "down" always does: it turns the round the coordinator holds every
///   interval anyway into a confirmation, so it adds no probe.
/// - A witness's "down" starts at most one round per interval: a flapping witness cannot make
///   the coordinator ask everyone more than once an interval on its account.
/// - A "down" seen while a round is in flight (or the service is not primary-active in
///   automatic mode) starts nothing; one seen while a round was in flight is remembered and
///   may start one when that round ends ([`Triggers::take_missed`]).
#[derive(Debug, Clone)]
pub struct Triggers {
    last: Vec<Option<bool>>,
    interval_ms: u64,
    last_witness_start: Option<u64>,
    last_overdue_start: Option<u64>,
    missed: bool,
}

/// Whether a round can start now, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// Primary-active, automatic, nothing in flight: a "down" starts a round.
    Yes,
    /// A round is in flight or scheduled: a "down" is remembered for when it ends.
    Busy,
    /// Backup-active, pinned or blocked: confirmation rounds do not apply.
    No,
}

impl Triggers {
    pub fn new(witnesses: usize, interval_ms: u64) -> Triggers {
        Triggers {
            last: vec![None; witnesses + 1],
            interval_ms,
            last_witness_start: None,
            last_overdue_start: None,
            missed: false,
        }
    }

    /// Notes vantage point `v`'s verdict (`0` the coordinator, `j + 1` witness `j`) at `now`;
    /// true when it starts a confirmation round now.
    pub fn observe(&mut self, v: usize, up: bool, now: u64, armed: Armed) -> bool {
        let Some(slot) = self.last.get_mut(v) else {
            return false;
        };
        let prev = slot.replace(up);
        if up || prev == Some(false) {
            return false;
        }
        match armed {
            Armed::No => false,
            Armed::Busy => {
                self.missed = true;
                false
            }
            Armed::Yes if v == 0 => true,
            Armed::Yes => self.witness_may_start(now),
        }
    }

    /// Vantage point `v`'s probe has not answered within its usual time ([`overdue_after`]):
    /// for starting a round this counts as its "down" (a timeout-bound fault — a link down, a
    /// hung server — is then confirmed one probe timeout after this, not after the slowest
    /// vantage point's own timeout), always within the one-per-interval bound since it is a
    /// suspicion, not a verdict (a bound of its own: a false suspicion does not hold back a
    /// witness's real "down"). It never decides anything: the round's votes do.
    pub fn overdue(&mut self, v: usize, now: u64, armed: Armed) -> bool {
        let Some(slot) = self.last.get_mut(v) else {
            return false;
        };
        let prev = slot.replace(false);
        if prev == Some(false) {
            return false;
        }
        match armed {
            Armed::No => false,
            Armed::Busy => {
                self.missed = true;
                false
            }
            Armed::Yes => may_start(&mut self.last_overdue_start, now, self.interval_ms),
        }
    }

    /// After a round ends: true when a "down" seen during it should start another now (within
    /// the one-per-interval bound).
    pub fn take_missed(&mut self, now: u64, armed: Armed) -> bool {
        let missed = std::mem::take(&mut self.missed);
        missed && armed == Armed::Yes && self.witness_may_start(now)
    }

    fn witness_may_start(&mut self, now: u64) -> bool {
        may_start(&mut self.last_witness_start, now, self.interval_ms)
    }
}

/// One start per interval: true (and noted) when the last start is an interval ago.
fn may_start(last: &mut Option<u64>, now: u64, interval_ms: u64) -> bool {
    match *last {
        Some(t) if now.saturating_sub(t) < interval_ms => false,
        _ => {
            *last = Some(now);
            true
        }
    }
}

/// Overdue suspicions allowed to start a confirmation round, coordinator-wide: at most
/// `per_second` in any one-second window (fixed windows, from the first start in each).
///
/// An overdue probe is a suspicion, not a verdict, and it has two causes that look alike: a
/// primary that stopped answering, and a coordinator (or a network near it) too busy to hear
/// answers in their usual time. In the second case every service's probes go overdue at once,
/// and each confirmation round adds n + 1 probes to the load that made them late. The bound
/// stops that feedback. A suspicion refused here changes nothing else: the probe's own
/// timeout, or its "down", still starts the round (one probe timeout later at most), and a
/// real "down" verdict is never refused. Sized by [`OverdueBudget::for_services`].
#[derive(Debug, Clone)]
pub struct OverdueBudget {
    per_second: u32,
    window_start: Option<u64>,
    used: u32,
}

impl OverdueBudget {
    /// The fewest starts per second, whatever the number of services: a primary whose death
    /// is first seen as an overdue probe by a handful of services still gets their rounds at
    /// once.
    pub const MIN_PER_SECOND: u32 = 8;
    /// One start per second for every this many probes a second the services make in steady
    /// state (their vantage points over their intervals): about 5 % more probes at most.
    pub const PROBES_PER_START: u64 = 80;

    pub fn new(per_second: u32) -> OverdueBudget {
        OverdueBudget {
            per_second,
            window_start: None,
            used: 0,
        }
    }

    /// Sized for services that together make `probes_per_second` probes and requests a
    /// second in steady state.
    pub fn for_services(probes_per_second: u64) -> OverdueBudget {
        let scaled = probes_per_second.div_ceil(Self::PROBES_PER_START);
        OverdueBudget::new(
            u32::try_from(scaled)
                .unwrap_or(u32::MAX)
                .max(Self::MIN_PER_SECOND),
        )
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// True (and counted) when a suspicion at `now` (ms) may start a round.
    pub fn take(&mut self, now: u64) -> bool {
        match self.window_start {
            Some(t) if now.saturating_sub(t) < 1000 => {}
            _ => {
                self.window_start = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.per_second {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

/// How long a vantage point's probe may take before it is overdue: twice the slowest of its
/// `recent` answer times (ms), at least [`MIN_OVERDUE_MS`]; `None` (never overdue) with fewer
/// than [`MIN_SAMPLES`] answers to judge by (a silent witness has none), or when that is not
/// shorter than its `timeout_ms`.
pub fn overdue_after(recent: &[u64], timeout_ms: u64) -> Option<u64> {
    if recent.len() < MIN_SAMPLES {
        return None;
    }
    let slowest = recent.iter().copied().max().unwrap_or(0);
    let after = slowest.saturating_mul(2).max(MIN_OVERDUE_MS);
    (after < timeout_ms).then_some(after)
}

/// The shortest time before a probe is overdue.
pub const MIN_OVERDUE_MS: u64 = 100;
/// Answers needed before a vantage point's probe can be overdue.
pub const MIN_SAMPLES: usize = 3;
/// Answer times kept per vantage point.
pub const RECENT: usize = 8;

/// Whether a primary-down confirmation round is decided: every way its `live` outstanding
/// witnesses could still answer (up, down, or not at all) gives the outcome `obs` gives now.
/// `obs` counts every outstanding witness as missing; those known to be silent (they missed
/// their recent requests) are not `live` and are taken as missing. `decisive` is false when
/// the round cannot reach `fail_after` (the votes then decide nothing, so nothing is awaited).
///
/// So a veto ends the round at once, as does a primary that answers our own probe; a quorum
/// of "down" ends it once every witness still outstanding is known silent; a witness that is
/// merely slow holds it, since its answer could be a veto.
pub fn settled(policy: &Policy, obs: &Observation, live: u32, decisive: bool) -> bool {
    if !decisive || obs.primary_up {
        return true;
    }
    let live = live.min(obs.votes.missing);
    let now = decide_round(policy, Trigger::PrimaryDown, obs);
    (0..=live).all(|up| {
        (0..=live - up).all(|down| {
            let mut o = *obs;
            o.votes.up += up;
            o.votes.down += down;
            o.votes.missing -= up + down;
            decide_round(policy, Trigger::PrimaryDown, &o) == now
        })
    })
}

#[cfg(test)]
mod tests;
