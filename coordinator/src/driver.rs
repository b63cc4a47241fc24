//! The old path of the service machinery, kept so code written against `coordinator::driver`
//! still compiles; everything lives in [`crate::service`] now.

pub use crate::service::{
    Command, ServiceDeps, ServiceHandle, ServiceStatus, retention_loop, same_addrs, spawn_service,
};

/// The old name of [`ServiceDeps`] (it was easy to confuse with tokio's runtime).
pub type Runtime = ServiceDeps;
