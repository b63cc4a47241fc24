//! Built-in authoritative DNS server: answers for one or more zones straight from in-memory
//! state, and is the [`DnsBackend`] that switches the failover records (no external write on
//! recovery). Built-in backends with the same `listen` are one server: each query is answered
//! by the zone closest to its name ([`Zones`]).
//!
//! Files, from the inside out:
//! - `config.rs`: raw TOML → validated [`BuiltinConfig`];
//! - `zone.rs`: [`ZoneData`] and its indexed [`ZoneSnapshot`], the [`Zones`] of one server,
//!   failover-set checks, serials;
//! - `answer.rs`: pure, no I/O: [`answer()`] (parsed query + [`Zones`] →
//!   response [`Message`](hickory_proto::op::Message)) and [`respond`] (request bytes →
//!   response bytes: malformed input, EDNS payload size, truncation), which is what the sockets
//!   call and the unit tests hammer;
//! - `server.rs`: the UDP/TCP loops in [`Builtin::serve`], their bounds ([`Limits`]), [`bind`]
//!   and the response counters;
//! - `mod.rs`: [`Builtin`], which holds the current [`Zones`] behind an `RwLock<Arc<..>>` (a
//!   read is one lock and an `Arc` clone; a change builds a new snapshot of its zone and swaps
//!   the set in one step) and implements [`DnsBackend`].
//!
//! The socket loops are a small tokio loop around hickory-proto's wire format rather than
//! hickory-server's `ServerFuture`, so that every bound is explicit here: request size, TCP
//! connection count, idle timeout and queries per connection.
//!
//! Behaviour worth knowing:
//! - AA is set on every answer for a name inside the zone; names outside it get REFUSED.
//! - NXDOMAIN (name does not exist, empty non-terminals do exist) and NODATA (name exists,
//!   not that type) both carry the SOA in the authority section, TTL = min(SOA TTL, minimum).
//! - ANY is answered minimally (RFC 8482 §4.1): the first RRset at the name only.
//! - AXFR/IXFR are REFUSED (no zone transfers); meta types (OPT, TSIG, …) as QTYPE get FORMERR;
//!   classes other than IN get REFUSED; opcodes other than QUERY get NOTIMP; anything but
//!   exactly one question gets FORMERR; EDNS version > 0 gets BADVERS.
//! - EDNS: the OPT record is echoed when the query had one (DO bit copied, payload 1232); the
//!   UDP reply is capped at min(client payload, 1232) (512 without EDNS). What does not fit
//!   loses the additional section first, then everything but the question, with TC set.
//! - Messages that are responses, or shorter than a header, are dropped without a reply.

mod answer;
mod config;
#[cfg(test)]
mod fixtures;
mod server;
mod zone;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use futures::future::BoxFuture;

use super::{Change, DnsBackend, DnsError, RecordSet, SettingError, Ttl, check_expected, same_set};

pub use answer::{
    CLASSIC_UDP_PAYLOAD, MAX_REQUEST_LEN, MAX_UDP_PAYLOAD, Reply, Transport, answer, respond,
};
pub use config::{BuiltinConfig, Config, MAX_TTL, RecordConfig, SoaConfig, SoaFields, ValueError};
pub use server::{Limits, QueryStats, bind, rcode_label};
pub use zone::{FailoverError, ZoneData, ZoneSnapshot, Zones, check_failover, initial_serial};

use server::Counters;
use zone::normalize;

/// The built-in server: the zones it serves (one snapshot each), counters, limits.
#[derive(Debug)]
pub struct Builtin {
    zones: RwLock<Arc<Zones>>,
    counters: Counters,
    limits: Limits,
}

impl Builtin {
    /// A server for one zone. `failover`: the failover RRsets to serve at start (from the
    /// coordinator's state); `serial`: the SOA serial to start from, see [`initial_serial`].
    pub fn new(
        config: BuiltinConfig,
        failover: Vec<RecordSet>,
        serial: u32,
    ) -> Result<Builtin, SettingError> {
        Builtin::with_zones(vec![(config, failover)], serial)
    }

    /// One server answering for several zones (built-in backends with the same `listen`),
    /// each with its config and the failover RRsets to serve at start.
    pub fn with_zones(
        zones: Vec<(BuiltinConfig, Vec<RecordSet>)>,
        serial: u32,
    ) -> Result<Builtin, SettingError> {
        if zones.is_empty() {
            return Err(SettingError::new("zone", "no zone to serve"));
        }
        let snapshots = zones
            .into_iter()
            .map(|(config, failover)| zone_snapshot(config, &failover, serial))
            .collect::<Result<Vec<_>, _>>()?;
        let zones = Zones::new(snapshots).map_err(|apex| {
            SettingError::new(
                "zone",
                format!("{apex} is given twice to one server; each zone once per listen set"),
            )
        })?;
        Ok(Builtin {
            zones: RwLock::new(Arc::new(zones)),
            counters: Counters::default(),
            limits: Limits::default(),
        })
    }

    pub fn with_limits(mut self, limits: Limits) -> Builtin {
        self.limits = limits;
        self
    }

    /// What is served right now.
    pub fn snapshot(&self) -> Arc<Zones> {
        self.zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The SOA serial `zone` is served with now (not persisted: a start begins at
    /// [`initial_serial`]); `None` when this server does not serve it.
    pub fn serial_of(&self, zone: &str) -> Option<u32> {
        self.snapshot().get(zone).map(ZoneSnapshot::serial)
    }

    /// The zones served, for messages: `b.test., c.test.`.
    pub fn describe_zones(&self) -> String {
        self.snapshot().describe()
    }

    pub fn stats(&self) -> QueryStats {
        let c = &self.counters;
        let mut responses = BTreeMap::new();
        for (code, slot) in c.by_rcode.iter().enumerate() {
            let n = slot.load(Ordering::Relaxed);
            if n > 0 {
                responses.insert(u16::try_from(code).unwrap_or(u16::MAX), n);
            }
        }
        let other = c.other_rcode.load(Ordering::Relaxed);
        if other > 0 {
            responses.insert(u16::MAX, other);
        }
        QueryStats {
            responses,
            truncated: c.truncated.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            tcp_rejected: c.tcp_rejected.load(Ordering::Relaxed),
        }
    }

    /// The failover RRsets served now for each key of `like` (named as in `like`); a missing
    /// one comes back with no addresses and TTL 0.
    pub fn served(&self, zone: &str, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let zones = self.snapshot();
        let snapshot = zones.get(zone).ok_or_else(|| not_here(zone, &zones))?;
        Ok(like
            .iter()
            .map(|key| match snapshot.failover_set(&key.name, key.rtype) {
                Some(set) => {
                    RecordSet::new(key.name.clone(), key.rtype, set.ttl, set.addrs.clone())
                }
                None => RecordSet::new(key.name.clone(), key.rtype, 0, Vec::new()),
            })
            .collect())
    }

    /// Replaces `change.from` with `change.to` in one swap and bumps the serial; returns the
    /// serial served afterwards. `from` must match what is served (else [`DnsError::Conflict`])
    /// unless `force`. If `to` is already served exactly, nothing changes (no serial bump) and
    /// it succeeds: the desired state holds.
    pub fn apply_change(&self, change: &Change, force: bool) -> Result<u32, DnsError> {
        let mut guard = self.zones.write().unwrap_or_else(PoisonError::into_inner);
        let zones = guard.clone();
        let Some(index) = zones.position(&change.zone) else {
            return Err(not_here(&change.zone, &zones));
        };
        let Some(current) = zones.iter().nth(index) else {
            return Err(not_here(&change.zone, &zones));
        };
        let data = &current.data;
        if change.from.len() != change.to.len()
            || change
                .from
                .iter()
                .zip(&change.to)
                .any(|(f, t)| !f.same_key(t))
        {
            return Err(DnsError::Rejected(
                "change.from and change.to must list the same name and type keys in the same order"
                    .into(),
            ));
        }
        let served: Vec<Option<&RecordSet>> = change
            .to
            .iter()
            .map(|t| current.failover_set(&t.name, t.rtype))
            .collect();
        let already = change
            .to
            .iter()
            .zip(&served)
            .all(|(t, s)| same_set(t, *s, Ttl::Compared));
        if already {
            return Ok(data.serial);
        }
        if !force {
            // Unlike a remote server's conflict check, the TTL counts here: this server knows
            // exactly what it serves, so `from` with another TTL is not what is served.
            for (f, s) in change.from.iter().zip(&served) {
                if !same_set(f, *s, Ttl::Compared) {
                    let empty = || RecordSet::new(f.name.clone(), f.rtype, 0, Vec::new());
                    let s = s.cloned().unwrap_or_else(empty);
                    return Err(DnsError::Conflict {
                        expected: f.to_string(),
                        found: s.to_string(),
                    });
                }
            }
        }

        let mut next = data.clone();
        let to = change
            .to
            .iter()
            .map(normalize)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DnsError::Rejected(e.to_string()))?;
        next.failover.retain(|s| !to.iter().any(|t| t.same_key(s)));
        next.failover
            .extend(to.into_iter().filter(|t| !t.addrs.is_empty()));
        next.serial = data.serial.wrapping_add(1);
        let snapshot = ZoneSnapshot::new(next).map_err(|e| DnsError::Rejected(e.to_string()))?;
        let serial = snapshot.serial();
        *guard = Arc::new(zones.with_replaced(index, snapshot));
        Ok(serial)
    }
}

/// The one snapshot of a zone at start.
fn zone_snapshot(
    config: BuiltinConfig,
    failover: &[RecordSet],
    serial: u32,
) -> Result<ZoneSnapshot, SettingError> {
    let failover = failover
        .iter()
        .filter(|s| !s.addrs.is_empty())
        .map(normalize)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| SettingError::new("failover records", m.to_string()))?;
    let data = ZoneData {
        apex: config.apex,
        ttl: config.ttl,
        soa: config.soa,
        serial,
        ns: config.ns,
        records: config.records,
        failover,
    };
    ZoneSnapshot::new(data).map_err(|m| SettingError::new("failover records", m.to_string()))
}

fn not_here(zone: &str, zones: &Zones) -> DnsError {
    DnsError::Rejected(format!(
        "zone {zone} is not served here (this server has {})",
        zones.describe()
    ))
}

impl DnsBackend for Builtin {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    fn current<'a>(
        &'a self,
        zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(async move { self.served(zone, like) })
    }

    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(async move { self.apply_change(change, false).map(|_| ()) })
    }

    /// Nothing to prove but that the zone is this one and serves `expected` (addresses).
    fn check<'a>(
        &'a self,
        zone: &'a str,
        expected: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<String, DnsError>> {
        Box::pin(async move {
            let served = self.served(zone, expected)?;
            check_expected(expected, &served)?;
            let zones = self.snapshot();
            let served = zones.get(zone).ok_or_else(|| not_here(zone, &zones))?;
            Ok(format!(
                "built-in server: zone {} served from memory (serial {})",
                served.data.apex,
                served.serial()
            ))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dns::RecordType;
    use crate::dns::builtin::fixtures::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType as WireType;

    // --- changes ---

    fn change(from: RecordSet, to: RecordSet) -> Change {
        Change {
            zone: "example.test.".into(),
            from: vec![from],
            to: vec![to],
        }
    }

    #[test]
    fn apply_swaps_records_and_bumps_the_serial() {
        let server = server();
        let before = server.snapshot();
        let serial = server
            .apply_change(
                &change(
                    www(&["192.0.2.10"], 300),
                    www(&["198.51.100.7", "198.51.100.8"], 60),
                ),
                false,
            )
            .unwrap();
        assert_eq!(serial, 8);
        assert_eq!(server.serial_of("example.test.").unwrap(), 8);
        let response = ask(&server, "www.example.test.", WireType::A);
        assert_eq!(rdata(&response.answers), ["198.51.100.7", "198.51.100.8"]);
        assert!(response.answers.iter().all(|r| r.ttl == 60));
        let response = ask(&server, "example.test.", WireType::SOA);
        assert!(rdata(&response.answers)[0].contains(" 8 "));
        // A snapshot taken before keeps answering the old data (readers never see half a change).
        let old = answer(&query("www.example.test.", WireType::A), &before);
        assert_eq!(rdata(&old.answers), ["192.0.2.10"]);
        // current() reports the new set under the caller's spelling of the name.
        let like = [RecordSet::new(
            "WWW.example.test",
            RecordType::A,
            0,
            Vec::new(),
        )];
        let served = server.served("example.test", &like).unwrap();
        assert_eq!(served[0].name, "WWW.example.test");
        assert_eq!(served[0].ttl, 60);
        assert_eq!(served[0].addrs.len(), 2);
        // Same change again: already served, no bump.
        let serial = server
            .apply_change(
                &change(
                    www(&["192.0.2.10"], 300),
                    www(&["198.51.100.8", "198.51.100.7"], 60),
                ),
                false,
            )
            .unwrap();
        assert_eq!(serial, 8);
    }

    #[test]
    fn apply_reports_conflicts_unless_forced() {
        let server = server();
        let error = server
            .apply_change(
                &change(www(&["192.0.2.99"], 300), www(&["198.51.100.7"], 60)),
                false,
            )
            .unwrap_err();
        assert!(matches!(error, DnsError::Conflict { .. }), "{error}");
        assert!(error.to_string().contains("192.0.2.10"), "{error}");
        // Same addresses, other TTL: still a conflict.
        let error = server
            .apply_change(
                &change(www(&["192.0.2.10"], 30), www(&["198.51.100.7"], 60)),
                false,
            )
            .unwrap_err();
        assert!(matches!(error, DnsError::Conflict { .. }), "{error}");
        assert_eq!(server.serial_of("example.test.").unwrap(), 7);
        server
            .apply_change(
                &change(www(&["192.0.2.99"], 300), www(&["198.51.100.7"], 60)),
                true,
            )
            .unwrap();
        assert_eq!(
            rdata(&ask(&server, "www.example.test.", WireType::A).answers),
            ["198.51.100.7"]
        );
    }

    #[test]
    fn apply_adds_and_removes_rrsets() {
        let server = server();
        let v6 = |addrs: &[&str]| {
            RecordSet::new(
                "www.example.test.",
                RecordType::AAAA,
                60,
                addrs.iter().map(|a| a.parse().unwrap()).collect(),
            )
        };
        // Add an AAAA set that did not exist (from is empty).
        server
            .apply_change(&change(v6(&[]), v6(&["2001:db8::7"])), false)
            .unwrap();
        assert_eq!(
            rdata(&ask(&server, "www.example.test.", WireType::AAAA).answers),
            ["2001:db8::7"]
        );
        // Remove both: the name no longer exists.
        let both = Change {
            zone: "example.test.".into(),
            from: vec![www(&["192.0.2.10"], 300), v6(&["2001:db8::7"])],
            to: vec![www(&[], 300), v6(&[])],
        };
        assert_eq!(server.apply_change(&both, false).unwrap(), 9);
        let response = ask(&server, "www.example.test.", WireType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        let served = server.served("example.test.", &both.from).unwrap();
        assert!(served.iter().all(|s| s.addrs.is_empty() && s.ttl == 0));
    }

    #[test]
    fn apply_rejects_bad_changes() {
        let server = server();
        let mut other_zone = change(www(&["192.0.2.10"], 300), www(&["198.51.100.7"], 60));
        other_zone.zone = "other.test.".into();
        let mismatched = change(
            www(&["192.0.2.10"], 300),
            RecordSet::new(
                "api.example.test.",
                RecordType::A,
                60,
                vec!["198.51.100.7".parse().unwrap()],
            ),
        );
        let outside = change(
            RecordSet::new("www.other.test.", RecordType::A, 60, Vec::new()),
            RecordSet::new(
                "www.other.test.",
                RecordType::A,
                60,
                vec!["198.51.100.7".parse().unwrap()],
            ),
        );
        let on_static = change(
            RecordSet::new(
                "mail.example.test.",
                RecordType::A,
                300,
                vec!["192.0.2.25".parse().unwrap()],
            ),
            RecordSet::new(
                "mail.example.test.",
                RecordType::A,
                60,
                vec!["198.51.100.7".parse().unwrap()],
            ),
        );
        for bad in [other_zone, mismatched, outside, on_static] {
            let error = server.apply_change(&bad, true).unwrap_err();
            assert!(matches!(error, DnsError::Rejected(_)), "{error}");
        }
        assert_eq!(server.serial_of("example.test.").unwrap(), 7);
        assert!(matches!(
            server.served("other.test.", &[]),
            Err(DnsError::Rejected(_))
        ));
    }

    // --- several zones on one server ---

    /// `example.test.` (the fixture), `other.test.` and its child `sub.other.test.`, one server.
    fn three_zones() -> Builtin {
        let zone = |apex: &str| {
            parse(&format!(
                "listen = [\"127.0.0.1:53\"]\nzone = \"{apex}\"\nns = [\"ns.{apex}\"]\nrecords = [{{ name = \"ns\", type = \"A\", value = \"192.0.2.53\" }}]\n"
            ))
            .build()
            .unwrap()
        };
        let set = |name: &str, addr: &str| {
            RecordSet::new(name, RecordType::A, 60, vec![addr.parse().unwrap()])
        };
        Builtin::with_zones(
            vec![
                (
                    parse(CONFIG).build().unwrap(),
                    vec![www(&["192.0.2.10"], 300)],
                ),
                (
                    zone("other.test."),
                    vec![set("www.other.test.", "192.0.2.20")],
                ),
                (
                    zone("sub.other.test."),
                    vec![set("www.sub.other.test.", "192.0.2.30")],
                ),
            ],
            7,
        )
        .unwrap()
    }

    #[test]
    fn each_name_is_answered_by_its_closest_zone() {
        let server = three_zones();
        for (name, addr, apex) in [
            ("www.example.test.", "192.0.2.10", "example.test."),
            ("www.other.test.", "192.0.2.20", "other.test."),
            ("www.sub.other.test.", "192.0.2.30", "sub.other.test."),
        ] {
            let response = ask(&server, name, WireType::A);
            assert_eq!(rdata(&response.answers), [addr], "{name}");
            assert!(response.metadata.authoritative, "{name}");
            let soa = ask(&server, apex, WireType::SOA);
            assert_eq!(soa.answers.len(), 1, "{apex}");
            assert_eq!(soa.answers[0].name.to_ascii(), apex);
        }
        // A missing name of the child zone: NXDOMAIN with the child's SOA, not the parent's.
        let response = ask(&server, "nope.sub.other.test.", WireType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(response.authorities[0].name.to_ascii(), "sub.other.test.");
        // Outside every zone: REFUSED.
        let response = ask(&server, "www.elsewhere.test.", WireType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        assert_eq!(
            server.describe_zones(),
            "sub.other.test., example.test., other.test."
        );
    }

    #[test]
    fn a_change_moves_only_its_own_zone() {
        let server = three_zones();
        let before = server.snapshot();
        let moved = RecordSet::new(
            "www.other.test.",
            RecordType::A,
            30,
            vec!["198.51.100.9".parse().unwrap()],
        );
        let change = Change {
            zone: "OTHER.test".into(),
            from: vec![RecordSet::new(
                "www.other.test.",
                RecordType::A,
                60,
                vec!["192.0.2.20".parse().unwrap()],
            )],
            to: vec![moved.clone()],
        };
        assert_eq!(server.apply_change(&change, false).unwrap(), 8);
        assert_eq!(server.serial_of("other.test.").unwrap(), 8);
        assert_eq!(server.serial_of("example.test.").unwrap(), 7);
        assert_eq!(server.serial_of("sub.other.test.").unwrap(), 7);
        assert_eq!(server.serial_of("elsewhere.test."), None);
        assert_eq!(
            rdata(&ask(&server, "www.other.test.", WireType::A).answers),
            ["198.51.100.9"]
        );
        assert_eq!(
            rdata(&ask(&server, "www.sub.other.test.", WireType::A).answers),
            ["192.0.2.30"]
        );
        assert_eq!(
            server
                .served("other.test.", std::slice::from_ref(&moved))
                .unwrap(),
            [moved]
        );
        // The untouched zones are the same snapshots, shared, not copies.
        let after = server.snapshot();
        let same = |apex: &str| std::ptr::eq(before.get(apex).unwrap(), after.get(apex).unwrap());
        assert!(same("example.test.") && same("sub.other.test."));
        assert!(!same("other.test."));
        // A name of one zone cannot be changed through another zone.
        let wrong = Change {
            zone: "example.test.".into(),
            ..change
        };
        assert!(matches!(
            server.apply_change(&wrong, true),
            Err(DnsError::Rejected(_))
        ));
    }

    #[test]
    fn one_zone_twice_on_one_server_is_refused() {
        let config = parse(CONFIG).build().unwrap();
        let error =
            Builtin::with_zones(vec![(config.clone(), Vec::new()), (config, Vec::new())], 1)
                .unwrap_err();
        assert!(
            error.to_string().contains("example.test. is given twice"),
            "{error}"
        );
        let error = Builtin::with_zones(Vec::new(), 1).unwrap_err();
        assert!(error.to_string().contains("no zone"), "{error}");
    }
}
