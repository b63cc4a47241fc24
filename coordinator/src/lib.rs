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
pub mod dashboard;
pub mod demo;
pub mod dns;
pub mod failover;
pub mod hooks;
pub mod init;
pub mod ledger;
pub mod lock;
pub mod maintenance;
pub mod metrics;
pub mod notify;
pub mod online;
pub mod readiness;
pub mod reload;
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
use crate::service::ServiceHandle;
use crate::store::Store;
use crate::supervise::Supervisor;

/// A running coordinator.
pub struct Coordinator {
    pub store: Store,
    /// The services as started; after a reload, [`Coordinator::running`] has the current set.
    pub services: HashMap<String, ServiceHandle>,
    pub api_addr: SocketAddr,
    /// Where the public status page listens (`[status_page]`), if it is configured.
    pub status_addr: Option<SocketAddr>,
    /// Where the maintenance page listens (`[maintenance_page]`): HTTP, HTTPS.
    pub maintenance_page_addrs: (Option<SocketAddr>, Option<SocketAddr>),
    pub metrics: Arc<metrics::Metrics>,
    running: reload::Running,
    tasks: TaskTracker,
    // Held until the coordinator is dropped (the process's end, for the daemon).
    _lock: lock::DatabaseLock,
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

    /// Reads the config file again and applies it, or refuses it (see [`reload`]).
    pub async fn reload(&mut self) -> reload::Outcome {
        self.running.reload().await
    }

    /// The running set (services, config) as of the last reload.
    pub fn running(&self) -> &reload::Running {
        &self.running
    }
}

/// Takes the history database's lock (see [`lock`]), opens the history, starts the DNS
/// backends (or, when `backend` is given, uses it in place of every one: tests that watch
/// the changes), starts every service and the API on `api_listener`.
/// Returns once everything runs.
pub async fn start(
    config: Config,
    api_listener: std::net::TcpListener,
    backend: Option<Arc<dyn DnsBackend>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Coordinator> {
    let lock = lock::DatabaseLock::acquire(&config.database)?;
    start_locked(config, lock, api_listener, backend, shutdown).await
}

/// [`start`] with the database's lock already taken (the daemon takes it before it binds).
pub async fn start_locked(
    config: Config,
    lock: lock::DatabaseLock,
    api_listener: std::net::TcpListener,
    backend: Option<Arc<dyn DnsBackend>>,
    shutdown: CancellationToken,
) -> anyhow::Result<Coordinator> {
    let store = Store::open(&config.database).context("opening the history database")?;
    let tasks = TaskTracker::new();
    let metrics = Arc::new(metrics::Metrics::new());
    let sup = Supervisor::new(tasks.clone(), metrics.clone(), shutdown.clone());
    let dns = match backend {
        Some(backend) => compose::Started::replaced(&config, backend),
        None => compose::start(&config, &store, &sup)
            .await
            .map_err(|e| anyhow::anyhow!("{}: dns: {e}", config.path.display()))?,
    };
    let notifier = notify::Notifier::start(&config.notify, metrics.clone(), &sup);
    sup.spawn(
        "retention",
        service::retention_loop(
            store.clone(),
            metrics.clone(),
            config.retention,
            Arc::new(config.signing_key.clone()),
            shutdown.clone(),
        ),
        |_| {},
    );
    sup.spawn(
        "checkpoint",
        service::checkpoint_loop(
            store.clone(),
            metrics.clone(),
            Arc::new(config.signing_key.clone()),
            config.checkpoint_every,
            shutdown.clone(),
        ),
        |_| {},
    );

    api_listener.set_nonblocking(true)?;
    let api_addr = api_listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(api_listener)?;
    let key_id = config.key_id.clone();
    let dashboard_config = config.dashboard.clone();
    // The public status page binds before the services start: a port in use stops the start.
    let status_page = match &config.status_page {
        Some(c) => {
            let l = std::net::TcpListener::bind(c.listen)
                .with_context(|| format!("status_page.listen: binding {}", c.listen))?;
            l.set_nonblocking(true)?;
            Some((l, c.clone()))
        }
        None => None,
    };
    // The maintenance page binds before the services start too.
    let maintenance_page = dashboard::maintenance_page::Bound::bind(&config.maintenance_page)?;
    let api_tls = config.api_tls.as_ref().map(|t| t.server.clone());
    let (token, read_token, metrics_token) = (
        config.api_token.clone(),
        config.api_read_token.clone(),
        config.metrics_token.clone(),
    );
    let running = reload::Running::start(
        config,
        sup.clone(),
        store.clone(),
        metrics.clone(),
        notifier,
        dns,
    )
    .await?;
    let services = running.handles();
    let state = Arc::new(api::ApiState {
        store: store.clone(),
        live: running.live(),
        metrics: metrics.clone(),
        token,
        read_token,
        metrics_token,
    });
    // The dashboard's pages (`/ui/`) share the API's listener, state and tokens.
    let app = api::router(state.clone()).merge(dashboard::router(state, &dashboard_config));
    // The API listener has the same connection bounds as a witness (shared::listener's
    // defaults): one source address cannot hold more than its share of connections.
    // With `[api] tls_cert_file`, HTTPS only (a plain HTTP request fails the handshake).
    let server = shared::listener::Server::new(
        listener,
        api_tls,
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
    let status_addr = match status_page {
        Some((l, c)) => {
            let addr = l.local_addr()?;
            let app = dashboard::status::router(store.clone(), running.live(), c);
            let server = shared::listener::Server::new(
                tokio::net::TcpListener::from_std(l)?,
                None,
                shared::listener::Limits::default(),
                shared::shutdown::GRACE,
            );
            let sd = shutdown.clone();
            sup.spawn(
                "status-page",
                async move {
                    let serve = server.serve(shared::listener::TowerToHyperService::new(app), sd);
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "status page server failed");
                    }
                },
                |_| {},
            );
            tracing::info!(status_page = %addr, "status page listening");
            Some(addr)
        }
        None => None,
    };
    let maintenance_page_addrs = match maintenance_page {
        Some(b) => b.serve(store.clone(), running.live(), &sup, &shutdown)?,
        None => (None, None),
    };
    tracing::info!(api = %api_addr, services = services.len(), %key_id, "coordinator running");
    Ok(Coordinator {
        store,
        services,
        api_addr,
        status_addr,
        maintenance_page_addrs,
        metrics,
        running,
        tasks,
        _lock: lock,
    })
}

/// Runs until `shutdown` is cancelled, reloading the config file at each message on
/// `reloads` (SIGHUP), then drains with a grace period. `lock` is the database's, taken
/// before anything bound.
pub async fn run(
    config: Config,
    lock: lock::DatabaseLock,
    api_listener: std::net::TcpListener,
    mut reloads: tokio::sync::mpsc::Receiver<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut c = start_locked(config, lock, api_listener, None, shutdown.clone()).await?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = reloads.recv() => {
                c.reload().await;
            }
        }
    }
    c.wait(shared::shutdown::GRACE).await;
    Ok(())
}
