//! Probes shared by witness and coordinator, in two halves:
//!
//! - [`spec`] — pure: [`ProbeSpec`] (what to probe, what counts as up), [`Evidence`], the
//!   bounds and their validation. The wire protocol carries these types.
//! - [`runner`] — I/O: [`Prober`] runs a spec (HTTP/HTTPS, TCP, DNS) by address, under a hard
//!   timeout, with bounded reads. The only half that uses `tls`.
//!
//! Imports run one way: `runner` → `spec` → `hostname`; `runner` → `tls` → `hostname`. The
//! spec never imports TLS or the runner. Every item is re-exported here, so
//! `shared::probe::ProbeSpec`, `shared::probe::Prober`, ... keep working.

pub mod runner;
pub mod spec;

pub use crate::hostname::check_hostname;
pub use runner::Prober;
pub use spec::{
    BODY_PREFIX_LIMIT, DnsProbe, Evidence, HttpMethod, HttpProbe, MAX_DETAIL_LEN, MAX_TIMEOUT_MS,
    ProbeError, ProbeSpec, TcpProbe,
};
