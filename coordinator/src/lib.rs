//! The coordinator: probes the primary and backup, gathers signed votes from witnesses,
//! decides with a pure state machine (`failover`), carries out the decision (`driver`),
//! rewrites DNS (`dns`), keeps history in SQLite (`store`) and serves the HTTP API (`api`).

pub mod dns;
pub mod failover;
