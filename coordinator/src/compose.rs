//! The composition root of the DNS side: turns the validated config's backend into the one
//! running `DnsBackend`. `dns/*` knows nothing of the config, the store or the state
//! machine; this module is where they meet.
//!
//! Validation already read the backend's secret file and built it (once); here the built-in
//! server, which needs the records of each service's persisted side, is made, bound and
//! started, so a restart never serves stale answers.

use std::sync::Arc;

use crate::config::Config;
use crate::dns::{BuiltBackend, DnsBackend, builtin};
use crate::failover::Side;
use crate::store::Store;
use crate::supervise::Supervisor;

/// The running backend for `config`: the one validation built, or the built-in server,
/// bound and serving the records of each service's stored side.
pub async fn start_backend(
    config: &Config,
    store: &Store,
    sup: &Supervisor,
) -> Result<Arc<dyn DnsBackend>, String> {
    let built = match &config.dns.built {
        BuiltBackend::Ready(backend) => return Ok(backend.clone()),
        BuiltBackend::Builtin(built) => (**built).clone(),
    };
    let mut sets = Vec::new();
    for svc in &config.services {
        let stored = store.load_state(&svc.name).map_err(|e| e.to_string())?;
        let side = stored.map_or(Side::Primary, |s| s.active);
        sets.extend(svc.records_for(side));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let listen = built.listen.clone();
    let server = Arc::new(
        builtin::Builtin::new(built, sets, builtin::initial_serial(now))
            .map_err(|e| e.to_string())?,
    );
    let (udp, tcp) = builtin::bind(&listen)
        .await
        .map_err(|e| format!("builtin: cannot listen on {listen:?}: {e}"))?;
    tracing::info!(?listen, "built-in DNS server listening");
    let shutdown = sup.shutdown().clone();
    sup.spawn(
        "builtin-dns",
        server.clone().serve(udp, tcp, shutdown),
        |_| {},
    );
    Ok(server)
}
