//! The dry-run backend: logs each change and keeps the records in memory, so `current`
//! answers consistently with what was "applied". Nothing leaves the process.

use std::sync::Mutex;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    Change, DnsBackend, DnsError, Precheck, RecordSet, SettingError, describe_sets, precheck,
};

/// `[dns] type = "dryrun"` (no settings).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Records in memory. An RRset it has never been told about is taken to be whatever a change
/// says it is (`from`); after that, changes must start from what it holds, like a real server.
#[derive(Debug, Default)]
pub struct DryRun {
    records: Mutex<Vec<RecordSet>>,
}

pub fn build(_config: &Config) -> Result<DryRun, SettingError> {
    Ok(DryRun::default())
}

impl DryRun {
    /// Starts with these records known.
    pub fn with_records(records: Vec<RecordSet>) -> DryRun {
        DryRun {
            records: Mutex::new(records),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordSet>> {
        // A poisoned lock only means another thread panicked mid-update of a Vec; the data is
        // still a valid Vec.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(records: &[RecordSet], like: &RecordSet) -> Option<RecordSet> {
        records.iter().find(|r| r.same_key(like)).cloned()
    }
}

impl DnsBackend for DryRun {
    fn kind(&self) -> &'static str {
        "dryrun"
    }

    fn current<'a>(
        &'a self,
        _zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        let records = self.lock();
        let out = like
            .iter()
            .map(|l| {
                Self::lookup(&records, l)
                    .unwrap_or_else(|| RecordSet::new(l.name.clone(), l.rtype, 0, Vec::new()))
            })
            .collect();
        Box::pin(async move { Ok(out) })
    }

    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<(), DnsError>> {
        let result = (|| {
            change.validate()?;
            let mut records = self.lock();
            let current: Vec<RecordSet> = change
                .from
                .iter()
                .map(|f| Self::lookup(&records, f).unwrap_or_else(|| f.clone()))
                .collect();
            if precheck(change, &current, false)? == Precheck::AlreadyApplied {
                return Ok(());
            }
            records.retain(|r| !change.to.iter().any(|t| t.same_key(r)));
            records.extend(change.to.iter().cloned());
            tracing::info!(
                zone = %change.zone,
                from = %describe_sets(&change.from),
                to = %describe_sets(&change.to),
                "dry run: DNS change not sent anywhere"
            );
            Ok(())
        })();
        Box::pin(async move { result })
    }

    fn check<'a>(
        &'a self,
        zone: &'a str,
        _expected: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<String, DnsError>> {
        let line = format!(
            "dry run: zone {zone} exists only in this process's memory; nothing is sent anywhere"
        );
        Box::pin(async move { Ok(line) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dns::RecordType;

    fn set(ttl: u32, a: &str) -> Vec<RecordSet> {
        vec![RecordSet::new(
            "www.example.test.",
            RecordType::A,
            ttl,
            vec![a.parse().unwrap()],
        )]
    }

    #[tokio::test]
    async fn keeps_records_and_reports_conflicts() {
        let d = build(&Config::default()).unwrap();
        let c = Change {
            zone: "example.test.".into(),
            from: set(300, "192.0.2.1"),
            to: set(60, "192.0.2.2"),
        };
        d.apply(&c).await.unwrap();
        assert_eq!(d.current("example.test.", &c.from).await.unwrap(), c.to);
        // Applying it again is a no-op; a change from a stale state is a conflict.
        d.apply(&c).await.unwrap();
        let stale = Change {
            zone: "example.test.".into(),
            from: set(300, "192.0.2.1"),
            to: set(60, "192.0.2.3"),
        };
        assert!(matches!(
            d.apply(&stale).await,
            Err(DnsError::Conflict { .. })
        ));
        assert_eq!(d.current("example.test.", &c.from).await.unwrap(), c.to);
    }
}
