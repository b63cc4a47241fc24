//! Checking what the authoritative servers of a zone actually serve: plain non-recursive
//! queries straight at each server (UDP, TCP when the answer is truncated), polled until every
//! server serves the expected addresses and TTL ([`same_records`] with [`Ttl::Compared`]) or a
//! deadline passes.
//!
//! Which servers: those configured (`verify.servers`, else the rfc2136 backend's own server)
//! and, with `discover_ns`, the ones the zone's NS records name. [`discover_authorities`] asks
//! a known authoritative server for the zone's NS RRset and each NS name's addresses (glue or
//! zone data); when no server of the zone is known (a hosted provider), [`discover_via_resolvers`]
//! asks a recursive resolver (`verify.resolvers`, else this machine's `/etc/resolv.conf`) for
//! the NS names and their addresses, and only that: what the zone serves is always asked of
//! its authoritative servers directly. [`survey`] asks every authority what it serves now, and
//! the pure [`drift`] says, one line each, where that differs from what Quorate expects.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType as HRecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::{RecordSet, RecordType, Ttl, describe_sets, normalize_name, same_records, same_set};

/// Largest answer read over TCP (the 16-bit length prefix allows no more anyway).
const MAX_TCP_ANSWER: usize = 65_535;
/// Datagrams with a foreign id read before giving up on one UDP exchange.
const MAX_STRAY_DATAGRAMS: usize = 16;

/// Why a query got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no answer from {server} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("{server}: {msg}")]
    Network { server: SocketAddr, msg: String },
    #[error("{server} answered {rcode} for {name} {rtype}")]
    Rcode {
        server: SocketAddr,
        rcode: String,
        name: String,
        rtype: String,
    },
    #[error("{server} is not authoritative for {name} (answer without the AA flag)")]
    NotAuthoritative { server: SocketAddr, name: String },
    #[error("{server} sent a malformed answer: {msg}")]
    Malformed { server: SocketAddr, msg: String },
    #[error("bad query: {0}")]
    BadQuery(String),
}

impl QueryError {
    /// Refused / not authoritative answers say the server is set up wrongly rather than busy.
    pub fn is_refusal(&self) -> bool {
        match self {
            QueryError::Rcode { rcode, .. } => rcode == "REFUSED" || rcode == "NOTAUTH",
            QueryError::NotAuthoritative { .. } => true,
            _ => false,
        }
    }
}

/// The wire type of a failover record type.
pub(crate) fn proto_type(rtype: RecordType) -> HRecordType {
    match rtype {
        RecordType::A => HRecordType::A,
        RecordType::AAAA => HRecordType::AAAA,
    }
}

fn rcode_text(rcode: ResponseCode) -> String {
    rcode.to_str().to_ascii_uppercase()
}

/// Sends one message and returns the answer: UDP first (unless `tcp`), TCP when the UDP answer
/// is truncated. The answer's id must match.
pub async fn exchange(
    server: SocketAddr,
    message: &Message,
    tcp: bool,
    timeout: Duration,
) -> Result<Message, QueryError> {
    let bytes = message
        .to_vec()
        .map_err(|e| QueryError::BadQuery(e.to_string()))?;
    exchange_bytes(server, &bytes, message.metadata.id, tcp, timeout)
        .await
        .map(|(answer, _)| answer)
}

/// [`exchange`] for a message already encoded (e.g. TSIG-signed): the answer parsed and as
/// received, since a signed answer is verified over its exact bytes.
pub async fn exchange_bytes(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    tcp: bool,
    timeout: Duration,
) -> Result<(Message, Vec<u8>), QueryError> {
    let run = async {
        if !tcp {
            let answer = exchange_udp(server, bytes, id).await?;
            if !answer.0.metadata.truncation {
                return Ok(answer);
            }
        }
        exchange_tcp(server, bytes, id).await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(QueryError::Timeout { server, timeout }),
    }
}

fn net_err(server: SocketAddr, what: &str, e: std::io::Error) -> QueryError {
    QueryError::Network {
        server,
        msg: format!("{what}: {e}"),
    }
}

async fn exchange_udp(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
) -> Result<(Message, Vec<u8>), QueryError> {
    let local: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| net_err(server, "binding a UDP socket", e))?;
    sock.connect(server)
        .await
        .map_err(|e| net_err(server, "connecting UDP socket", e))?;
    sock.send(bytes)
        .await
        .map_err(|e| net_err(server, "sending query", e))?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..MAX_STRAY_DATAGRAMS {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| net_err(server, "receiving answer", e))?;
        let Ok(msg) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if msg.metadata.id == id && msg.metadata.message_type == MessageType::Response {
            return Ok((msg, buf[..n].to_vec()));
        }
    }
    Err(QueryError::Malformed {
        server,
        msg: "no answer with the query's id".into(),
    })
}

async fn exchange_tcp(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
) -> Result<(Message, Vec<u8>), QueryError> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| net_err(server, "connecting over TCP", e))?;
    let len =
        u16::try_from(bytes.len()).map_err(|_| QueryError::BadQuery("message too large".into()))?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    stream
        .write_all(&out)
        .await
        .map_err(|e| net_err(server, "sending over TCP", e))?;
    let mut lenbuf = [0u8; 2];
    stream
        .read_exact(&mut lenbuf)
        .await
        .map_err(|e| net_err(server, "reading TCP answer length", e))?;
    let n = usize::from(u16::from_be_bytes(lenbuf)).min(MAX_TCP_ANSWER);
    let mut buf = vec![0u8; n];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| net_err(server, "reading TCP answer", e))?;
    let msg = Message::from_vec(&buf).map_err(|e| QueryError::Malformed {
        server,
        msg: e.to_string(),
    })?;
    if msg.metadata.id != id {
        return Err(QueryError::Malformed {
            server,
            msg: "answer id does not match the query".into(),
        });
    }
    Ok((msg, buf))
}

fn parse_name(name: &str) -> Result<Name, QueryError> {
    Name::from_ascii(normalize_name(name))
        .map_err(|e| QueryError::BadQuery(format!("{name}: not a domain name ({e})")))
}

/// Asks `server` (no recursion) which records of `rtype` it serves at `name`; the answer must
/// be authoritative. A name or RRset that does not exist comes back as no records.
async fn query_raw(
    server: SocketAddr,
    name: &str,
    rtype: HRecordType,
    timeout: Duration,
) -> Result<Message, QueryError> {
    query_with(server, name, rtype, timeout, false).await
}

/// [`query_raw`], or with `recursive` a question to a resolver: recursion desired, and the
/// answer need not be authoritative.
async fn query_with(
    server: SocketAddr,
    name: &str,
    rtype: HRecordType,
    timeout: Duration,
    recursive: bool,
) -> Result<Message, QueryError> {
    let qname = parse_name(name)?;
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Query;
    msg.metadata.recursion_desired = recursive;
    msg.add_query(Query::query(qname, rtype));
    let answer = exchange(server, &msg, false, timeout).await?;
    let rcode = answer.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Err(QueryError::Rcode {
            server,
            rcode: rcode_text(rcode),
            name: name.to_string(),
            rtype: rtype.to_string(),
        });
    }
    if !recursive && !answer.metadata.authoritative {
        return Err(QueryError::NotAuthoritative {
            server,
            name: name.to_string(),
        });
    }
    Ok(answer)
}

/// The A or AAAA RRset `server` serves for `name`, asked directly (no recursion). The TTL is
/// the smallest TTL of the records (0 when there are none).
pub async fn query_rrset(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<RecordSet, QueryError> {
    let answer = query_raw(server, name, proto_type(rtype), timeout).await?;
    let want = normalize_name(name);
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut ttl: Option<u32> = None;
    for rec in &answer.answers {
        if normalize_name(&rec.name.to_ascii()) != want {
            continue;
        }
        let addr = match (&rec.data, rtype) {
            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
            _ => continue,
        };
        addrs.push(addr);
        ttl = Some(ttl.map_or(rec.ttl, |t: u32| t.min(rec.ttl)));
    }
    Ok(RecordSet::new(want, rtype, ttl.unwrap_or(0), addrs))
}

/// Every RRset of `like` as `server` serves it now.
pub async fn query_all(
    server: SocketAddr,
    like: &[RecordSet],
    timeout: Duration,
) -> Result<Vec<RecordSet>, QueryError> {
    let mut out = Vec::with_capacity(like.len());
    for set in like {
        out.push(query_rrset(server, &set.name, set.rtype, timeout).await?);
    }
    Ok(out)
}

/// The outcome of verifying one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCheck {
    pub server: SocketAddr,
    /// The server served exactly the expected addresses and TTLs before the deadline.
    pub ok: bool,
    /// Time from the start of the check to success (or to giving up).
    pub elapsed: Duration,
    /// What the server served at the last successful query.
    pub last_seen: Option<Vec<RecordSet>>,
    /// The error of the last query, if it failed.
    pub error: Option<String>,
}

/// Polls every server (concurrently) until it serves exactly `expected` (addresses and TTL),
/// or `deadline` has passed since the start. One result per server, in the given order.
pub async fn wait_until_served(
    servers: &[SocketAddr],
    expected: &[RecordSet],
    deadline: Duration,
    poll: Duration,
) -> Vec<ServerCheck> {
    let checks = servers
        .iter()
        .map(|&server| wait_one_served(server, expected, deadline, poll));
    futures::future::join_all(checks).await
}

async fn wait_one_served(
    server: SocketAddr,
    expected: &[RecordSet],
    deadline: Duration,
    poll: Duration,
) -> ServerCheck {
    let start = Instant::now();
    let poll = poll.max(Duration::from_millis(10));
    let mut last_seen = None;
    let mut error = None;
    // Bounded in time by `deadline`, and in count by this many rounds.
    let max_rounds = (deadline.as_millis() / poll.as_millis()).saturating_add(2);
    for _ in 0..max_rounds {
        let remaining = deadline.saturating_sub(start.elapsed());
        let per_query = remaining.clamp(Duration::from_millis(50), Duration::from_secs(2));
        match query_all(server, expected, per_query).await {
            Ok(seen) => {
                error = None;
                let ok = same_records(expected, &seen, Ttl::Compared);
                last_seen = Some(seen);
                if ok {
                    return ServerCheck {
                        server,
                        ok: true,
                        elapsed: start.elapsed(),
                        last_seen,
                        error,
                    };
                }
            }
            Err(e) => error = Some(e.to_string()),
        }
        if start.elapsed() >= deadline {
            break;
        }
        let remaining = deadline.saturating_sub(start.elapsed());
        tokio::time::sleep(poll.min(remaining)).await;
    }
    ServerCheck {
        server,
        ok: false,
        elapsed: start.elapsed(),
        last_seen,
        error,
    }
}

/// One authoritative server of the zone and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub addr: SocketAddr,
    /// The NS name it was found under (`Some` for discovered servers, `None` for listed ones).
    pub ns_name: Option<String>,
}

impl std::fmt::Display for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ns_name {
            Some(n) => write!(f, "{n} ({})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// NS names in the order the server listed them, deduplicated, normalised.
fn ns_names(answer: &Message, zone: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rec in &answer.answers {
        if normalize_name(&rec.name.to_ascii()) != zone {
            continue;
        }
        if let RData::NS(ns) = &rec.data {
            let n = normalize_name(&ns.0.to_ascii());
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// A and AAAA records for `name` in the additional section (glue).
fn glue(answer: &Message, name: &str) -> Vec<IpAddr> {
    answer
        .additionals
        .iter()
        .filter(|r| normalize_name(&r.name.to_ascii()) == name)
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Adds each of `addrs` (the addresses of name server `name`, IPv4 first) at `port` to
/// `found`, once.
fn push_authorities(found: &mut Vec<Authority>, mut addrs: Vec<IpAddr>, port: u16, name: &str) {
    addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    addrs.dedup();
    for ip in addrs {
        let addr = SocketAddr::new(ip, port);
        if !found.iter().any(|a| a.addr == addr) {
            found.push(Authority {
                addr,
                ns_name: Some(name.to_string()),
            });
        }
    }
}

/// The zone's NS records asked of each server in `via` (first that answers), each NS name's
/// A/AAAA asked of the same server (in-zone glue / zone data), addresses on port `port`;
/// plus `listed`, deduplicated. Problems (an NS name with no address found, no server answered)
/// are returned as text lines, not silently dropped.
///
/// Discovered authorities come first, in the order of the NS answer (each name's IPv4
/// addresses, then IPv6), then the listed ones not already found. Only `via` is ever asked:
/// an NS name outside the zone, whose address `via` does not hold, is reported, not resolved.
pub async fn discover_authorities(
    zone: &str,
    via: &[SocketAddr],
    listed: &[SocketAddr],
    port: u16,
    timeout: Duration,
) -> (Vec<Authority>, Vec<String>) {
    let zone = normalize_name(zone);
    let mut found: Vec<Authority> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut answered = false;
    for &server in via {
        let answer = match query_raw(server, &zone, HRecordType::NS, timeout).await {
            Ok(a) => a,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let names = ns_names(&answer, &zone);
        if names.is_empty() {
            failures.push(format!("{server} serves no NS records for {zone}"));
            continue;
        }
        answered = true;
        for name in names {
            let mut addrs = glue(&answer, &name);
            if addrs.is_empty() {
                let mut errors: Vec<String> = Vec::new();
                for rtype in [RecordType::A, RecordType::AAAA] {
                    match query_rrset(server, &name, rtype, timeout).await {
                        Ok(set) => addrs.extend(set.addrs),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                if addrs.is_empty() {
                    let why = if errors.is_empty() {
                        "it serves no A or AAAA record for it".to_string()
                    } else {
                        errors.join("; ")
                    };
                    problems.push(format!(
                        "NS {name} of {zone}: no address found at {server} ({why}); list its address in [dns.verify] servers"
                    ));
                    continue;
                }
            }
            push_authorities(&mut found, addrs, port, &name);
        }
        break;
    }
    if !via.is_empty() && !answered {
        problems.push(format!(
            "no server answered the NS query for {zone}: {}",
            failures.join("; ")
        ));
    }
    for &addr in listed {
        if !found.iter().any(|a| a.addr == addr) {
            found.push(Authority {
                addr,
                ns_name: None,
            });
        }
    }
    (found, problems)
}

/// Most resolvers read from `/etc/resolv.conf` (the C library reads three too).
const MAX_RESOLVERS: usize = 3;

/// Pure: the `nameserver` addresses of a resolv.conf text, on port 53, at most three.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A scoped IPv6 address (fe80::1%eth0) cannot be asked from here: left out.
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .take(MAX_RESOLVERS)
        .collect()
}

/// This machine's recursive resolvers (`/etc/resolv.conf`), read now: none if it cannot be read.
pub fn system_resolvers() -> Vec<SocketAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_conf(&t))
        .unwrap_or_default()
}

/// The zone's authoritative servers when none is known: the NS names and their addresses as
/// the first of `resolvers` that answers gives them (recursion desired), on port `port`.
/// Problems come back as lines, as in [`discover_authorities`]. The resolver is asked only
/// where the servers are; what they serve is then asked of them directly.
pub async fn discover_via_resolvers(
    zone: &str,
    resolvers: &[SocketAddr],
    port: u16,
    timeout: Duration,
) -> (Vec<Authority>, Vec<String>) {
    let zone = normalize_name(zone);
    let mut failures: Vec<String> = Vec::new();
    for &resolver in resolvers {
        let answer = match query_with(resolver, &zone, HRecordType::NS, timeout, true).await {
            Ok(a) => a,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let names = ns_names(&answer, &zone);
        if names.is_empty() {
            failures.push(format!(
                "resolver {resolver} knows no NS records for {zone}"
            ));
            continue;
        }
        let mut found: Vec<Authority> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        for name in names {
            let mut addrs = glue(&answer, &name);
            if addrs.is_empty() {
                for rtype in [HRecordType::A, HRecordType::AAAA] {
                    if let Ok(a) = query_with(resolver, &name, rtype, timeout, true).await {
                        addrs.extend(a.answers.iter().filter_map(|r| match &r.data {
                            RData::A(a) if normalize_name(&r.name.to_ascii()) == name => {
                                Some(IpAddr::V4(a.0))
                            }
                            RData::AAAA(a) if normalize_name(&r.name.to_ascii()) == name => {
                                Some(IpAddr::V6(a.0))
                            }
                            _ => None,
                        }));
                    }
                }
            }
            if addrs.is_empty() {
                problems.push(format!(
                    "NS {name} of {zone}: resolver {resolver} gave no address for it; list the zone's name servers in verify.servers"
                ));
                continue;
            }
            push_authorities(&mut found, addrs, port, &name);
        }
        return (found, problems);
    }
    let why = if resolvers.is_empty() {
        "no resolver to ask (/etc/resolv.conf lists none)".to_string()
    } else {
        failures.join("; ")
    };
    (
        Vec::new(),
        vec![format!(
            "the name servers of {zone} could not be found: {why}; list them in verify.servers"
        )],
    )
}

/// What one server answers for each key of `like` (non-recursive, direct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub authority: Authority,
    pub answer: Result<Vec<RecordSet>, QueryError>,
}

/// Asks every authority (concurrently) what it serves for each key of `like`; one view per
/// authority, in the given order.
pub async fn survey(
    authorities: &[Authority],
    like: &[RecordSet],
    timeout: Duration,
) -> Vec<ServerView> {
    let asks = authorities.iter().map(|a| async move {
        ServerView {
            authority: a.clone(),
            answer: query_all(a.addr, like, timeout).await,
        }
    });
    futures::future::join_all(asks).await
}

/// One set in words, as [`describe_sets`] says it.
fn describe_one(set: &RecordSet) -> String {
    describe_sets(std::slice::from_ref(set))
}

/// Pure: every way the views differ from `expected` (addresses AND ttl, via same_records with Ttl::Compared) or from each other, one line each naming the server (ns name and address), what it serves and what was expected; empty = all serve `expected`.
///
/// Lines, in this order: per view (in order), a server that gave no answer, then each key of
/// `expected` it serves differently; then, per key, one line when the servers that answered
/// serve different things from each other (naming each server and what it serves).
pub fn drift(expected: &[RecordSet], views: &[ServerView]) -> Vec<String> {
    let mut lines = Vec::new();
    let empty = |w: &RecordSet| RecordSet::new(normalize_name(&w.name), w.rtype, 0, Vec::new());
    let served = |sets: &[RecordSet], w: &RecordSet| {
        sets.iter()
            .find(|s| s.same_key(w))
            .cloned()
            .unwrap_or_else(|| empty(w))
    };
    for v in views {
        match &v.answer {
            Err(e) => lines.push(format!("{}: no answer: {e}", v.authority)),
            Ok(sets) => {
                for w in expected {
                    let found = sets.iter().find(|s| s.same_key(w));
                    if !same_set(w, found, Ttl::Compared) {
                        lines.push(format!(
                            "{}: serves {}; expected {}",
                            v.authority,
                            describe_one(&served(sets, w)),
                            describe_one(w)
                        ));
                    }
                }
            }
        }
    }
    for w in expected {
        // Distinct answers among the servers that answered, each with the servers serving it.
        let mut groups: Vec<(RecordSet, Vec<String>)> = Vec::new();
        for v in views {
            let Ok(sets) = &v.answer else { continue };
            let got = served(sets, w);
            match groups.iter_mut().find(|(g, _)| {
                same_set(g, Some(&got), Ttl::Compared) && same_set(&got, Some(g), Ttl::Compared)
            }) {
                Some((_, names)) => names.push(v.authority.to_string()),
                None => groups.push((got, vec![v.authority.to_string()])),
            }
        }
        if groups.len() > 1 {
            let parts: Vec<String> = groups
                .iter()
                .map(|(set, names)| {
                    format!(
                        "{} serve{} {}",
                        names.join(", "),
                        if names.len() == 1 { "s" } else { "" },
                        describe_one(set)
                    )
                })
                .collect();
            lines.push(format!(
                "servers disagree on {} {}: {}",
                normalize_name(&w.name),
                w.rtype,
                parts.join("; ")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[test]
    fn resolv_conf_nameservers_in_order_at_most_three() {
        let text = "# generated\nsearch example.test\nnameserver 192.0.2.1\nnameserver  2001:db8::53\nnameserver fe80::1%eth0\noptions ndots:2\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n";
        let got: Vec<String> = parse_resolv_conf(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["192.0.2.1:53", "[2001:db8::53]:53", "192.0.2.2:53"]);
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("nameserver\nnameserver not-an-ip\n").is_empty());
    }

    fn www(ttl: u32, addrs: &[&str]) -> RecordSet {
        RecordSet::new(
            "www.example.test.",
            RecordType::A,
            ttl,
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
        )
    }

    fn view(ns: Option<&str>, port: u16, answer: Result<Vec<RecordSet>, QueryError>) -> ServerView {
        ServerView {
            authority: Authority {
                addr: SocketAddr::from(([192, 0, 2, 53], port)),
                ns_name: ns.map(str::to_string),
            },
            answer,
        }
    }

    #[test]
    fn drift_table() {
        let expected = vec![www(300, &["192.0.2.10"])];
        let ok = || Ok(vec![www(300, &["192.0.2.10"])]);
        let timeout = Err(QueryError::Timeout {
            server: SocketAddr::from(([192, 0, 2, 53], 2)),
            timeout: Duration::from_secs(1),
        });
        // (what, views, lines)
        let cases: Vec<(&str, Vec<ServerView>, Vec<&str>)> = vec![
            ("no servers", vec![], vec![]),
            (
                "all serve it",
                vec![
                    view(Some("ns1.example.test."), 1, ok()),
                    view(None, 2, ok()),
                ],
                vec![],
            ),
            (
                "other address",
                vec![
                    view(Some("ns1.example.test."), 1, ok()),
                    view(
                        Some("ns2.example.test."),
                        2,
                        Ok(vec![www(300, &["203.0.113.7"])]),
                    ),
                ],
                vec![
                    "ns2.example.test. (192.0.2.53:2): serves www.example.test. A [203.0.113.7] ttl 300; expected www.example.test. A [192.0.2.10] ttl 300",
                    "servers disagree on www.example.test. A: ns1.example.test. (192.0.2.53:1) serves www.example.test. A [192.0.2.10] ttl 300; ns2.example.test. (192.0.2.53:2) serves www.example.test. A [203.0.113.7] ttl 300",
                ],
            ),
            (
                "same addresses, other TTL, on both",
                vec![
                    view(None, 1, Ok(vec![www(60, &["192.0.2.10"])])),
                    view(None, 2, Ok(vec![www(60, &["192.0.2.10"])])),
                ],
                vec![
                    "192.0.2.53:1: serves www.example.test. A [192.0.2.10] ttl 60; expected www.example.test. A [192.0.2.10] ttl 300",
                    "192.0.2.53:2: serves www.example.test. A [192.0.2.10] ttl 60; expected www.example.test. A [192.0.2.10] ttl 300",
                ],
            ),
            (
                "missing RRset, and a server that does not answer",
                vec![view(None, 1, Ok(vec![])), view(None, 2, timeout)],
                vec![
                    "192.0.2.53:1: serves www.example.test. A (none); expected www.example.test. A [192.0.2.10] ttl 300",
                    "192.0.2.53:2: no answer: no answer from 192.0.2.53:2 within 1s",
                ],
            ),
            (
                "order and duplicates do not matter",
                vec![view(
                    None,
                    1,
                    Ok(vec![www(300, &["192.0.2.10", "192.0.2.10"])]),
                )],
                vec![],
            ),
        ];
        for (what, views, want) in cases {
            assert_eq!(drift(&expected, &views), want, "{what}");
        }
        // An RRset expected absent is served absent whatever TTL the answer carries.
        let absent = vec![www(0, &[])];
        assert!(drift(&absent, &[view(None, 1, Ok(vec![www(5, &[])]))]).is_empty());
    }
}
