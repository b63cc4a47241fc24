//! Zone data: [`ZoneData`] (what is served), [`ZoneSnapshot`] (the same with a lookup index,
//! immutable, swapped whole on a change), the checks on failover sets and the SOA serial rules.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType as WireType};

use super::config::{MAX_TTL, SoaFields, ValueError, parse_name};
use crate::dns::{RecordSet, RecordType};

/// Everything the server answers from. Immutable once inside a [`ZoneSnapshot`].
#[derive(Debug, Clone)]
pub struct ZoneData {
    pub apex: Name,
    /// TTL of the SOA and NS records.
    pub ttl: u32,
    pub soa: SoaFields,
    pub serial: u32,
    pub ns: Vec<Name>,
    /// Static records from the config.
    pub records: Vec<Record>,
    /// The RRsets a failover switches; none has an empty address list.
    pub failover: Vec<RecordSet>,
}

/// All RRsets at one owner name, in a stable order.
#[derive(Debug, Clone, Default)]
pub(super) struct Node {
    pub(super) rrsets: Vec<(WireType, Vec<Record>)>,
}

impl Node {
    fn add(&mut self, record: Record) {
        let rtype = record.record_type();
        match self.rrsets.iter_mut().find(|(t, _)| *t == rtype) {
            Some((_, records)) => records.push(record),
            None => self.rrsets.push((rtype, vec![record])),
        }
    }

    pub(super) fn get(&self, rtype: WireType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, r)| r.as_slice())
    }
}

/// [`ZoneData`] with a lookup index: what [`answer`](super::answer()) reads.
#[derive(Debug, Clone)]
pub struct ZoneSnapshot {
    pub(super) data: ZoneData,
    pub(super) nodes: HashMap<Name, Node>,
    /// Every owner name and every ancestor up to the apex (empty non-terminals exist too).
    pub(super) existing: HashSet<Name>,
}

impl ZoneSnapshot {
    /// Indexes `data`. Checks the failover sets against the rest (see [`check_failover`]).
    pub fn new(data: ZoneData) -> Result<ZoneSnapshot, FailoverError> {
        check_failover(&data, &data.failover)?;
        let mut nodes: HashMap<Name, Node> = HashMap::new();
        let apex_node = nodes.entry(data.apex.clone()).or_default();
        apex_node.add(soa_record(&data));
        for ns in &data.ns {
            apex_node.add(Record::from_rdata(
                data.apex.clone(),
                data.ttl,
                RData::NS(NS(ns.clone())),
            ));
        }
        for record in &data.records {
            nodes
                .entry(record.name.clone())
                .or_default()
                .add(record.clone());
        }
        for set in &data.failover {
            let name = failover_name(&set.name)?;
            let node = nodes.entry(name.clone()).or_default();
            for addr in &set.addrs {
                let rdata = match addr {
                    IpAddr::V4(v4) => RData::A(A(*v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                };
                node.add(Record::from_rdata(name.clone(), set.ttl, rdata));
            }
        }
        let mut existing = HashSet::new();
        for name in nodes.keys() {
            let mut name = name.clone();
            while name.num_labels() > data.apex.num_labels() {
                let parent = name.base_name();
                existing.insert(name);
                name = parent;
            }
            existing.insert(name);
        }
        Ok(ZoneSnapshot {
            data,
            nodes,
            existing,
        })
    }

    pub fn data(&self) -> &ZoneData {
        &self.data
    }

    pub fn serial(&self) -> u32 {
        self.data.serial
    }

    /// The failover RRset served for `name`/`rtype`, if any.
    /// `name` is compared as a DNS name (case, trailing dot do not matter).
    pub fn failover_set(&self, name: &str, rtype: RecordType) -> Option<&RecordSet> {
        let name = failover_name(name).ok()?.to_ascii();
        self.data
            .failover
            .iter()
            .find(|s| s.rtype == rtype && s.name == name)
    }

    fn soa(&self) -> Option<&Record> {
        self.nodes
            .get(&self.data.apex)
            .and_then(|n| n.get(WireType::SOA))
            .and_then(|r| r.first())
    }

    /// SOA for the authority section of a negative answer (RFC 2308 §3).
    pub(super) fn negative_soa(&self) -> Option<Record> {
        self.soa().map(|soa| {
            let mut soa = soa.clone();
            soa.ttl = soa.ttl.min(self.data.soa.minimum);
            soa
        })
    }
}

/// Every zone one server answers for, swapped whole on a change like each [`ZoneSnapshot`]:
/// a query goes to the zone closest to its name (the longest apex it lies in), so a child zone
/// served here answers for its own names even when its parent is served here too.
#[derive(Debug, Clone)]
pub struct Zones {
    /// Most labels first: the first zone that contains a name is the closest one.
    zones: Vec<Arc<ZoneSnapshot>>,
}

impl Zones {
    /// Refuses the same apex twice (the config refuses it first, naming both backends).
    pub fn new(zones: Vec<ZoneSnapshot>) -> Result<Zones, Name> {
        let mut zones: Vec<Arc<ZoneSnapshot>> = zones.into_iter().map(Arc::new).collect();
        zones.sort_by(|a, b| {
            b.data
                .apex
                .num_labels()
                .cmp(&a.data.apex.num_labels())
                .then_with(|| a.data.apex.cmp(&b.data.apex))
        });
        if let Some(w) = zones.windows(2).find(|w| w[0].data.apex == w[1].data.apex) {
            return Err(w[0].data.apex.clone());
        }
        Ok(Zones { zones })
    }

    /// The zone that answers for `name`: the closest enclosing one.
    pub fn for_name(&self, name: &Name) -> Option<&ZoneSnapshot> {
        self.zones
            .iter()
            .find(|z| z.data.apex.zone_of(name))
            .map(|z| &**z)
    }

    /// The zone whose apex is `zone` (case and trailing dot do not matter).
    pub fn get(&self, zone: &str) -> Option<&ZoneSnapshot> {
        self.position(zone).map(|i| &*self.zones[i])
    }

    pub(super) fn position(&self, zone: &str) -> Option<usize> {
        self.zones
            .iter()
            .position(|z| zone_matches(&z.data.apex, zone))
    }

    /// The same set with zone `i` replaced (the others are shared, not copied).
    pub(super) fn with_replaced(&self, i: usize, zone: ZoneSnapshot) -> Zones {
        let mut zones = self.zones.clone();
        zones[i] = Arc::new(zone);
        Zones { zones }
    }

    pub fn iter(&self) -> impl Iterator<Item = &ZoneSnapshot> {
        self.zones.iter().map(|z| &**z)
    }

    /// The apexes, closest-first order, for messages: `b.test., c.test.`.
    pub fn describe(&self) -> String {
        self.iter()
            .map(|z| z.data.apex.to_ascii())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn soa_record(data: &ZoneData) -> Record {
    let soa = SOA::new(
        data.soa.mname.clone(),
        data.soa.rname.clone(),
        data.serial,
        // Checked to be at most i32::MAX at build.
        i32::try_from(data.soa.refresh).unwrap_or(i32::MAX),
        i32::try_from(data.soa.retry).unwrap_or(i32::MAX),
        i32::try_from(data.soa.expire).unwrap_or(i32::MAX),
        data.soa.minimum,
    );
    Record::from_rdata(data.apex.clone(), data.ttl, RData::SOA(soa))
}

/// The stored form of a failover set: lowercase fully qualified name, sorted addresses.
pub(super) fn normalize(set: &RecordSet) -> Result<RecordSet, FailoverError> {
    let name = failover_name(&set.name)?.to_ascii();
    Ok(RecordSet::new(name, set.rtype, set.ttl, set.addrs.clone()))
}

pub(super) fn failover_name(raw: &str) -> Result<Name, FailoverError> {
    let raw = if raw.ends_with('.') {
        raw.to_string()
    } else {
        format!("{raw}.")
    };
    parse_name(&raw).map_err(FailoverError::Name)
}

/// A failover record set the zone cannot serve (see [`check_failover`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailoverError {
    #[error("failover record name: {0}")]
    Name(ValueError),
    #[error("{name} is not inside the zone {apex}")]
    OutsideZone { name: String, apex: Name },
    #[error("{name}: ttl {ttl} is above {MAX_TTL}")]
    Ttl { name: String, ttl: u32 },
    #[error("{name} {rtype}: address {addr} is not of type {rtype}")]
    WrongType {
        name: String,
        rtype: RecordType,
        addr: IpAddr,
    },
    #[error("{name} {rtype} is both a static record and a failover record")]
    Static { name: String, rtype: RecordType },
    #[error("{name} has a static CNAME, so it cannot have failover records")]
    Cname { name: String },
    #[error("{name} {rtype} is listed twice")]
    Twice { name: String, rtype: RecordType },
}

/// A failover set must be inside the zone, carry addresses of its own type, a sane TTL, and
/// not collide with a static A/AAAA of the same name or with a CNAME (or be at a name a
/// static CNAME points from). Keys must be unique.
pub fn check_failover(data: &ZoneData, sets: &[RecordSet]) -> Result<(), FailoverError> {
    for (i, set) in sets.iter().enumerate() {
        let name = failover_name(&set.name)?;
        if !data.apex.zone_of(&name) {
            return Err(FailoverError::OutsideZone {
                name: set.name.clone(),
                apex: data.apex.clone(),
            });
        }
        if set.ttl > MAX_TTL {
            return Err(FailoverError::Ttl {
                name: set.name.clone(),
                ttl: set.ttl,
            });
        }
        if let Some(bad) = set.addrs.iter().find(|a| RecordType::of(a) != set.rtype) {
            return Err(FailoverError::WrongType {
                name: set.name.clone(),
                rtype: set.rtype,
                addr: *bad,
            });
        }
        let wire = match set.rtype {
            RecordType::A => WireType::A,
            RecordType::AAAA => WireType::AAAA,
        };
        for record in &data.records {
            if record.name != name {
                continue;
            }
            if record.record_type() == wire {
                return Err(FailoverError::Static {
                    name: set.name.clone(),
                    rtype: set.rtype,
                });
            }
            if record.record_type() == WireType::CNAME {
                return Err(FailoverError::Cname {
                    name: set.name.clone(),
                });
            }
        }
        if sets[..i].iter().any(|other| other.same_key(set)) {
            return Err(FailoverError::Twice {
                name: set.name.clone(),
                rtype: set.rtype,
            });
        }
    }
    Ok(())
}

/// The SOA serial a start serves: the current unix time in seconds (saturating at
/// `u32::MAX`). The serial is not persisted, so this is what makes it move forward across
/// restarts (as long as the clock does); each change then bumps it by one.
pub fn initial_serial(unix_now_secs: u64) -> u32 {
    u32::try_from(unix_now_secs).unwrap_or(u32::MAX)
}

pub(super) fn zone_matches(apex: &Name, zone: &str) -> bool {
    failover_name(zone).is_ok_and(|z| z == *apex)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dns::builtin::Builtin;
    use crate::dns::builtin::fixtures::*;

    #[test]
    fn failover_records_are_checked_against_the_zone() {
        let config = parse(CONFIG).build().unwrap();
        let bad: &[(RecordSet, &str)] = &[
            (
                RecordSet::new(
                    "www.other.test.",
                    RecordType::A,
                    60,
                    vec!["192.0.2.1".parse().unwrap()],
                ),
                "not inside",
            ),
            (
                RecordSet::new(
                    "ns1.example.test.",
                    RecordType::A,
                    60,
                    vec!["192.0.2.1".parse().unwrap()],
                ),
                "both a static",
            ),
            (
                RecordSet::new(
                    "alias.example.test.",
                    RecordType::A,
                    60,
                    vec!["192.0.2.1".parse().unwrap()],
                ),
                "CNAME",
            ),
            (
                RecordSet::new(
                    "www.example.test.",
                    RecordType::A,
                    60,
                    vec!["2001:db8::1".parse().unwrap()],
                ),
                "not of type A",
            ),
        ];
        for (set, words) in bad {
            let error = Builtin::new(config.clone(), vec![set.clone()], 1).unwrap_err();
            assert!(error.message.contains(words), "{set}: {error}");
        }
        let error = Builtin::new(
            config,
            vec![www(&["192.0.2.1"], 60), www(&["192.0.2.2"], 60)],
            1,
        )
        .unwrap_err();
        assert!(error.message.contains("twice"), "{error}");
    }

    #[test]
    fn initial_serial_is_the_clock() {
        assert_eq!(initial_serial(1_700_000_000), 1_700_000_000);
        // A later start serves a greater serial.
        assert!(initial_serial(1_700_000_060) > initial_serial(1_700_000_000));
        // Past 2106 the seconds no longer fit: the serial stays at the largest one.
        assert_eq!(initial_serial(u64::from(u32::MAX)), u32::MAX);
        assert_eq!(initial_serial(u64::from(u32::MAX) + 1), u32::MAX);
        assert_eq!(initial_serial(u64::MAX), u32::MAX);
    }
}
