//! Retention: old no-op rounds and old events are deleted in slices, each slice under its own
//! lock, so the service tasks' writes interleave with a long clean-up instead of waiting for it.

use super::{Store, StoreError};

/// Rounds deleted per slice: small enough that one slice holds the writer lock for a few
/// milliseconds, large enough that a year of backlog is gone in a few hundred slices.
const SLICE: usize = 5000;

impl Store {
    /// Deletes rounds older than `keep_ms` that changed nothing (their votes go with them),
    /// and events older than that except transitions and overrides; rounds that changed DNS
    /// and all DNS changes are kept. Then returns freed pages to the file system and
    /// truncates the WAL, so the file stays bounded under a long run. Returns the number of
    /// rounds deleted. Blocks: the daemon runs it through [`Store::retain`].
    ///
    /// The chain stays verifiable: the links of the deleted rows stay (about 300 bytes each,
    /// against kilobytes of votes), and before anything is deleted a checkpoint signed with
    /// `key` commits to the chain head and names the cut-off (`pruned_before_ms`): the
    /// verifier accepts a missing row only when its link is prunable, older than a prune
    /// checkpoint's cut-off and covered by it.
    pub(super) fn apply_retention(
        &self,
        now_ms: u64,
        keep_ms: u64,
        key: &ed25519_dalek::SigningKey,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms.saturating_sub(keep_ms) as i64;
        self.checkpoint_now(key, now_ms, "prune", Some(cutoff as u64))?;
        let mut total = 0;
        loop {
            // The lock is taken per slice, so the writer lock is never held for long.
            let n = self.lock().execute(
                "DELETE FROM rounds WHERE id IN (
                    SELECT id FROM rounds WHERE at_ms < ?1 AND changed_dns = 0 LIMIT ?2)",
                rusqlite::params![cutoff, SLICE as i64],
            )?;
            total += n;
            if n == 0 {
                break;
            }
        }
        self.lock().execute(
            "DELETE FROM events WHERE at_ms < ?1 AND kind NOT IN ('transition', 'override')",
            [cutoff],
        )?;
        // A spell whose first round was just deleted ends (its rounds since were counted in
        // the closing round the prune checkpoint wrote): the next identical round starts a
        // new one, so no closing round points at a deleted first round.
        self.lock().execute(
            "DELETE FROM open_spells WHERE first_round NOT IN (SELECT id FROM rounds)",
            [],
        )?;
        self.lock()
            .execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(total)
    }
}
