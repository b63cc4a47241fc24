//! Quorate's common library: the only types that cross hosts (the witness protocol), their
//! signing and verification, key files, TLS helpers, and the probes that witness and
//! coordinator both run.
//!
//! `protocol` is pure (no I/O, no clock: callers pass `now`); `keys` reads and writes key
//! files; `probe` talks to the network; `tls` builds rustls configs and certificates.

pub mod config;
pub mod keys;
pub mod probe;
pub mod protocol;
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
