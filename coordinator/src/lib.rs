//! The coordinator: probes the primary and backup, gathers signed votes from witnesses,
//! decides with a pure state machine (`failover`), carries out the decision (`driver`),
//! rewrites DNS (`dns`), keeps history in SQLite (`store`) and serves the HTTP API (`api`).
//!
//! `main.rs` is thin: it parses arguments, loads and validates the config, then calls
//! [`run`]. Tests and the demo call [`start`] in-process.

pub mod api;
pub mod compose;
pub mod config;
pub mod demo;
pub mod dns;
pub mod driver;
pub mod failover;
pub mod hooks;
pub mod metrics;
pub mod notify;
pub mod store;
pub mod verify;
pub mod witnesses;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::dns::DnsBackend;
use crate::driver::{Runtime, ServiceHandle};
use crate::store::Store;

/// A running coordinator.
pub struct Coordinator {
    pub store: Store,
    pub services: HashMap<String, ServiceHandle>,
    pub api_addr: SocketAddr,
    pub metrics: Arc<metrics::Metrics>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("api_addr", &self.api_addr)
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Waits until every task has stopped (after `shutdown` is cancelled), at most `grace`.
    pub async fn wait(self, grace: Duration) {
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within {grace:?}");
        }
    }
}

/// Opens the history, builds the DNS backend (unless one is given), starts every service
/// and the API on `api_listener`. Returns once everything runs.
pub async fn start(
    config: Config,
    api_listener: std::net::TcpListener,
    backend: Option<Arc<dyn DnsBackend>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Coordinator> {
    let store = Store::open(&config.database).context("opening the history database")?;
    let tasks = TaskTracker::new();
    let backend = match backend {
        Some(b) => b,
        None => compose::start_backend(&config, &store, &tasks, shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{}: dns: {e}", config.path.display()))?,
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let notifier = notify::Notifier::start(config.webhooks.clone(), shutdown.clone());
    let mut witnesses = Vec::new();
    for w in &config.witnesses {
        if w.cert_sha256.is_none() {
            tracing::info!(witness = %w.name, "witness TLS certificate not pinned; votes are still verified with its ed25519 key");
        }
        witnesses.push(Arc::new(
            witnesses::WitnessClient::new(w.clone()).map_err(anyhow::Error::msg)?,
        ));
    }
    let mut verify_servers = config.dns.verify_servers.clone();
    if verify_servers.is_empty() {
        verify_servers = config.dns.default_verify_servers();
    }
    let rt = Arc::new(Runtime {
        store: store.clone(),
        metrics: metrics.clone(),
        notifier,
        backend,
        witnesses,
        prober: Arc::new(shared::probe::Prober::new(config.probe_roots.clone())),
        key: Arc::new(config.signing_key.clone()),
        key_id: config.key_id.clone(),
        verify_servers,
        verify_timeout: config.dns.verify_timeout,
    });
    let mut services = HashMap::new();
    for svc in config.services.iter().cloned() {
        let h = driver::spawn_service(rt.clone(), svc, &tasks, shutdown.clone()).await?;
        services.insert(h.name.clone(), h);
    }
    tasks.spawn(driver::retention_loop(
        store.clone(),
        config.retention,
        shutdown.clone(),
    ));

    api_listener.set_nonblocking(true)?;
    let api_addr = api_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(api_listener)?;
    let state = Arc::new(api::ApiState {
        store: store.clone(),
        services: services.clone(),
        witnesses: config.witnesses.clone(),
        metrics: metrics.clone(),
        token: config.api_token.clone(),
    });
    let app = api::router(state);
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(async move { sd.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "API server failed");
        }
    });
    tracing::info!(api = %api_addr, services = services.len(), key_id = %config.key_id, "coordinator running");
    Ok(Coordinator {
        store,
        services,
        api_addr,
        metrics,
        tasks,
    })
}

/// Runs until `shutdown` is cancelled, then drains with a grace period.
pub async fn run(
    config: Config,
    api_listener: std::net::TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let c = start(config, api_listener, None, shutdown.clone()).await?;
    shutdown.cancelled().await;
    c.wait(Duration::from_secs(10)).await;
    Ok(())
}
