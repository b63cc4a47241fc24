//! Test harness shared by Quorate's integration tests.

pub mod bind;
pub mod cloudflare;
pub mod desec;
pub mod digitalocean;
pub mod faultrun;
pub mod fixtures;
pub mod gandi;
pub mod hetzner;
pub mod lab;
pub mod moto;
pub mod net;
pub mod pdns;
pub mod rig;
pub mod route53;
pub mod standin;
pub mod virtualmin;
pub mod zone_dns;
