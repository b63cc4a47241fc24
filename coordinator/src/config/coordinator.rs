//! The `[coordinator]` and `[api]` tables: the signing key, the history file, the default
//! interval, retention, extra probe CAs, the API's address and its bearer token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::Deserialize;
use shared::config::{Diagnostics, resolve};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoordinator {
    /// The coordinator's ed25519 signing key (PKCS#8 PEM, mode 0600).
    pub key_file: PathBuf,
    /// The SQLite history file.
    pub database: PathBuf,
    /// Default probe interval for services ("1s").
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How long rounds that changed nothing are kept ("90d").
    #[serde(default = "default_retention")]
    pub retention: String,
    /// Extra CA certificates (PEM) trusted by HTTPS probes of primary and backup.
    #[serde(default)]
    pub probe_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: String,
    /// File holding the bearer token (mode 0600).
    pub token_file: PathBuf,
}

fn default_interval() -> String {
    "1s".into()
}
fn default_retention() -> String {
    "90d".into()
}

/// The two tables validated; `None` where a value was wrong (and recorded).
pub(super) struct Top {
    pub signing_key: Option<SigningKey>,
    pub interval: Option<Duration>,
    pub retention: Option<Duration>,
    pub database: PathBuf,
    pub probe_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub api_listen: Option<SocketAddr>,
    pub api_token: Option<String>,
}

/// Minimum length of the API's bearer token.
const MIN_TOKEN_LEN: usize = 16;

pub(super) fn validate(c: &RawCoordinator, api: &RawApi, base: &Path, e: &mut Diagnostics) -> Top {
    let signing_key = match shared::keys::load_signing_key(&resolve(base, &c.key_file)) {
        Ok(k) => Some(k),
        Err(err) => {
            e.push("coordinator.key_file", err);
            None
        }
    };
    let interval = e.duration("coordinator.interval", &c.interval);
    let retention = e.duration("coordinator.retention", &c.retention);
    let mut probe_roots = Vec::new();
    if let Some(ca) = &c.probe_ca_file {
        match shared::tls::read_cert_bundle(&resolve(base, ca)) {
            Ok(certs) => probe_roots = certs,
            Err(m) => e.push("coordinator.probe_ca_file", m),
        }
    }

    let api_listen = api.listen.parse::<SocketAddr>().ok();
    if api_listen.is_none() {
        e.expected(
            "api.listen",
            "an address like \"127.0.0.1:8080\"",
            &api.listen,
        );
    }
    let api_token = match shared::keys::read_secret_file(&resolve(base, &api.token_file)) {
        Ok(t) if t.len() >= MIN_TOKEN_LEN => Some(t),
        Ok(_) => {
            e.push("api.token_file", "the token must be at least 16 characters");
            None
        }
        Err(err) => {
            e.push("api.token_file", err);
            None
        }
    };
    Top {
        signing_key,
        interval,
        retention,
        database: resolve(base, &c.database),
        probe_roots,
        api_listen,
        api_token,
    }
}
