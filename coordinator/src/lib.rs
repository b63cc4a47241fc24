//! The coordinator: probes the primary and backup, gathers signed votes from witnesses,
//! decides with a pure state machine (`failover`), carries out the decision (`service`),
//! rewrites DNS (`dns`), keeps history in SQLite (`store`) and serves the HTTP API (`api`).
//!
//! `main.rs` is thin: it parses arguments, loads and validates the config, then calls
//! [`run`]. Tests and the demo call [`start`] in-process.

pub mod api;
pub mod audit;
pub mod cli;
pub mod client;
pub mod compose;
pub mod config;
pub mod demo;
pub mod dns;
pub mod failover;
pub mod hooks;
pub mod metrics;
pub mod notify;
pub mod online;
pub mod readiness;
pub mod service;
pub mod store;
pub mod subprocess;
pub mod supervise;
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
use crate::service::{ServiceDeps, ServiceHandle};
use crate::store::Store;
use crate::supervise::Supervisor;

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
    let metrics = Arc::new(metrics::Metrics::new());
    let sup = Supervisor::new(tasks.clone(), metrics.clone(), shutdown.clone());
    let backend = match backend {
        Some(b) => b,
        None => compose::start_backend(&config, &store, &sup)
            .await
            .map_err(|e| anyhow::anyhow!("{}: dns: {e}", config.path.display()))?,
    };
    let notifier = notify::Notifier::start(config.webhooks.clone(), &sup);
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
    let deps = Arc::new(ServiceDeps {
        store: store.clone(),
        metrics: metrics.clone(),
        notifier,
        backend,
        witnesses,
        prober: Arc::new(shared::probe::Prober::new(config.probe_roots.clone())),
        key: Arc::new(config.signing_key.clone()),
        key_id: config.key_id.clone(),
        authorities: readiness::checks::AuthoritySettings {
            listed: verify_servers.clone(),
            discover: config.dns.discover_ns,
            port: config.dns.ns_port,
            timeout: config.dns.verify_timeout,
        },
        verify_servers,
        verify_timeout: config.dns.verify_timeout,
        readiness: config.readiness.clone(),
    });
    let mut services = HashMap::new();
    for svc in config.services.iter().cloned() {
        let h = service::spawn_service(deps.clone(), svc, &sup).await?;
        services.insert(h.name.clone(), h);
    }
    sup.spawn(
        "retention",
        service::retention_loop(
            store.clone(),
            metrics.clone(),
            config.retention,
            shutdown.clone(),
        ),
        |_| {},
    );

    api_listener.set_nonblocking(true)?;
    let api_addr = api_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(api_listener)?;
    let state = Arc::new(api::ApiState {
        store: store.clone(),
        services: services.clone(),
        witnesses: config.witnesses.clone(),
        metrics: metrics.clone(),
        token: config.api_token.clone(),
        metrics_token: config.metrics_token.clone(),
    });
    let app = api::router(state);
    // The API listener has the same connection bounds as a witness (shared::listener's
    // defaults): one source address cannot hold more than its share of connections.
    let server = shared::listener::Server::new(
        listener,
        None,
        shared::listener::Limits::default(),
        shared::shutdown::GRACE,
    );
    let sd = shutdown.clone();
    sup.spawn(
        "api",
        async move {
            let serve = server.serve(shared::listener::TowerToHyperService::new(app), sd);
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "API server failed");
            }
        },
        |_| {},
    );
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
    c.wait(shared::shutdown::GRACE).await;
    Ok(())
}
