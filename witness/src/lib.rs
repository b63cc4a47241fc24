//! The witness: answers signed vote requests from trusted coordinators with signed votes.
//!
//! Stateless apart from a bounded replay cache and rate-limit buckets. It never touches DNS,
//! and it probes only targets its own allowlist permits, whatever a request says.
//!
//! Entry points: [`config::load`] (file → validated [`Config`]), [`run`] (serve HTTPS until
//! cancelled), [`router`] (the routes, for in-process tests), [`init::init`] (first-start
//! key, certificate and config).

pub mod config;
pub mod init;
mod metrics;
mod ratelimit;
mod server;

pub use config::{AllowRule, Allowlist, Config, Limits, TrustedCoordinator};
pub use server::{AppState, Rejection, SHUTDOWN_GRACE, router, run, server_tls_config};
