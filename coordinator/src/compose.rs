//! The composition root of the DNS side: turns the validated config's backends into running
//! `DnsBackend`s, by name. `dns/*` knows nothing of the config, the store or the state
//! machine; this module is where they meet.
//!
//! Validation already read each backend's secret and built it (once); here the built-in
//! servers, which need the records of each service's persisted side, are made, bound and
//! started, so a restart never serves stale answers. Built-in backends with the same
//! `listen` addresses are one server answering for all their zones.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::dns::{BuiltBackend, DnsBackend, SettingError, builtin};
use crate::failover::Side;
use crate::store::{Store, StoreError};
use crate::supervise::Supervisor;

/// Why the DNS backends could not be started.
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

/// The started backends by name, and the built-in servers among them (a reload changes the
/// records they serve for services added or removed).
#[derive(Clone, Default)]
pub struct Started {
    pub backends: BTreeMap<String, Arc<dyn DnsBackend>>,
    /// Each built-in server, with the names of the backends (zones) it serves.
    pub builtins: Vec<(Arc<builtin::Builtin>, Vec<String>)>,
}

impl Started {
    /// Every backend of `config` replaced by `backend` (tests that watch the changes).
    pub fn replaced(config: &Config, backend: Arc<dyn DnsBackend>) -> Started {
        Started {
            backends: config
                .dns
                .backends
                .iter()
                .map(|b| (b.name.clone(), backend.clone()))
                .collect(),
            builtins: Vec::new(),
        }
    }

    /// The built-in server that serves the backend named `name`, if it is one.
    pub fn builtin_of(&self, name: &str) -> Option<&Arc<builtin::Builtin>> {
        self.builtins
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == name))
            .map(|(server, _)| server)
    }
}

/// Built-in backends on the same `listen` addresses (sorted): one server, their zones.
type BuiltinGroup = (Vec<SocketAddr>, Vec<(String, builtin::BuiltinConfig)>);

/// Every backend of `config`: the ones validation built, and the built-in servers, bound and
/// serving the records of each service's stored side.
pub async fn start(
    config: &Config,
    store: &Store,
    sup: &Supervisor,
) -> Result<Started, StartError> {
    let mut started = Started::default();
    // Built-in backends grouped by their listen addresses: one server per group.
    let mut groups: Vec<BuiltinGroup> = Vec::new();
    for b in &config.dns.backends {
        match &b.built {
            BuiltBackend::Ready(backend) => {
                started.backends.insert(b.name.clone(), backend.clone());
            }
            BuiltBackend::Builtin(built) => {
                let mut listen = built.listen.clone();
                listen.sort();
                listen.dedup();
                let zone = (b.name.clone(), (**built).clone());
                match groups.iter_mut().find(|(l, _)| *l == listen) {
                    Some((_, zones)) => zones.push(zone),
                    None => groups.push((listen, vec![zone])),
                }
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (i, (_, zones)) in groups.into_iter().enumerate() {
        let mut seeds = Vec::new();
        let mut names = Vec::new();
        for (name, built) in zones {
            let mut sets = Vec::new();
            for svc in config.services.iter().filter(|s| s.dns == name) {
                sets.extend(svc.records_for(stored_side(store, &svc.name)?));
            }
            seeds.push((built, sets));
            names.push(name);
        }
        let listen = seeds
            .first()
            .map(|(b, _)| b.listen.clone())
            .unwrap_or_default();
        let server = Arc::new(builtin::Builtin::with_zones(
            seeds,
            builtin::initial_serial(now),
        )?);
        let (udp, tcp) = builtin::bind(&listen)
            .await
            .map_err(|source| StartError::Listen {
                listen: listen.clone(),
                source,
            })?;
        tracing::info!(?listen, zones = %server.describe_zones(), "built-in DNS server listening");
        let shutdown = sup.shutdown().clone();
        let task = if i == 0 {
            "builtin-dns".to_string()
        } else {
            format!("builtin-dns:{i}")
        };
        sup.spawn(task, server.clone().serve(udp, tcp, shutdown), |_| {});
        for name in &names {
            started
                .backends
                .insert(name.clone(), server.clone() as Arc<dyn DnsBackend>);
        }
        started.builtins.push((server, names));
    }
    Ok(started)
}

/// The side a service's DNS points to by its stored state (primary when it has none yet).
pub fn stored_side(store: &Store, service: &str) -> Result<Side, StoreError> {
    Ok(store
        .load_state(service)?
        .map_or(Side::Primary, |s| s.active))
}
