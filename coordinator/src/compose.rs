//! The composition root of the DNS side: turns the validated config's backend into the one
//! running `DnsBackend`. `dns/*` knows nothing of the config, the store or the state
//! machine; this module is where they meet.
//!
//! Validation already read the backend's secret file and built it (once); here the built-in
//! server, which needs the records of each service's persisted side, is made, bound and
//! started, so a restart never serves stale answers.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::dns::{BuiltBackend, DnsBackend, SettingError, builtin};
use crate::failover::Side;
use crate::store::{Store, StoreError};
use crate::supervise::Supervisor;

/// Why the DNS backend could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A service's stored side could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The built-in server refused the records of the services' stored sides.
    #[error(transparent)]
    Builtin(#[from] SettingError),
    /// The built-in server could not bind its `listen` addresses.
    #[error("builtin: cannot listen on {listen:?}: {source}")]
    Listen {
        listen: Vec<SocketAddr>,
        #[source]
        source: std::io::Error,
    },
}

/// The running backend for `config`: the one validation built, or the built-in server,
/// bound and serving the records of each service's stored side.
pub async fn start_backend(
    config: &Config,
    store: &Store,
    sup: &Supervisor,
) -> Result<Arc<dyn DnsBackend>, StartError> {
    Ok(start(config, store, sup).await?.backend)
}

/// The started backend, and the built-in server itself when it is the backend (a reload
/// changes the records it serves for services added or removed).
#[derive(Clone)]
pub struct Started {
    pub backend: Arc<dyn DnsBackend>,
    pub builtin: Option<Arc<builtin::Builtin>>,
}

/// [`start_backend`], keeping the built-in server's handle.
pub async fn start(
    config: &Config,
    store: &Store,
    sup: &Supervisor,
) -> Result<Started, StartError> {
    let built = match &config.dns.built {
        BuiltBackend::Ready(backend) => {
            return Ok(Started {
                backend: backend.clone(),
                builtin: None,
            });
        }
        BuiltBackend::Builtin(built) => (**built).clone(),
    };
    let mut sets = Vec::new();
    for svc in &config.services {
        sets.extend(svc.records_for(stored_side(store, &svc.name)?));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let listen = built.listen.clone();
    let server = Arc::new(builtin::Builtin::new(
        built,
        sets,
        builtin::initial_serial(now),
    )?);
    let (udp, tcp) = builtin::bind(&listen)
        .await
        .map_err(|source| StartError::Listen {
            listen: listen.clone(),
            source,
        })?;
    tracing::info!(?listen, "built-in DNS server listening");
    let shutdown = sup.shutdown().clone();
    sup.spawn(
        "builtin-dns",
        server.clone().serve(udp, tcp, shutdown),
        |_| {},
    );
    Ok(Started {
        backend: server.clone(),
        builtin: Some(server),
    })
}

/// The side a service's DNS points to by its stored state (primary when it has none yet).
pub fn stored_side(store: &Store, service: &str) -> Result<Side, StoreError> {
    Ok(store
        .load_state(service)?
        .map_or(Side::Primary, |s| s.active))
}
