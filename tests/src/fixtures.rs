//! Fixtures shared by the DNS backend tests: record sets, changes, and secret files written
//! with mode 0600 the way an operator would.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;

use coordinator::dns::{Change, DnsBackend, RecordSet, RecordType};

/// The zone every backend test uses.
pub const ZONE: &str = "example.test.";

/// One RRset from address strings (test input: a bad literal is a bug in the test).
pub fn set(name: &str, rtype: RecordType, ttl: u32, addrs: &[&str]) -> RecordSet {
    let addrs = addrs
        .iter()
        .map(|a| a.parse::<IpAddr>().expect("a test address literal"))
        .collect();
    RecordSet::new(name, rtype, ttl, addrs)
}

/// `www` on the primary: one A and one AAAA, TTL 300.
pub fn www_primary() -> Vec<RecordSet> {
    vec![
        set("www.example.test.", RecordType::A, 300, &["192.0.2.10"]),
        set(
            "www.example.test.",
            RecordType::AAAA,
            300,
            &["2001:db8::10"],
        ),
    ]
}

/// `www` on the backup: two A and one AAAA, with the lower failover TTL 60.
pub fn www_backup() -> Vec<RecordSet> {
    vec![
        set(
            "www.example.test.",
            RecordType::A,
            60,
            &["198.51.100.10", "198.51.100.11"],
        ),
        set(
            "www.example.test.",
            RecordType::AAAA,
            60,
            &["2001:db8:b::10"],
        ),
    ]
}

/// A change of [`ZONE`].
pub fn change(from: Vec<RecordSet>, to: Vec<RecordSet>) -> Change {
    Change {
        zone: ZONE.into(),
        from,
        to,
    }
}

/// A secret in its own temporary folder, mode 0600; the folder goes with the value.
#[derive(Debug)]
pub struct SecretFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Writes `text` to a new 0600 file called `name`.
pub fn secret_file(name: &str, text: &str) -> SecretFile {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .expect("writing a secret file");
    SecretFile { _dir: dir, path }
}

/// Asserts that `backend` reads back exactly `want` (the names and types in it) from [`ZONE`].
pub async fn assert_current(backend: &dyn DnsBackend, want: &[RecordSet]) {
    let got = backend
        .current(ZONE, want)
        .await
        .unwrap_or_else(|e| panic!("{}: reading the records back failed: {e}", backend.kind()));
    assert_eq!(got, want, "{}: the records read back", backend.kind());
}

/// `sets` with every TTL set to `ttl` (for providers whose minimum TTL is above the fixtures').
pub fn with_ttl(mut sets: Vec<RecordSet>, ttl: u32) -> Vec<RecordSet> {
    for s in &mut sets {
        s.ttl = ttl;
    }
    sets
}

/// Applies `change` the way the DNS worker does: a transient error is tried again, at most
/// `attempts` times in all (no waiting: the stand-ins' throttles count requests, not time);
/// gives the outcome and the transient errors seen on the way.
/// Applies like the DNS worker: a retryable error is tried again after a backoff (50 ms,
/// doubling) and never sooner than the provider's `Retry-After`, at most `tries` times; the
/// number of the try that applied it.
pub async fn apply_retrying(
    b: &dyn DnsBackend,
    c: &Change,
    tries: u32,
) -> Result<u32, coordinator::dns::DnsError> {
    let mut delay = std::time::Duration::from_millis(50);
    for attempt in 1..tries {
        match b.apply(c).await {
            Ok(()) => return Ok(attempt),
            // The wait is what is under test (Retry-After honoured), not a synchronisation.
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(e.retry_after().unwrap_or(delay).max(delay)).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    b.apply(c).await.map(|()| tries)
}

pub async fn apply_with_retries(
    backend: &dyn DnsBackend,
    change: &Change,
    attempts: usize,
) -> (Result<(), coordinator::dns::DnsError>, Vec<String>) {
    let mut transient = Vec::new();
    for _ in 1..attempts {
        match backend.apply(change).await {
            Err(e) if e.is_retryable() => transient.push(e.to_string()),
            other => return (other, transient),
        }
    }
    (backend.apply(change).await, transient)
}
