//! Built-in authoritative DNS server: answers for one zone straight from in-memory state, and
//! is the [`DnsBackend`] that switches the failover records (no external write on recovery).
//!
//! Layers, from the inside out:
//! - [`answer`]: pure function, parsed query + [`ZoneSnapshot`] → response [`Message`];
//! - [`respond`]: pure function, request bytes → response bytes (malformed input, EDNS payload
//!   size, truncation); this is what the sockets call and what the unit tests hammer;
//! - [`Builtin`]: holds the current snapshot behind an `RwLock<Arc<..>>` (a read is one lock
//!   and an `Arc` clone; a change builds a new snapshot and swaps it in one step), implements
//!   [`DnsBackend`], counts responses by rcode and runs the UDP/TCP loops in [`Builtin::serve`].
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{Change, DnsBackend, DnsError, RecordSet, RecordType};

/// Largest request accepted, UDP or TCP. A real query is well under 512 bytes plus an OPT
/// record; anything bigger is not worth parsing.
pub const MAX_REQUEST_LEN: usize = 4096;
/// Largest UDP reply with EDNS (the DNS flag day 2020 value); the client may ask for less.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// UDP reply limit for clients without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// Largest TTL RFC 2181 allows.
pub const MAX_TTL: u32 = i32::MAX as u32;
/// CNAME chains inside the zone are followed at most this many steps.
const MAX_CNAME_CHAIN: usize = 8;
/// Largest TXT value accepted from the config.
const MAX_TXT_LEN: usize = 4000;

// ---------------------------------------------------------------------------------------------
// Config

/// Raw `[dns.builtin]`-style config as written in TOML. Validate with [`Config::build`].
///
/// ```toml
/// listen = ["127.0.0.1:5353", "[::1]:5353"]
/// zone = "example.test."
/// ttl = 300
/// ns = ["ns1.example.test."]
/// soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60 }
/// records = [ { name = "ns1", type = "A", value = "192.0.2.53", ttl = 300 } ]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Addresses with port to answer on, UDP and TCP each.
    pub listen: Vec<String>,
    /// The zone apex this server is authoritative for.
    pub zone: String,
    /// TTL of the SOA and NS records and default TTL of `records`.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    #[serde(default)]
    pub soa: SoaConfig,
    /// The zone's nameservers (fully qualified). In-zone ones need an A/AAAA in `records`.
    pub ns: Vec<String>,
    /// Static records; names relative to the zone (`www`, `@`) or fully qualified in it.
    #[serde(default)]
    pub records: Vec<RecordConfig>,
}

fn default_ttl() -> u32 {
    300
}

/// SOA fields; every one has a default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoaConfig {
    /// Primary nameserver; defaults to the first of `ns`.
    pub mname: Option<String>,
    /// Responsible mailbox as a name; defaults to `hostmaster.<zone>`.
    pub rname: Option<String>,
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    /// Negative-caching TTL (RFC 2308).
    pub minimum: Option<u32>,
}

/// One static record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    /// A: IPv4; AAAA: IPv6; CNAME: a fully qualified name; TXT: text; MX: `"10 mail.example.test."`.
    pub value: String,
    pub ttl: Option<u32>,
}

/// A config or data error, naming the key that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn config_error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// SOA fields other than the owner and the serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoaFields {
    pub mname: Name,
    pub rname: Name,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

/// Validated config: what [`Builtin::new`] takes.
#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    /// Where the lead should bind (see [`bind`]).
    pub listen: Vec<SocketAddr>,
    pub apex: Name,
    pub ttl: u32,
    pub soa: SoaFields,
    pub ns: Vec<Name>,
    pub records: Vec<Record>,
}

impl Config {
    /// Checks every field; errors name the key (`records[2].value`, `soa.rname`, …).
    pub fn build(&self) -> Result<BuiltinConfig, ConfigError> {
        if self.listen.is_empty() {
            return Err(config_error(
                "listen",
                "expected at least one address such as \"127.0.0.1:5353\"",
            ));
        }
        let mut listen = Vec::with_capacity(self.listen.len());
        for (i, raw) in self.listen.iter().enumerate() {
            let addr: SocketAddr = raw.parse().map_err(|_| {
                config_error(
                    format!("listen[{i}]"),
                    format!(
                        "expected an address with port such as \"127.0.0.1:5353\" or \"[::1]:5353\", got {raw:?}"
                    ),
                )
            })?;
            listen.push(addr);
        }

        let apex = parse_absolute(&self.zone).map_err(|m| config_error("zone", m))?;
        if apex.is_root() {
            return Err(config_error(
                "zone",
                "expected a zone below the root, got \".\"",
            ));
        }
        let ttl = check_ttl(self.ttl).map_err(|m| config_error("ttl", m))?;

        if self.ns.is_empty() {
            return Err(config_error(
                "ns",
                "expected at least one nameserver such as \"ns1.example.test.\"",
            ));
        }
        let mut ns = Vec::with_capacity(self.ns.len());
        for (i, raw) in self.ns.iter().enumerate() {
            let name = parse_absolute(raw).map_err(|m| config_error(format!("ns[{i}]"), m))?;
            if ns.contains(&name) {
                return Err(config_error(
                    format!("ns[{i}]"),
                    format!("{name} is listed twice"),
                ));
            }
            ns.push(name);
        }

        let soa = self.build_soa(&apex, &ns)?;

        let mut records: Vec<Record> = Vec::with_capacity(self.records.len());
        for (i, raw) in self.records.iter().enumerate() {
            let record = build_record(raw, &apex, ttl, i)?;
            if let Some(j) = records
                .iter()
                .position(|r| r.name == record.name && r.record_type() == record.record_type())
            {
                if records[j].data == record.data {
                    return Err(config_error(
                        format!("records[{i}]"),
                        format!("duplicates records[{j}]"),
                    ));
                }
                if records[j].ttl != record.ttl {
                    return Err(config_error(
                        format!("records[{i}].ttl"),
                        format!(
                            "expected the same TTL as records[{j}] ({}) for {} {}",
                            records[j].ttl,
                            record.name,
                            record.record_type()
                        ),
                    ));
                }
            }
            records.push(record);
        }

        for (i, record) in records.iter().enumerate() {
            if record.record_type() != WireType::CNAME {
                continue;
            }
            if record.name == apex {
                return Err(config_error(
                    format!("records[{i}].name"),
                    "a CNAME cannot be at the zone apex (it has SOA and NS)",
                ));
            }
            if let Some(j) = records
                .iter()
                .position(|other| other.name == record.name && !std::ptr::eq(other, record))
            {
                return Err(config_error(
                    format!("records[{i}]"),
                    format!(
                        "a CNAME cannot share its name {} with other data (records[{j}])",
                        record.name
                    ),
                ));
            }
        }

        for (i, name) in ns.iter().enumerate() {
            if apex.zone_of(name)
                && !records.iter().any(|r| {
                    r.name == *name && matches!(r.record_type(), WireType::A | WireType::AAAA)
                })
            {
                return Err(config_error(
                    format!("ns[{i}]"),
                    format!(
                        "{name} is inside the zone, so records needs an A or AAAA record for it"
                    ),
                ));
            }
        }

        Ok(BuiltinConfig {
            listen,
            apex,
            ttl,
            soa,
            ns,
            records,
        })
    }

    fn build_soa(&self, apex: &Name, ns: &[Name]) -> Result<SoaFields, ConfigError> {
        let mname = match &self.soa.mname {
            Some(raw) => parse_absolute(raw).map_err(|m| config_error("soa.mname", m))?,
            None => ns[0].clone(),
        };
        let rname = match &self.soa.rname {
            Some(raw) if raw.contains('@') => {
                return Err(config_error(
                    "soa.rname",
                    format!(
                        "expected a mailbox written as a name such as \"hostmaster.example.test.\", got {raw:?}"
                    ),
                ));
            }
            Some(raw) => parse_absolute(raw).map_err(|m| config_error("soa.rname", m))?,
            None => Name::from_ascii("hostmaster")
                .and_then(|n| n.append_domain(apex))
                .map_err(|e| config_error("soa.rname", format!("cannot build default: {e}")))?,
        };
        let timer = |key: &str, value: Option<u32>, default: u32| {
            let value = value.unwrap_or(default);
            check_ttl(value).map_err(|m| config_error(format!("soa.{key}"), m))
        };
        Ok(SoaFields {
            mname,
            rname,
            refresh: timer("refresh", self.soa.refresh, 3600)?,
            retry: timer("retry", self.soa.retry, 600)?,
            expire: timer("expire", self.soa.expire, 86400)?,
            minimum: timer("minimum", self.soa.minimum, 60)?,
        })
    }
}

fn check_ttl(value: u32) -> Result<u32, String> {
    if value > MAX_TTL {
        Err(format!(
            "expected a number of seconds up to {MAX_TTL}, got {value}"
        ))
    } else {
        Ok(value)
    }
}

/// A fully qualified name (trailing dot), lowercased, no wildcard labels.
fn parse_absolute(raw: &str) -> Result<Name, String> {
    if !raw.ends_with('.') {
        return Err(format!(
            "expected a fully qualified name ending with '.', such as \"ns1.example.test.\", got {raw:?}"
        ));
    }
    parse_name(raw)
}

fn parse_name(raw: &str) -> Result<Name, String> {
    let name =
        Name::from_ascii(raw).map_err(|e| format!("expected a domain name, got {raw:?}: {e}"))?;
    if name.iter().any(|label| label.contains(&b'*')) {
        return Err(format!("wildcards are not supported, got {raw:?}"));
    }
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// A record owner: `@`, relative to the zone, or fully qualified inside it.
fn parse_owner(raw: &str, apex: &Name) -> Result<Name, String> {
    let name = if raw == "@" {
        apex.clone()
    } else if raw.ends_with('.') {
        parse_name(raw)?
    } else {
        parse_name(&format!("{raw}.{apex}"))?
    };
    if !apex.zone_of(&name) {
        return Err(format!("expected a name inside {apex}, got {raw:?}"));
    }
    Ok(name)
}

fn build_record(
    raw: &RecordConfig,
    apex: &Name,
    default_ttl: u32,
    i: usize,
) -> Result<Record, ConfigError> {
    let key = |field: &str| format!("records[{i}].{field}");
    let name = parse_owner(&raw.name, apex).map_err(|m| config_error(key("name"), m))?;
    let ttl = check_ttl(raw.ttl.unwrap_or(default_ttl)).map_err(|m| config_error(key("ttl"), m))?;
    let value = raw.value.trim();
    let data = match raw.rtype.to_ascii_uppercase().as_str() {
        "A" => RData::A(A(value.parse::<Ipv4Addr>().map_err(|_| {
            config_error(
                key("value"),
                format!("expected an IPv4 address, got {value:?}"),
            )
        })?)),
        "AAAA" => RData::AAAA(AAAA(value.parse::<Ipv6Addr>().map_err(|_| {
            config_error(
                key("value"),
                format!("expected an IPv6 address, got {value:?}"),
            )
        })?)),
        "CNAME" => RData::CNAME(CNAME(
            parse_absolute(value).map_err(|m| config_error(key("value"), m))?,
        )),
        "TXT" => {
            if raw.value.len() > MAX_TXT_LEN {
                return Err(config_error(
                    key("value"),
                    format!(
                        "expected at most {MAX_TXT_LEN} bytes of text, got {}",
                        raw.value.len()
                    ),
                ));
            }
            // Character-strings hold at most 255 bytes: split longer text into several.
            let chunks: Vec<&[u8]> = if raw.value.is_empty() {
                vec![&[][..]]
            } else {
                raw.value.as_bytes().chunks(255).collect()
            };
            RData::TXT(TXT::from_bytes(chunks))
        }
        "MX" => {
            let mut parts = value.split_whitespace();
            let (Some(pref), Some(exchange), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(config_error(
                    key("value"),
                    format!(
                        "expected \"<preference> <exchange.>\" such as \"10 mail.example.test.\", got {value:?}"
                    ),
                ));
            };
            let pref: u16 = pref.parse().map_err(|_| {
                config_error(
                    key("value"),
                    format!("expected a preference from 0 to 65535, got {pref:?}"),
                )
            })?;
            let exchange = parse_absolute(exchange).map_err(|m| config_error(key("value"), m))?;
            RData::MX(MX::new(pref, exchange))
        }
        other => {
            return Err(config_error(
                key("type"),
                format!(
                    "expected one of A, AAAA, CNAME, TXT, MX (NS come from `ns`, SOA from `soa`), got {other:?}"
                ),
            ));
        }
    };
    Ok(Record::from_rdata(name, ttl, data))
}

// ---------------------------------------------------------------------------------------------
// Zone data

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
struct Node {
    rrsets: Vec<(WireType, Vec<Record>)>,
}

impl Node {
    fn add(&mut self, record: Record) {
        let rtype = record.record_type();
        match self.rrsets.iter_mut().find(|(t, _)| *t == rtype) {
            Some((_, records)) => records.push(record),
            None => self.rrsets.push((rtype, vec![record])),
        }
    }

    fn get(&self, rtype: WireType) -> Option<&[Record]> {
        self.rrsets
            .iter()
            .find(|(t, _)| *t == rtype)
            .map(|(_, r)| r.as_slice())
    }
}

/// [`ZoneData`] with a lookup index: what [`answer`] reads.
#[derive(Debug, Clone)]
pub struct ZoneSnapshot {
    data: ZoneData,
    nodes: HashMap<Name, Node>,
    /// Every owner name and every ancestor up to the apex (empty non-terminals exist too).
    existing: HashSet<Name>,
}

impl ZoneSnapshot {
    /// Indexes `data`. Checks the failover sets against the rest (see [`check_failover`]).
    pub fn new(data: ZoneData) -> Result<ZoneSnapshot, String> {
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
    fn negative_soa(&self) -> Option<Record> {
        self.soa().map(|soa| {
            let mut soa = soa.clone();
            soa.ttl = soa.ttl.min(self.data.soa.minimum);
            soa
        })
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
fn normalize(set: &RecordSet) -> Result<RecordSet, String> {
    let name = failover_name(&set.name)?.to_ascii();
    Ok(RecordSet::new(name, set.rtype, set.ttl, set.addrs.clone()))
}

fn failover_name(raw: &str) -> Result<Name, String> {
    let raw = if raw.ends_with('.') {
        raw.to_string()
    } else {
        format!("{raw}.")
    };
    parse_name(&raw).map_err(|m| format!("failover record name: {m}"))
}

/// A failover set must be inside the zone, carry addresses of its own type, a sane TTL, and
/// not collide with a static A/AAAA of the same name or with a CNAME (or be at a name a
/// static CNAME points from). Keys must be unique.
pub fn check_failover(data: &ZoneData, sets: &[RecordSet]) -> Result<(), String> {
    for (i, set) in sets.iter().enumerate() {
        let name = failover_name(&set.name)?;
        if !data.apex.zone_of(&name) {
            return Err(format!("{} is not inside the zone {}", set.name, data.apex));
        }
        if set.ttl > MAX_TTL {
            return Err(format!("{}: ttl {} is above {MAX_TTL}", set.name, set.ttl));
        }
        if let Some(bad) = set.addrs.iter().find(|a| RecordType::of(a) != set.rtype) {
            return Err(format!(
                "{} {}: address {bad} is not of type {}",
                set.name, set.rtype, set.rtype
            ));
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
                return Err(format!(
                    "{} {} is both a static record and a failover record",
                    set.name, set.rtype
                ));
            }
            if record.record_type() == WireType::CNAME {
                return Err(format!(
                    "{} has a static CNAME, so it cannot have failover records",
                    set.name
                ));
            }
        }
        if sets[..i].iter().any(|other| other.same_key(set)) {
            return Err(format!("{} {} is listed twice", set.name, set.rtype));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Answer logic (pure)

/// Types that cannot be asked for (RFC 6895 §3.1): 0, OPT, and the meta range 128–250 (TKEY,
/// TSIG, …). The QTYPE-only ones above 250 (IXFR, AXFR, MAILB, MAILA, ANY) are handled apart.
fn is_meta_type(rtype: WireType) -> bool {
    let code = u16::from(rtype);
    code == 0 || rtype == WireType::OPT || (128..=250).contains(&code)
}

/// Answers one parsed query from `zone`. Pure: no I/O, no clock.
pub fn answer(request: &Message, zone: &ZoneSnapshot) -> Message {
    let mut response = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.add_queries(request.queries.iter().cloned());

    if let Some(edns) = &request.edns {
        let mut reply_edns = Edns::new();
        reply_edns.set_max_payload(MAX_UDP_PAYLOAD);
        reply_edns.set_version(0);
        reply_edns.set_dnssec_ok(edns.flags().dnssec_ok);
        response.set_edns(reply_edns);
        if edns.version() > 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return response;
        }
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return response;
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    };
    let qtype = query.query_type();
    if is_meta_type(qtype) {
        response.metadata.response_code = ResponseCode::FormErr;
        return response;
    }
    let qname = query.name();
    if query.query_class() != DNSClass::IN || !zone.data.apex.zone_of(qname) {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }
    if matches!(qtype, WireType::AXFR | WireType::IXFR) {
        response.metadata.response_code = ResponseCode::Refused;
        return response;
    }

    response.metadata.authoritative = true;
    let mut current = qname.clone();
    let mut seen: Vec<Name> = Vec::new();
    loop {
        let Some(node) = zone.nodes.get(&current) else {
            if zone.existing.contains(&current) {
                response.authorities.extend(zone.negative_soa());
            } else {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.authorities.extend(zone.negative_soa());
            }
            return response;
        };
        let owner = current.clone();
        let with_owner = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.name = owner.clone();
                    r
                })
                .collect()
        };

        if qtype == WireType::ANY {
            // RFC 8482 §4.1: one RRset is enough to show the name exists.
            match node.rrsets.first() {
                Some((_, records)) => response.answers.extend(with_owner(records)),
                None => response.authorities.extend(zone.negative_soa()),
            }
            return response;
        }
        if let Some(records) = node.get(qtype) {
            response.answers.extend(with_owner(records));
            add_additional(&mut response, zone, records);
            return response;
        }
        if let Some(cname) = node.get(WireType::CNAME) {
            response.answers.extend(with_owner(cname));
            let Some(RData::CNAME(CNAME(target))) = cname.first().map(|r| &r.data) else {
                return response;
            };
            seen.push(current);
            if !zone.data.apex.zone_of(target)
                || seen.contains(target)
                || seen.len() >= MAX_CNAME_CHAIN
            {
                return response;
            }
            current = target.clone();
            continue;
        }
        // NODATA.
        response.authorities.extend(zone.negative_soa());
        return response;
    }
}

/// Glue for NS answers and addresses for in-zone MX exchanges.
fn add_additional(response: &mut Message, zone: &ZoneSnapshot, records: &[Record]) {
    for record in records {
        let target = match &record.data {
            RData::NS(NS(name)) => name,
            RData::MX(mx) => &mx.exchange,
            _ => continue,
        };
        if let Some(node) = zone.nodes.get(target) {
            for rtype in [WireType::A, WireType::AAAA] {
                if let Some(addrs) = node.get(rtype) {
                    response.additionals.extend(addrs.iter().cloned());
                }
            }
        }
    }
}

/// Which channel a request came in on: it decides the reply size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Encoded reply and what it said, for counting.
#[derive(Debug, Clone)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub rcode: ResponseCode,
    pub truncated: bool,
}

/// Answers raw request bytes. `None` means send nothing (not a query, or not even a header).
pub fn respond(request: &[u8], zone: &ZoneSnapshot, transport: Transport) -> Option<Reply> {
    let header = Header::read(&mut BinDecoder::new(request)).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None;
    }
    if request.len() > MAX_REQUEST_LEN {
        return header_only(&header.metadata, ResponseCode::FormErr, false);
    }
    // Check the question count before parsing: it also bounds what the parser allocates.
    if header.counts.queries != 1 {
        let rcode = if header.metadata.op_code == OpCode::Query {
            ResponseCode::FormErr
        } else {
            ResponseCode::NotImp
        };
        return header_only(&header.metadata, rcode, false);
    }
    let message = match Message::from_vec(request) {
        Ok(message) => message,
        Err(error) => {
            debug!(%error, "malformed dns request");
            let rcode = if header.metadata.op_code == OpCode::Query {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            return header_only(&header.metadata, rcode, false);
        }
    };
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match &message.edns {
            Some(edns) => usize::from(
                edns.max_payload()
                    .clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            ),
            None => usize::from(CLASSIC_UDP_PAYLOAD),
        },
    };
    let mut response = answer(&message, zone);
    let rcode = response.metadata.response_code;
    let bytes = match response.to_vec() {
        Ok(bytes) => bytes,
        Err(error) => {
            warn!(%error, "cannot encode dns response");
            return header_only(&header.metadata, ResponseCode::ServFail, false);
        }
    };
    if bytes.len() <= limit {
        return Some(Reply {
            bytes,
            rcode,
            truncated: false,
        });
    }
    // Additional data is optional (RFC 2181 §9): drop it before truncating.
    response.additionals.clear();
    if let Ok(bytes) = response.to_vec()
        && bytes.len() <= limit
    {
        return Some(Reply {
            bytes,
            rcode,
            truncated: false,
        });
    }
    response.answers.clear();
    response.authorities.clear();
    response.metadata.truncation = true;
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(Reply {
            bytes,
            rcode,
            truncated: true,
        }),
        // Only a question too long for 512 bytes gets here: send just the header.
        _ => header_only(&header.metadata, rcode, true),
    }
}

/// A reply with the request's id, opcode and RD/CD bits, no sections.
fn header_only(request: &Metadata, rcode: ResponseCode, truncated: bool) -> Option<Reply> {
    let mut response = Message::new(request.id, MessageType::Response, request.op_code);
    response.metadata = Metadata::response_from_request(request);
    response.metadata.truncation = truncated;
    // Extended rcodes need an OPT record to be expressed; there is none here.
    let rcode = if rcode.high() > 0 {
        ResponseCode::ServFail
    } else {
        rcode
    };
    response.metadata.response_code = rcode;
    let bytes = response.to_vec().ok()?;
    Some(Reply {
        bytes,
        rcode,
        truncated: response.metadata.truncation,
    })
}

// ---------------------------------------------------------------------------------------------
// The server and backend

/// Bounds on the work one client can cause.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent TCP connections; further ones are accepted and closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection that sends nothing for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Queries answered on one TCP connection before it is closed.
    pub max_queries_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tcp_connections: 64,
            tcp_idle_timeout: Duration::from_secs(10),
            max_queries_per_connection: 100,
        }
    }
}

/// Response counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Responses sent, by rcode (0 NOERROR, 1 FORMERR, 3 NXDOMAIN, 4 NOTIMP, 5 REFUSED, 16
    /// BADVERS, …); see [`rcode_label`].
    pub responses: BTreeMap<u16, u64>,
    /// Responses sent with TC set.
    pub truncated: u64,
    /// Requests dropped without a reply (responses, shorter than a header, bad TCP framing).
    pub dropped: u64,
    /// TCP connections closed at once because the connection limit was reached.
    pub tcp_rejected: u64,
}

/// Metric-friendly rcode name: `NOERROR`, `NXDOMAIN`, …, `RCODE<n>` for the rest.
pub fn rcode_label(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}

const RCODE_SLOTS: usize = 24;

#[derive(Debug, Default)]
struct Counters {
    by_rcode: [AtomicU64; RCODE_SLOTS],
    other_rcode: AtomicU64,
    truncated: AtomicU64,
    dropped: AtomicU64,
    tcp_rejected: AtomicU64,
}

impl Counters {
    fn record(&self, reply: Option<&Reply>) {
        let Some(reply) = reply else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.by_rcode.get(usize::from(u16::from(reply.rcode))) {
            Some(slot) => slot.fetch_add(1, Ordering::Relaxed),
            None => self.other_rcode.fetch_add(1, Ordering::Relaxed),
        };
        if reply.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The built-in server: current zone snapshot, counters, limits.
#[derive(Debug)]
pub struct Builtin {
    zone: RwLock<Arc<ZoneSnapshot>>,
    counters: Counters,
    limits: Limits,
}

/// A starting serial that moves forward across restarts: the current unix time, or one more
/// than the stored serial if that is ahead (RFC 1982 comparison).
pub fn resume_serial(stored: Option<u32>, unix_now_secs: u64) -> u32 {
    let now = u32::try_from(unix_now_secs).unwrap_or(u32::MAX);
    match stored {
        Some(stored) => {
            let next = stored.wrapping_add(1);
            if serial_gt(now, next) { now } else { next }
        }
        None => now,
    }
}

/// RFC 1982 "a > b" for 32-bit serials.
fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < (1 << 31)
}

fn zone_matches(apex: &Name, zone: &str) -> bool {
    failover_name(zone).is_ok_and(|z| z == *apex)
}

fn same_served(a: &RecordSet, b: &RecordSet) -> bool {
    let mut left = a.addrs.clone();
    let mut right = b.addrs.clone();
    left.sort();
    left.dedup();
    right.sort();
    right.dedup();
    match (left.is_empty(), right.is_empty()) {
        (true, true) => true,
        (false, false) => left == right && a.ttl == b.ttl,
        _ => false,
    }
}

impl Builtin {
    /// `failover`: the failover RRsets to serve at start (from the coordinator's state);
    /// `initial_serial`: see [`resume_serial`].
    pub fn new(
        config: BuiltinConfig,
        failover: Vec<RecordSet>,
        initial_serial: u32,
    ) -> Result<Builtin, ConfigError> {
        let failover = failover
            .iter()
            .filter(|s| !s.addrs.is_empty())
            .map(normalize)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| config_error("failover records", m))?;
        let data = ZoneData {
            apex: config.apex,
            ttl: config.ttl,
            soa: config.soa,
            serial: initial_serial,
            ns: config.ns,
            records: config.records,
            failover,
        };
        let snapshot = ZoneSnapshot::new(data).map_err(|m| config_error("failover records", m))?;
        Ok(Builtin {
            zone: RwLock::new(Arc::new(snapshot)),
            counters: Counters::default(),
            limits: Limits::default(),
        })
    }

    pub fn with_limits(mut self, limits: Limits) -> Builtin {
        self.limits = limits;
        self
    }

    /// What is served right now.
    pub fn snapshot(&self) -> Arc<ZoneSnapshot> {
        self.zone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The SOA serial served now; persist it after a change and pass it to [`resume_serial`].
    pub fn serial(&self) -> u32 {
        self.snapshot().serial()
    }

    pub fn apex(&self) -> Name {
        self.snapshot().data.apex.clone()
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
        let snapshot = self.snapshot();
        if !zone_matches(&snapshot.data.apex, zone) {
            return Err(DnsError::Rejected(format!(
                "zone {zone} is not served here (this server has {})",
                snapshot.data.apex
            )));
        }
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
        let mut guard = self.zone.write().unwrap_or_else(PoisonError::into_inner);
        let current = guard.clone();
        let data = &current.data;
        if !zone_matches(&data.apex, &change.zone) {
            return Err(DnsError::Rejected(format!(
                "zone {} is not served here (this server has {})",
                change.zone, data.apex
            )));
        }
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
        let empty = |t: &RecordSet| RecordSet::new(t.name.clone(), t.rtype, 0, Vec::new());
        let already = change
            .to
            .iter()
            .zip(&served)
            .all(|(t, s)| same_served(t, s.cloned().as_ref().unwrap_or(&empty(t))));
        if already {
            return Ok(data.serial);
        }
        if !force {
            for (f, s) in change.from.iter().zip(&served) {
                let s = s.cloned().unwrap_or_else(|| empty(f));
                if !same_served(f, &s) {
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
            .map_err(DnsError::Rejected)?;
        next.failover.retain(|s| !to.iter().any(|t| t.same_key(s)));
        next.failover
            .extend(to.into_iter().filter(|t| !t.addrs.is_empty()));
        next.serial = data.serial.wrapping_add(1);
        let snapshot = ZoneSnapshot::new(next).map_err(DnsError::Rejected)?;
        let serial = snapshot.serial();
        *guard = Arc::new(snapshot);
        Ok(serial)
    }

    /// Answers on every socket until `shutdown`, then waits for open connections to finish
    /// their current query.
    pub async fn serve(
        self: Arc<Self>,
        udp: Vec<UdpSocket>,
        tcp: Vec<TcpListener>,
        shutdown: CancellationToken,
    ) {
        let tracker = TaskTracker::new();
        for socket in udp {
            tracker.spawn(self.clone().udp_loop(socket, shutdown.clone()));
        }
        let permits = Arc::new(Semaphore::new(self.limits.max_tcp_connections));
        for listener in tcp {
            tracker.spawn(self.clone().tcp_accept_loop(
                listener,
                permits.clone(),
                shutdown.clone(),
                tracker.clone(),
            ));
        }
        tracker.close();
        tracker.wait().await;
    }

    /// [`respond`] on the current snapshot. The parser is third-party code fed attacker
    /// bytes: should it ever panic, that request is dropped and the loop keeps serving.
    fn respond_guarded(&self, request: &[u8], transport: Transport) -> Option<Reply> {
        let zone = self.snapshot();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            respond(request, &zone, transport)
        }))
        .unwrap_or_else(|_| {
            warn!(
                len = request.len(),
                "dns request handling panicked; request dropped"
            );
            None
        })
    }

    async fn udp_loop(self: Arc<Self>, socket: UdpSocket, shutdown: CancellationToken) {
        // One datagram can be up to 64 KiB; read it whole so an oversized one is seen as such.
        let mut buf = vec![0u8; usize::from(u16::MAX)];
        loop {
            let received = tokio::select! {
                _ = shutdown.cancelled() => return,
                received = socket.recv_from(&mut buf) => received,
            };
            let (len, peer) = match received {
                Ok(received) => received,
                Err(error) => {
                    debug!(%error, "udp receive failed");
                    // Back off briefly so a persistent socket error cannot spin a core.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(10)) => continue,
                    }
                }
            };
            let request = buf.get(..len).unwrap_or_default();
            let reply = self.respond_guarded(request, Transport::Udp);
            self.counters.record(reply.as_ref());
            if let Some(reply) = reply
                && let Err(error) = socket.send_to(&reply.bytes, peer).await
            {
                debug!(%error, %peer, "udp send failed");
            }
        }
    }

    async fn tcp_accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        permits: Arc<Semaphore>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "tcp accept failed");
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.counters.tcp_rejected.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "tcp connection limit reached, closing");
                drop(stream);
                continue;
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                server.tcp_connection(stream, shutdown).await;
                drop(permit);
            });
        }
    }

    async fn tcp_connection(&self, mut stream: TcpStream, shutdown: CancellationToken) {
        let idle = self.limits.tcp_idle_timeout;
        let mut buf = vec![0u8; MAX_REQUEST_LEN];
        for _ in 0..self.limits.max_queries_per_connection {
            let mut len = [0u8; 2];
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = tokio::time::timeout(idle, stream.read_exact(&mut len)) => read,
            };
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len == 0 || len > MAX_REQUEST_LEN {
                self.counters.record(None);
                return;
            }
            let Some(request) = buf.get_mut(..len) else {
                return;
            };
            let read = tokio::select! {
                _ = shutdown.cancelled() => return,
                read = tokio::time::timeout(idle, stream.read_exact(request)) => read,
            };
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let reply = self.respond_guarded(request, Transport::Tcp);
            self.counters.record(reply.as_ref());
            let Some(reply) = reply else {
                return;
            };
            let Ok(reply_len) = u16::try_from(reply.bytes.len()) else {
                return;
            };
            let mut framed = Vec::with_capacity(reply.bytes.len() + 2);
            framed.extend_from_slice(&reply_len.to_be_bytes());
            framed.extend_from_slice(&reply.bytes);
            match tokio::time::timeout(idle, stream.write_all(&framed)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}

/// Binds UDP and TCP on every address; errors name the address.
pub async fn bind(addrs: &[SocketAddr]) -> io::Result<(Vec<UdpSocket>, Vec<TcpListener>)> {
    let mut udp = Vec::with_capacity(addrs.len());
    let mut tcp = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind udp {addr}: {e}")))?;
        // Port 0: let TCP take the port UDP got, so both answer on the same address.
        let tcp_addr = socket.local_addr()?;
        let listener = TcpListener::bind(tcp_addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind tcp {tcp_addr}: {e}")))?;
        udp.push(socket);
        tcp.push(listener);
    }
    Ok((udp, tcp))
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use proptest::prelude::*;

    const CONFIG: &str = r#"
listen = ["127.0.0.1:5353", "[::1]:5353"]
zone = "example.test."
ttl = 300
ns = ["ns1.example.test.", "ns.elsewhere.test."]
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60 }
records = [
  { name = "ns1", type = "A", value = "192.0.2.53" },
  { name = "ns1", type = "AAAA", value = "2001:db8::53" },
  { name = "@", type = "MX", value = "10 mail.example.test.", ttl = 3600 },
  { name = "mail.example.test.", type = "A", value = "192.0.2.25" },
  { name = "@", type = "TXT", value = "v=spf1 -all" },
  { name = "alias", type = "CNAME", value = "www.example.test." },
  { name = "away", type = "CNAME", value = "www.other.test." },
  { name = "loop1", type = "CNAME", value = "loop2.example.test." },
  { name = "loop2", type = "CNAME", value = "loop1.example.test." },
  { name = "deep.below", type = "TXT", value = "leaf" },
]
"#;

    fn parse(toml_text: &str) -> Config {
        toml::from_str(toml_text).unwrap()
    }

    fn www(addrs: &[&str], ttl: u32) -> RecordSet {
        RecordSet::new(
            "www.example.test.",
            RecordType::A,
            ttl,
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
        )
    }

    fn server() -> Builtin {
        let config = parse(CONFIG).build().unwrap();
        Builtin::new(config, vec![www(&["192.0.2.10"], 300)], 7).unwrap()
    }

    fn query(name: &str, rtype: WireType) -> Message {
        let mut message = Message::query();
        message.metadata.id = 4242;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        message
    }

    fn with_edns(mut message: Message, payload: u16) -> Message {
        let mut edns = Edns::new();
        edns.set_max_payload(payload);
        message.set_edns(edns);
        message
    }

    fn ask(server: &Builtin, name: &str, rtype: WireType) -> Message {
        answer(&query(name, rtype), &server.snapshot())
    }

    fn rdata(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| r.data.to_string()).collect()
    }

    // --- config ---

    fn build_err(toml_text: &str) -> ConfigError {
        parse(toml_text).build().unwrap_err()
    }

    const BASE: &str =
        "listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = [\"ns.other.test.\"]\n";

    #[test]
    fn example_config_builds() {
        let config = parse(CONFIG).build().unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(config.apex, Name::from_ascii("example.test.").unwrap());
        assert_eq!(config.records.len(), 10);
        assert_eq!(config.soa.minimum, 60);
        assert_eq!(config.soa.refresh, 3600);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error = toml::from_str::<Config>(&format!("{BASE}colour = \"red\"\n")).unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
        let error = toml::from_str::<Config>(&format!(
            "{BASE}records = [{{ name = \"a\", type = \"A\", value = \"192.0.2.1\", weight = 1 }}]\n"
        ))
        .unwrap_err();
        assert!(error.to_string().contains("weight"), "{error}");
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "listen = [\"localhost\"]\nzone = \"example.test.\"\nns = [\"ns.other.test.\"]\n",
                "listen[0]",
                "address with port",
            ),
            (
                "listen = []\nzone = \"example.test.\"\nns = [\"ns.other.test.\"]\n",
                "listen",
                "at least one",
            ),
            (
                "listen = [\"127.0.0.1:53\"]\nzone = \"example.test\"\nns = [\"ns.other.test.\"]\n",
                "zone",
                "ending with '.'",
            ),
            (
                "listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = []\n",
                "ns",
                "at least one",
            ),
            (
                "listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = [\"ns1.example.test\"]\n",
                "ns[0]",
                "fully qualified",
            ),
            (
                "listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = [\"ns1.example.test.\"]\n",
                "ns[0]",
                "needs an A or AAAA",
            ),
            (
                "listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = [\"ns.other.test.\"]\nttl = 4294967295\n",
                "ttl",
                "up to",
            ),
        ];
        for (text, key, words) in cases {
            let error = build_err(text);
            assert_eq!(error.key, *key, "{text}: {error}");
            assert!(error.message.contains(words), "{text}: {error}");
        }
        let records: &[(&str, &str, &str)] = &[
            (
                "{ name = \"a\", type = \"A\", value = \"2001:db8::1\" }",
                "records[0].value",
                "IPv4",
            ),
            (
                "{ name = \"a\", type = \"AAAA\", value = \"192.0.2.1\" }",
                "records[0].value",
                "IPv6",
            ),
            (
                "{ name = \"a\", type = \"SRV\", value = \"x\" }",
                "records[0].type",
                "one of A, AAAA",
            ),
            (
                "{ name = \"a.other.test.\", type = \"A\", value = \"192.0.2.1\" }",
                "records[0].name",
                "inside example.test.",
            ),
            (
                "{ name = \"*\", type = \"A\", value = \"192.0.2.1\" }",
                "records[0].name",
                "wildcards",
            ),
            (
                "{ name = \"a\", type = \"CNAME\", value = \"b.example.test\" }",
                "records[0].value",
                "fully qualified",
            ),
            (
                "{ name = \"@\", type = \"CNAME\", value = \"b.example.test.\" }",
                "records[0].name",
                "apex",
            ),
            (
                "{ name = \"a\", type = \"MX\", value = \"mail.example.test.\" }",
                "records[0].value",
                "<preference>",
            ),
            (
                "{ name = \"a\", type = \"MX\", value = \"99999 mail.example.test.\" }",
                "records[0].value",
                "preference",
            ),
            (
                "{ name = \"a\", type = \"A\", value = \"192.0.2.1\", ttl = 3000000000 }",
                "records[0].ttl",
                "up to",
            ),
            (
                "{ name = \"a\", type = \"A\", value = \"192.0.2.1\" }, { name = \"A\", type = \"a\", value = \"192.0.2.1\" }",
                "records[1]",
                "duplicates records[0]",
            ),
            (
                "{ name = \"a\", type = \"A\", value = \"192.0.2.1\" }, { name = \"a\", type = \"A\", value = \"192.0.2.2\", ttl = 5 }",
                "records[1].ttl",
                "same TTL",
            ),
            (
                "{ name = \"a\", type = \"TXT\", value = \"x\" }, { name = \"a\", type = \"CNAME\", value = \"b.example.test.\" }",
                "records[1]",
                "cannot share",
            ),
        ];
        for (record, key, words) in records {
            let error = build_err(&format!("{BASE}records = [{record}]\n"));
            assert_eq!(error.key, *key, "{record}: {error}");
            assert!(error.message.contains(words), "{record}: {error}");
        }
        let error = build_err(&format!(
            "{BASE}soa = {{ rname = \"hostmaster@example.test\" }}\n"
        ));
        assert_eq!(error.key, "soa.rname");
        assert_eq!(error.to_string(), format!("soa.rname: {}", error.message));
    }

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

    // --- answers ---

    #[test]
    fn a_query_gets_an_authoritative_answer_in_the_question_case() {
        let server = server();
        let response = ask(&server, "WwW.Example.TEST.", WireType::A);
        assert_eq!(response.metadata.id, 4242);
        assert_eq!(response.metadata.message_type, MessageType::Response);
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.metadata.authoritative);
        assert!(!response.metadata.recursion_available);
        assert_eq!(
            response.queries,
            query("WwW.Example.TEST.", WireType::A).queries
        );
        assert_eq!(rdata(&response.answers), ["192.0.2.10"]);
        assert!(
            response.answers[0]
                .name
                .eq_case(&Name::from_ascii("WwW.Example.TEST.").unwrap())
        );
        assert_eq!(response.answers[0].ttl, 300);
        assert!(response.authorities.is_empty());
        assert!(response.edns.is_none());
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let server = server();
        // Name that does not exist: NXDOMAIN.
        let response = ask(&server, "nope.example.test.", WireType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert!(response.metadata.authoritative);
        assert!(response.answers.is_empty());
        assert_eq!(response.authorities.len(), 1);
        let soa = &response.authorities[0];
        assert_eq!(soa.record_type(), WireType::SOA);
        assert_eq!(soa.ttl, 60, "min(SOA TTL 300, minimum 60)");
        let RData::SOA(fields) = &soa.data else {
            panic!("not a SOA")
        };
        assert_eq!(fields.serial, 7);
        // Existing name without that type: NODATA.
        for (name, rtype) in [
            ("www.example.test.", WireType::AAAA),
            ("www.example.test.", WireType::TXT),
            ("example.test.", WireType::A),
            ("below.example.test.", WireType::TXT), // empty non-terminal
            ("mail.example.test.", WireType::Unknown(65280)),
        ] {
            let response = ask(&server, name, rtype);
            assert_eq!(
                response.metadata.response_code,
                ResponseCode::NoError,
                "{name} {rtype}"
            );
            assert!(response.answers.is_empty(), "{name} {rtype}");
            assert_eq!(response.authorities.len(), 1, "{name} {rtype}");
            assert_eq!(response.authorities[0].record_type(), WireType::SOA);
        }
        let response = ask(&server, "deep.below.example.test.", WireType::TXT);
        assert_eq!(rdata(&response.answers), ["leaf"]);
    }

    #[test]
    fn apex_records() {
        let server = server();
        let response = ask(&server, "example.test.", WireType::SOA);
        assert_eq!(response.answers.len(), 1);
        assert_eq!(response.answers[0].ttl, 300);
        assert_eq!(
            rdata(&response.answers),
            ["ns1.example.test. hostmaster.example.test. 7 3600 600 86400 60"]
        );
        let response = ask(&server, "example.test.", WireType::NS);
        assert_eq!(
            rdata(&response.answers),
            ["ns1.example.test.", "ns.elsewhere.test."]
        );
        // Glue for the in-zone nameserver only.
        let mut glue = rdata(&response.additionals);
        glue.sort();
        assert_eq!(glue, ["192.0.2.53", "2001:db8::53"]);
        let response = ask(&server, "example.test.", WireType::MX);
        assert_eq!(rdata(&response.answers), ["10 mail.example.test."]);
        assert_eq!(response.answers[0].ttl, 3600);
        assert_eq!(rdata(&response.additionals), ["192.0.2.25"]);
        let response = ask(&server, "example.test.", WireType::TXT);
        assert_eq!(response.answers.len(), 1);
        assert!(rdata(&response.answers)[0].contains("v=spf1 -all"));
    }

    #[test]
    fn cnames_are_followed_inside_the_zone_only() {
        let server = server();
        let response = ask(&server, "alias.example.test.", WireType::A);
        assert_eq!(
            rdata(&response.answers),
            ["www.example.test.", "192.0.2.10"]
        );
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        let response = ask(&server, "alias.example.test.", WireType::CNAME);
        assert_eq!(rdata(&response.answers), ["www.example.test."]);
        let response = ask(&server, "away.example.test.", WireType::A);
        assert_eq!(rdata(&response.answers), ["www.other.test."]);
        assert!(response.authorities.is_empty());
        let response = ask(&server, "loop1.example.test.", WireType::A);
        assert_eq!(
            rdata(&response.answers),
            ["loop2.example.test.", "loop1.example.test."]
        );
        // A CNAME to an in-zone name without that type: NODATA after the chain.
        let response = ask(&server, "alias.example.test.", WireType::AAAA);
        assert_eq!(rdata(&response.answers), ["www.example.test."]);
        assert_eq!(response.authorities[0].record_type(), WireType::SOA);
    }

    #[test]
    fn refused_notimp_formerr_badvers() {
        let server = server();
        let zone = server.snapshot();
        let response = ask(&server, "www.other.test.", WireType::A);
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        assert!(!response.metadata.authoritative);
        assert!(response.answers.is_empty() && response.authorities.is_empty());
        let response = ask(&server, "test.", WireType::SOA);
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
        for rtype in [WireType::AXFR, WireType::IXFR] {
            assert_eq!(
                ask(&server, "example.test.", rtype).metadata.response_code,
                ResponseCode::Refused
            );
        }
        let mut chaos = query("version.bind.", WireType::TXT);
        chaos.queries[0].set_query_class(DNSClass::CH);
        assert_eq!(
            answer(&chaos, &zone).metadata.response_code,
            ResponseCode::Refused
        );
        for rtype in [WireType::OPT, WireType::TSIG, WireType::Unknown(0)] {
            assert_eq!(
                ask(&server, "www.example.test.", rtype)
                    .metadata
                    .response_code,
                ResponseCode::FormErr,
                "{rtype}"
            );
        }
        let mut notify = query("example.test.", WireType::SOA);
        notify.metadata.op_code = OpCode::Notify;
        assert_eq!(
            answer(&notify, &zone).metadata.response_code,
            ResponseCode::NotImp
        );
        let mut two = query("www.example.test.", WireType::A);
        two.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            WireType::SOA,
        ));
        let response = answer(&two, &zone);
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert!(response.answers.is_empty());
        let mut future = with_edns(query("www.example.test.", WireType::A), 1232);
        future.edns.as_mut().unwrap().set_version(1);
        let response = answer(&future, &zone);
        assert_eq!(response.metadata.response_code, ResponseCode::BADVERS);
        assert_eq!(response.edns.as_ref().unwrap().version(), 0);
        // Through the wire too: the extended rcode survives encoding.
        let reply = respond(&future.to_vec().unwrap(), &zone, Transport::Udp).unwrap();
        assert_eq!(
            // 16 decodes as BADSIG, its TSIG twin.
            u16::from(
                Message::from_vec(&reply.bytes)
                    .unwrap()
                    .metadata
                    .response_code
            ),
            16
        );
    }

    #[test]
    fn any_is_answered_minimally() {
        let server = server();
        let response = ask(&server, "example.test.", WireType::ANY);
        assert_eq!(response.answers.len(), 1);
        assert_eq!(response.answers[0].record_type(), WireType::SOA);
        let response = ask(&server, "www.example.test.", WireType::ANY);
        assert_eq!(rdata(&response.answers), ["192.0.2.10"]);
        let response = ask(&server, "nope.example.test.", WireType::ANY);
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn edns_is_echoed_with_the_do_bit() {
        let server = server();
        let mut request = with_edns(query("www.example.test.", WireType::A), 4096);
        request.edns.as_mut().unwrap().set_dnssec_ok(true);
        let response = answer(&request, &server.snapshot());
        let edns = response.edns.unwrap();
        assert_eq!(edns.max_payload(), MAX_UDP_PAYLOAD);
        assert!(edns.flags().dnssec_ok);
    }

    // --- respond: sizes and malformed input ---

    fn big_server(count: usize) -> Builtin {
        let mut text = String::from(BASE);
        text.push_str("records = [\n");
        for i in 0..count {
            text.push_str(&format!(
                "{{ name = \"big\", type = \"TXT\", value = \"{i:03}{}\" }},\n",
                "x".repeat(180)
            ));
        }
        text.push_str("]\n");
        Builtin::new(parse(&text).build().unwrap(), Vec::new(), 1).unwrap()
    }

    #[test]
    fn large_answers_are_truncated_to_the_payload_size() {
        let server = big_server(20); // about 3.9 kB of TXT
        let zone = server.snapshot();
        let cases = [
            (
                query("big.example.test.", WireType::TXT),
                Transport::Udp,
                true,
                512,
            ),
            (
                with_edns(query("big.example.test.", WireType::TXT), 1232),
                Transport::Udp,
                true,
                1232,
            ),
            (
                with_edns(query("big.example.test.", WireType::TXT), 65000),
                Transport::Udp,
                true,
                1232,
            ),
            (
                with_edns(query("big.example.test.", WireType::TXT), 100),
                Transport::Udp,
                true,
                512,
            ),
            (
                query("big.example.test.", WireType::TXT),
                Transport::Tcp,
                false,
                65535,
            ),
        ];
        for (request, transport, truncated, limit) in cases {
            let reply = respond(&request.to_vec().unwrap(), &zone, transport).unwrap();
            assert!(
                reply.bytes.len() <= limit,
                "{} > {limit}",
                reply.bytes.len()
            );
            assert_eq!(reply.truncated, truncated);
            let message = Message::from_vec(&reply.bytes).unwrap();
            assert_eq!(message.metadata.truncation, truncated);
            assert_eq!(message.queries, request.queries);
            assert_eq!(message.edns.is_some(), request.edns.is_some());
            if truncated {
                assert!(message.answers.is_empty());
            } else {
                assert_eq!(message.answers.len(), 20);
            }
        }
        let small = with_edns(query("www.example.test.", WireType::A), 512);
        let reply = respond(&small.to_vec().unwrap(), &server.snapshot(), Transport::Udp).unwrap();
        assert!(!reply.truncated);
    }

    #[test]
    fn additional_data_is_dropped_before_truncating() {
        // Answer fits in 512, answer + glue does not.
        let mut text =
            String::from("listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = [");
        // Long labels make the NS answer big; glue compresses to a pointer per record.
        let label = |i: usize| format!("ns{i}-{}", "n".repeat(45));
        for i in 0..7 {
            text.push_str(&format!("\"{}.example.test.\",", label(i)));
        }
        text.push_str("]\nrecords = [\n");
        for i in 0..7 {
            text.push_str(&format!(
                "{{ name = \"{}\", type = \"AAAA\", value = \"2001:db8::{i}\" }},\n",
                label(i)
            ));
            text.push_str(&format!(
                "{{ name = \"{}\", type = \"A\", value = \"192.0.2.{i}\" }},\n",
                label(i)
            ));
        }
        text.push_str("]\n");
        let server = Builtin::new(parse(&text).build().unwrap(), Vec::new(), 1).unwrap();
        let zone = server.snapshot();
        let request = query("example.test.", WireType::NS);
        let tcp = Message::from_vec(
            &respond(&request.to_vec().unwrap(), &zone, Transport::Tcp)
                .unwrap()
                .bytes,
        )
        .unwrap();
        assert_eq!(tcp.additionals.len(), 14);
        let tcp_len = tcp.to_vec().unwrap().len();
        assert!(
            tcp_len > 512,
            "test needs a reply over 512 bytes, got {tcp_len}"
        );
        let reply = respond(&request.to_vec().unwrap(), &zone, Transport::Udp).unwrap();
        let udp = Message::from_vec(&reply.bytes).unwrap();
        assert!(!udp.metadata.truncation);
        assert_eq!(udp.answers.len(), 7);
        assert!(udp.additionals.is_empty());
    }

    #[test]
    fn malformed_requests() {
        let server = server();
        let zone = server.snapshot();
        let good = query("www.example.test.", WireType::A).to_vec().unwrap();
        // Shorter than a header: dropped.
        for len in 0..12 {
            assert!(
                respond(&good[..len], &zone, Transport::Udp).is_none(),
                "{len}"
            );
        }
        // A response: dropped (no reflection loops).
        let mut response = good.clone();
        response[2] |= 0x80;
        assert!(respond(&response, &zone, Transport::Udp).is_none());
        // Header fine, body cut short: FORMERR with the id.
        for len in 12..good.len() {
            let reply = respond(&good[..len], &zone, Transport::Udp).unwrap();
            let message = Message::from_vec(&reply.bytes).unwrap();
            assert_eq!(message.metadata.id, 4242);
            assert_eq!(
                message.metadata.response_code,
                ResponseCode::FormErr,
                "{len}"
            );
        }
        // QDCOUNT 0 and 65535: FORMERR without parsing.
        for count in [0u16, 2, 65535] {
            let mut bad = good.clone();
            bad[4..6].copy_from_slice(&count.to_be_bytes());
            let reply = respond(&bad, &zone, Transport::Udp).unwrap();
            assert_eq!(reply.rcode, ResponseCode::FormErr, "{count}");
        }
        // Unknown opcode with garbage body: NOTIMP.
        let mut update = good.clone();
        update[2] = (update[2] & 0x87) | (5 << 3);
        update.truncate(14);
        let reply = respond(&update, &zone, Transport::Udp).unwrap();
        assert_eq!(reply.rcode, ResponseCode::NotImp);
        // Oversized: FORMERR.
        let mut huge = good.clone();
        huge.resize(MAX_REQUEST_LEN + 1, 0);
        assert_eq!(
            respond(&huge, &zone, Transport::Udp).unwrap().rcode,
            ResponseCode::FormErr
        );
        // Trailing bytes after a valid message are ignored; the answer is normal.
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            respond(&trailing, &zone, Transport::Udp).unwrap().rcode,
            ResponseCode::NoError
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_break_respond(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let zone = server().snapshot();
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Some(reply) = respond(&bytes, &zone, transport) {
                    if transport == Transport::Udp {
                        prop_assert!(reply.bytes.len() <= usize::from(MAX_UDP_PAYLOAD));
                    }
                    let message = Message::from_vec(&reply.bytes).unwrap();
                    prop_assert_eq!(message.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
                    prop_assert_eq!(message.metadata.message_type, MessageType::Response);
                }
            }
        }

        #[test]
        fn mutated_queries_never_break_respond(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6)) {
            let zone = server().snapshot();
            let mut bytes = with_edns(query("www.example.test.", WireType::A), 1232).to_vec().unwrap();
            for (at, value) in flips {
                let at = at % bytes.len();
                bytes[at] ^= value;
            }
            if let Some(reply) = respond(&bytes, &zone, Transport::Udp) {
                prop_assert!(reply.bytes.len() <= usize::from(MAX_UDP_PAYLOAD));
                prop_assert!(Message::from_vec(&reply.bytes).is_ok());
            }
        }
    }

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
        assert_eq!(server.serial(), 8);
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
        assert_eq!(server.serial(), 7);
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
        assert_eq!(server.serial(), 7);
        assert!(matches!(
            server.served("other.test.", &[]),
            Err(DnsError::Rejected(_))
        ));
    }

    #[test]
    fn serial_resumes_forward() {
        assert_eq!(resume_serial(None, 1_700_000_000), 1_700_000_000);
        assert_eq!(resume_serial(Some(5), 1_700_000_000), 1_700_000_000);
        assert_eq!(
            resume_serial(Some(1_700_000_000), 1_700_000_000),
            1_700_000_001
        );
        assert_eq!(
            resume_serial(Some(1_800_000_000), 1_700_000_000),
            1_800_000_001
        );
        // Serial arithmetic wraps: after u32::MAX comes 0, and 5 is ahead of 0.
        assert_eq!(resume_serial(Some(u32::MAX), 5), 5);
        assert_eq!(resume_serial(Some(u32::MAX), 0), 0);
        assert_eq!(
            resume_serial(Some(3_000_000_000), 1_700_000_000),
            3_000_000_001
        );
    }

    #[test]
    fn stats_count_by_rcode() {
        let server = server();
        let zone = server.snapshot();
        for name in ["www.example.test.", "nope.example.test.", "x.other.test."] {
            let reply = respond(
                &query(name, WireType::A).to_vec().unwrap(),
                &zone,
                Transport::Udp,
            );
            server.counters.record(reply.as_ref());
        }
        server.counters.record(None);
        let stats = server.stats();
        assert_eq!(stats.responses, BTreeMap::from([(0, 1), (3, 1), (5, 1)]));
        assert_eq!(stats.dropped, 1);
        assert_eq!(rcode_label(3), "NXDOMAIN");
    }
}
