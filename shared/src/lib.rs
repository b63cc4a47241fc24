//! Quorate's common library: the only types that cross hosts (the witness protocol), their
//! signing and verification, key files, TLS helpers, the probes that witness and coordinator
//! both run, and the daemons' shared shutdown handling.
//!
//! `protocol`, `probe::spec` and `hostname` are pure (no I/O, no clock: callers pass `now`);
//! `config` is the config kit both binaries use (diagnostics, durations, paths); `keys`
//! reads and writes key files; `probe::runner` talks to the network; `tls` builds
//! rustls configs and certificates; `listener` is the connection-limited accept loop both
//! daemons serve HTTP on; `logging` sets up both binaries' logs; `shutdown` holds the signal handler and the grace period.
//! Imports between them never form a cycle: `protocol` → `probe::spec` → `hostname`;
//! `probe::runner` → `probe::spec`, `tls`; `tls` → `hostname`.

pub mod cli_docs;
pub mod config;
pub mod hostname;
pub mod keys;
pub mod listener;
pub mod logging;
pub mod probe;
pub mod protocol;
pub mod shutdown;
pub mod tls;

/// Milliseconds since the Unix epoch, the protocol's only notion of time.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Installs ring as the process-wide rustls crypto provider. Call first thing in every
/// `main` and test harness; a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
