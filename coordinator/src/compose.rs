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
    let built = match &config.dns.built {
        BuiltBackend::Ready(backend) => return Ok(backend.clone()),
        BuiltBackend::Builtin(built) => (**built).clone(),
    };
    let mut sets = Vec::new();
    for svc in &config.services {
        let stored = store.load_state(&svc.name)?;
        let side = stored.map_or(Side::Primary, |s| s.active);
        sets.extend(svc.records_for(side));
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
    Ok(server)
}
