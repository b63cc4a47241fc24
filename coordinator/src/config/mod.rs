//! Coordinator configuration: the raw TOML shape (`deny_unknown_fields`) and its validation
//! into a typed [`Config`], done once, before anything binds. Every error names the file,
//! the key and what was expected; `check` prints them all.
//!
//! One file per section: `coordinator` (`[coordinator]`, `[api]`), `witness` (`[[witness]]`),
//! `dns` (`[dns]` or `[dns.<name>]`), `notify` (`[notify]`, `[[notify.webhook]]`, `[[notify.ntfy]]`, `[[notify.email]]`), `readiness` (`[readiness]`), `dashboard` (`[dashboard]`), `status_page` (`[status_page]`), `maintenance_page` (`[maintenance_page]`), `service` (`[[service]]`) and `probe`
//! (a service's `probe`). Relative paths are relative to the config file's folder
//! ([`shared::config::resolve`]); errors are the kit's [`Diagnostics`].

mod coordinator;
mod dashboard;
mod dns;
mod maintenance_page;
mod notify;
mod probe;
mod readiness;
mod service;
mod status_page;
#[cfg(test)]
mod tests;
mod witness;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::Deserialize;
pub use shared::config::Diagnostics;
use shared::protocol::KeyId;

pub use self::coordinator::{ApiTls, RawApi, RawCoordinator};
pub use self::dashboard::{DEFAULT_SESSION_TTL, DashboardConfig, RawDashboard};
pub use self::dns::{
    Backend, DEFAULT_BACKEND, DnsConfig, RawBackend, RawDns, RawVerify, VerifyConfig,
};
pub use self::maintenance_page::{
    DEFAULT_PAGE as MAINTENANCE_PAGE, MaintenancePageConfig, PageService, RawMaintenancePage,
};
pub use self::notify::{RawEmail, RawNotify, RawNtfy, RawWebhook, WebhookFormat};
pub use self::probe::{RawDnsProbe, RawHttpProbe, RawProbe, RawTcpProbe};
pub use self::readiness::{RawReadiness, ReadinessConfig};
pub use self::service::{
    GATE_FIRST_RETRY, HooksConfig, RawHooks, RawService, RawSide, ServiceConfig, normalize_zone,
    qualify,
};
pub use self::status_page::{RawStatusPage, StatusPageConfig};
pub use self::witness::{
    RawRetiredKey, RawWitness, RetiredKey, WITNESS_TIMEOUT_MARGIN, WitnessConfig,
};

/// The example printed by `quorate-coordinator example-config` and parsed by the tests.
pub const EXAMPLE: &str = include_str!("../../../deploy/examples/coordinator.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub coordinator: RawCoordinator,
    pub api: RawApi,
    #[serde(default)]
    pub witness: Vec<RawWitness>,
    pub dns: RawDns,
    #[serde(default)]
    pub notify: RawNotify,
    #[serde(default)]
    pub readiness: RawReadiness,
    #[serde(default)]
    pub service: Vec<RawService>,
    #[serde(default)]
    pub history: RawHistory,
    #[serde(default)]
    pub dashboard: RawDashboard,
    #[serde(default)]
    pub status_page: Option<RawStatusPage>,
    #[serde(default)]
    pub maintenance_page: Option<RawMaintenancePage>,
}

/// `[history]`: how the tamper-evident history is kept (`ledger`, docs/history.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// How often the coordinator signs a checkpoint of the chain head ("10m" by default);
    /// it also signs one on every DNS change and before retention deletes rows.
    #[serde(default)]
    pub checkpoint_every: Option<String>,
}

/// [`RawHistory::checkpoint_every`] when not set: a truncation of the history's tail can go
/// unnoticed for at most this long (DNS changes are checkpointed at once anyway).
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(600);

/// The validated configuration.
pub struct Config {
    pub path: PathBuf,
    pub signing_key: SigningKey,
    pub key_id: KeyId,
    /// `[coordinator] retired_keys`: keys it signed with before a rotation.
    pub retired_keys: Vec<RetiredKey>,
    pub database: PathBuf,
    pub retention: Duration,
    pub probe_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub api_listen: SocketAddr,
    /// The admin token: every route, actions included.
    pub api_token: String,
    /// The read-only token (`[api] read_token_file`): every `GET`, no action.
    pub api_read_token: Option<String>,
    /// The token `/metrics` asks for; `None`: `/metrics` is open.
    pub metrics_token: Option<String>,
    /// `[api] tls_cert_file` and its key: the API and dashboard speak HTTPS; `None`: HTTP.
    pub api_tls: Option<ApiTls>,
    pub witnesses: Vec<WitnessConfig>,
    pub dns: DnsConfig,
    /// `[notify]`: the channels, the dashboard link, when a pending DNS change is news.
    pub notify: crate::notify::NotifyConfig,
    pub readiness: ReadinessConfig,
    pub services: Vec<ServiceConfig>,
    /// `[history] checkpoint_every`.
    pub checkpoint_every: Duration,
    /// `[dashboard]`: the web pages under `/ui/`.
    pub dashboard: DashboardConfig,
    /// `[status_page]`: the public status page, if one is configured.
    pub status_page: Option<StatusPageConfig>,
    /// `[maintenance_page]`: the 503 page for backup-active services, if configured.
    pub maintenance_page: Option<MaintenancePageConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("path", &self.path)
            .field("key_id", &self.key_id)
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

/// The `[api]` TLS part alone, for the tests of what uses it (`online`).
#[cfg(test)]
pub(crate) fn api_tls_for_tests(cert: &Path, key: &Path) -> Result<ApiTls, String> {
    coordinator::api_tls_for_tests(cert, key)
}

/// Reads, parses and validates the file at `path`; relative paths in it are relative to its
/// folder.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostics::whole_file(path, format!("cannot read: {e}")))?;
    let raw: RawConfig = toml::from_str(&text).map_err(|e| Diagnostics::whole_file(path, e))?;
    let base = shared::config::base_dir(path);
    // Absolute, so that a resolved `command = ["./update-dns"]` is an absolute path too.
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
    validate(raw, path, &base)
}

/// Turns the raw shape into the typed config, reading keys and secrets (relative paths are
/// relative to `base`, the config file's folder). Every file is read once, here: the DNS
/// backend comes out built, from the secret read here.
pub fn validate(raw: RawConfig, path: &Path, base: &Path) -> Result<Config, Diagnostics> {
    let mut e = Diagnostics::new(path);

    let top = coordinator::validate(&raw.coordinator, &raw.api, base, &mut e);
    let retired_keys = witness::retired_keys(
        &raw.coordinator.retired_keys,
        "coordinator.retired_keys",
        top.signing_key.as_ref().map(|k| k.verifying_key()).as_ref(),
        &mut e,
    );
    let mut witnesses = witness::validate(&raw.witness, &mut e);
    let dns = dns::validate(&raw.dns, base, &mut e);
    let notify = notify::validate(&raw.notify, base, &mut e);
    let readiness = readiness::validate(&raw.readiness, &mut e);
    let dashboard = dashboard::validate(&raw.dashboard, &mut e);
    let mut services = service::validate_all(&raw.service, &raw.witness, top.interval, &mut e);
    let names: Vec<String> = raw.service.iter().map(|s| s.name.clone()).collect();
    let status_page = status_page::validate(&raw.status_page, &names, &mut e);
    let page_services: Vec<(String, Vec<String>)> = services
        .iter()
        .map(|s| (s.name.clone(), s.names.clone()))
        .collect();
    let maintenance_page =
        maintenance_page::validate(&raw.maintenance_page, &page_services, base, &mut e);
    if let Some(dns) = &dns {
        dns::bind_services(dns, raw.dns.named, &mut services, &mut e);
    }
    witness::default_timeouts(&mut witnesses, &raw.witness, &services, &mut e);
    let checkpoint_every = match &raw.history.checkpoint_every {
        None => Some(DEFAULT_CHECKPOINT_EVERY),
        Some(t) => e.duration("history.checkpoint_every", t).filter(|d| {
            let ok = (Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(d);
            if !ok {
                e.push(
                    "history.checkpoint_every",
                    format!("expected between 1s and 24h, got {t:?}"),
                );
            }
            ok
        }),
    };

    e.finish(|| {
        let signing_key = top.signing_key?;
        Some(Config {
            path: path.to_owned(),
            key_id: KeyId::of(&signing_key.verifying_key()),
            signing_key,
            retired_keys,
            database: top.database,
            retention: top.retention?,
            probe_roots: top.probe_roots,
            api_listen: top.api_listen?,
            api_token: top.api_token?,
            api_read_token: top.read_token?,
            metrics_token: top.metrics_token?,
            api_tls: top.api_tls?,
            witnesses,
            dns: dns?,
            notify,
            readiness,
            services,
            checkpoint_every: checkpoint_every?,
            dashboard,
            status_page,
            maintenance_page,
        })
    })
}
