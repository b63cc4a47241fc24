//! The seeded schedule of a fault run: `schedule(seed, duration)` is a pure function, so a
//! failing run's printed seed replays the same faults at the same offsets.
//!
//! The PRNG is splitmix64 (Steele, Lea, Flood 2014), written out here so that the sequence for
//! a seed can never change under us with a dependency's version.
//!
//! Rules, each a bound with its reason:
//! - a fault starts every [`GAP_MIN`]–[`GAP_MAX`] after the previous one's start, so faults
//!   overlap and combine (a witness paused while the primary dies);
//! - each lasts [`LASTS_MIN`]–[`LASTS_MAX`] (a SIGKILLed coordinator stays down at most
//!   [`COORDINATOR_DOWN_MAX`]: the run is about what it does when it comes back);
//! - at most [`MAX_CONCURRENT`] at once, and never two on the same resource at once (the
//!   primary's web server, one witness, the coordinator, BIND, the network filters): each
//!   fault's repair undoes exactly that fault;
//! - every fault is repaired by `duration`.

use std::time::Duration;

use super::record::{FaultKind, LossOn};

pub const GAP_MIN: Duration = Duration::from_secs(2);
pub const GAP_MAX: Duration = Duration::from_secs(15);
pub const LASTS_MIN: Duration = Duration::from_secs(2);
pub const LASTS_MAX: Duration = Duration::from_secs(25);
pub const COORDINATOR_DOWN_MAX: Duration = Duration::from_secs(5);
pub const MAX_CONCURRENT: usize = 3;

/// One planned fault: applied `at` after the run's start, repaired `lasts` later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultStep {
    pub at: Duration,
    pub lasts: Duration,
    pub kind: FaultKind,
}

impl FaultStep {
    pub fn end(&self) -> Duration {
        self.at + self.lasts
    }
}

/// splitmix64.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is irrelevant at these ranges).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_millis(self.range(lo.as_millis() as u64, hi.as_millis() as u64))
    }
}

/// What a fault occupies while it lasts (two faults on one resource never overlap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    PrimaryWeb,
    Witness(u8),
    Coordinator,
    Bind,
    /// nftables: path cuts and loss.
    Filters,
}

pub fn resource(kind: FaultKind) -> Resource {
    match kind {
        FaultKind::PrimaryWebDown | FaultKind::PrimaryWeb500 | FaultKind::PrimaryWebHang => {
            Resource::PrimaryWeb
        }
        FaultKind::WitnessLinkDown(i) | FaultKind::WitnessPaused(i) => Resource::Witness(i),
        FaultKind::CoordinatorKilled => Resource::Coordinator,
        FaultKind::BindStopped => Resource::Bind,
        FaultKind::BackupPrimaryCut | FaultKind::Loss { .. } => Resource::Filters,
    }
}

/// A random fault kind (the families equally likely; a witness and a loss's host and share
/// drawn after).
fn pick(rng: &mut SplitMix64) -> FaultKind {
    let witness = |rng: &mut SplitMix64| rng.range(1, 3) as u8;
    match rng.range(0, 8) {
        0 => FaultKind::PrimaryWebDown,
        1 => FaultKind::PrimaryWeb500,
        2 => FaultKind::PrimaryWebHang,
        3 => FaultKind::BackupPrimaryCut,
        4 => FaultKind::WitnessLinkDown(witness(rng)),
        5 => FaultKind::WitnessPaused(witness(rng)),
        6 => FaultKind::CoordinatorKilled,
        7 => FaultKind::BindStopped,
        _ => {
            let on = match rng.range(0, 2) {
                0 => LossOn::Primary,
                1 => LossOn::Backup,
                _ => LossOn::Witness(witness(rng)),
            };
            // 10–40 %: enough to fail probes and votes now and then, not a cut.
            FaultKind::Loss {
                on,
                percent: rng.range(10, 40) as u8,
            }
        }
    }
}

/// The faults of a run of `duration` for `seed`, ordered by start.
pub fn schedule(seed: u64, duration: Duration) -> Vec<FaultStep> {
    let mut rng = SplitMix64::new(seed);
    let mut out: Vec<FaultStep> = Vec::new();
    let mut at = rng.duration(GAP_MIN, GAP_MAX);
    while at + LASTS_MIN <= duration {
        let kind = pick(&mut rng);
        let max = if kind == FaultKind::CoordinatorKilled {
            COORDINATOR_DOWN_MAX
        } else {
            LASTS_MAX
        };
        let lasts = rng.duration(LASTS_MIN, max).min(duration - at);
        let active: Vec<&FaultStep> = out.iter().filter(|s| s.end() > at).collect();
        // A fault that would collide is skipped, not moved: the draws stay the same for the
        // rest of the schedule either way.
        if active.len() < MAX_CONCURRENT
            && !active.iter().any(|s| resource(s.kind) == resource(kind))
        {
            out.push(FaultStep { at, lasts, kind });
        }
        at += rng.duration(GAP_MIN, GAP_MAX);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs for seed 1234567 of the reference C implementation
        // (prng.di.unimi.it/splitmix64.c).
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let d = Duration::from_secs(300);
        assert_eq!(schedule(42, d), schedule(42, d));
        assert_ne!(schedule(42, d), schedule(43, d));
    }

    #[test]
    fn every_fault_is_bounded_repaired_in_time_and_alone_on_its_resource() {
        for seed in 0..200 {
            let d = Duration::from_secs(300);
            let s = schedule(seed, d);
            assert!(!s.is_empty(), "seed {seed}: no fault in 300 s");
            // One start per GAP_MIN at most.
            assert!(s.len() as u128 <= d.as_millis() / GAP_MIN.as_millis());
            for (i, f) in s.iter().enumerate() {
                assert!(f.end() <= d, "seed {seed}: {f:?} outlives the run");
                assert!(f.lasts <= LASTS_MAX && f.lasts > Duration::ZERO, "{f:?}");
                if f.kind == FaultKind::CoordinatorKilled {
                    assert!(f.lasts <= COORDINATOR_DOWN_MAX, "{f:?}");
                }
                let overlapping: Vec<&FaultStep> =
                    s[..i].iter().filter(|g| g.end() > f.at).collect();
                assert!(overlapping.len() < MAX_CONCURRENT, "seed {seed}: {f:?}");
                assert!(
                    overlapping
                        .iter()
                        .all(|g| resource(g.kind) != resource(f.kind)),
                    "seed {seed}: {f:?} collides with {overlapping:?}"
                );
            }
            assert!(s.windows(2).all(|w| w[0].at < w[1].at));
        }
    }

    #[test]
    fn every_kind_of_fault_comes_up() {
        let mut families = BTreeSet::new();
        for seed in 0..50 {
            for f in schedule(seed, Duration::from_secs(300)) {
                families.insert(f.kind.family());
            }
        }
        assert_eq!(families.len(), 9, "{families:?}");
    }
}
