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
            let reply = respond(request, &self.snapshot(), Transport::Udp);
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
            let reply = respond(request, &self.snapshot(), Transport::Tcp);
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
mod tests {}
