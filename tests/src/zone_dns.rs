//! A small authoritative DNS server for a stand-in's zone, so that what a provider's API
//! holds is also what its name servers serve, and the coordinator's verification (NS records
//! found through a resolver, then every name server asked directly) runs against real sockets.
//!
//! It answers, over UDP and TCP, from a closure over the stand-in's live state: the zone's A
//! and AAAA record sets, plus a synthesised SOA and NS RRset naming two name servers,
//! `ns1.<zone>` at 127.0.0.1 and `ns2.<zone>` at 127.0.0.5, both on one port, with glue A
//! records. Both addresses answer for the zone; the one on 127.0.0.1 also stands in for the
//! recursive resolver `verify.resolvers` points at (its NS answer carries the glue, as a
//! resolver's would). [`ZoneDns::lag_second`] makes ns2 a secondary that stopped following:
//! it keeps serving what it served at that moment.
//!
//! Bounds: one UDP datagram handled at a time per address; at most [`MAX_TCP_CONNECTIONS`]
//! TCP connections at once, [`MAX_TCP_MESSAGES`] messages each, [`TCP_IDLE`] to read each
//! one. Every task is aborted when the `ZoneDns` is dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator::config::VerifyConfig;
use coordinator::dns::{BackendConfig, Change, RecordSet, RecordType, normalize_name};
use coordinator::readiness::checks::{AuthoritySettings, Verification};
use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// The two name servers' addresses (on one port).
pub const NS_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(127, 0, 0, 5)];
/// TCP connections served at once per address; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 16;
/// Messages answered on one TCP connection before it is closed.
pub const MAX_TCP_MESSAGES: usize = 32;
/// How long a TCP connection may stay silent before it is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(5);
/// Largest UDP answer without EDNS (RFC 1035); a larger one goes out truncated.
const MAX_UDP_ANSWER: usize = 512;
/// The TTL of the synthesised SOA, NS and glue records.
const INFRA_TTL: u32 = 3600;
/// Tries at finding one port free on both addresses, for UDP and TCP.
const BIND_TRIES: usize = 50;

/// The zone's A and AAAA record sets as the stand-in holds them now.
pub type Records = Box<dyn Fn() -> Vec<RecordSet> + Send + Sync>;

struct Served {
    /// Lower case, trailing dot.
    zone: String,
    records: Records,
    /// ns2's frozen view, once it lags.
    lagged: Mutex<Option<Vec<RecordSet>>>,
    /// A/AAAA questions answered, per name server.
    asked: [AtomicU32; 2],
}

impl Served {
    fn sets(&self, server: usize) -> Vec<RecordSet> {
        if server == 1 {
            let lagged = self.lagged.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(frozen) = lagged.as_ref() {
                return frozen.clone();
            }
        }
        (self.records)()
    }
}

/// The zone's two name servers, serving until dropped.
pub struct ZoneDns {
    port: u16,
    served: Arc<Served>,
    tasks: JoinSet<()>,
}

impl ZoneDns {
    /// Serves `zone` (with or without the trailing dot) from `records`, read at every query.
    pub async fn start(zone: &str, records: Records) -> ZoneDns {
        let served = Arc::new(Served {
            zone: normalize_name(zone),
            records,
            lagged: Mutex::new(None),
            asked: [AtomicU32::new(0), AtomicU32::new(0)],
        });
        let (port, sockets) = bind_both().await;
        let mut tasks = JoinSet::new();
        for (i, (udp, tcp)) in sockets.into_iter().enumerate() {
            tasks.spawn(serve_udp(udp, served.clone(), i));
            tasks.spawn(serve_tcp(tcp, served.clone(), i));
        }
        ZoneDns {
            port,
            served,
            tasks,
        }
    }

    /// The port both name servers answer on (`verify.ns_port`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The two name servers, ns1 then ns2.
    pub fn servers(&self) -> [SocketAddr; 2] {
        NS_ADDRS.map(|ip| SocketAddr::new(IpAddr::V4(ip), self.port))
    }

    /// Where a resolver would be: ns1's address, which answers the NS question with glue.
    pub fn resolver(&self) -> SocketAddr {
        self.servers()[0]
    }

    /// ns2 stops following the stand-in: from now on it serves what it serves now.
    pub fn lag_second(&self) {
        let now = (self.served.records)();
        *self.served.lagged.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
    }

    /// A and AAAA questions each name server (ns1, ns2) has answered so far.
    pub fn asked(&self) -> [u32; 2] {
        [0, 1].map(|i| self.served.asked[i].load(Ordering::SeqCst))
    }

    /// The `verify` table of a provider backend that lists no server: the name servers are
    /// found through [`ZoneDns::resolver`] and asked on [`ZoneDns::port`]; `timeout` bounds
    /// the wait for them to serve a change.
    pub fn verify_config(&self, timeout: Duration) -> VerifyConfig {
        VerifyConfig {
            servers: Vec::new(),
            timeout,
            discover_ns: true,
            ns_port: self.port,
            resolvers: vec![self.resolver()],
        }
    }

    /// Where the DNS worker looks for the zone's servers, for a provider `backend` with
    /// [`ZoneDns::verify_config`] as its `verify` table.
    pub fn authorities(&self, backend: &BackendConfig, timeout: Duration) -> AuthoritySettings {
        AuthoritySettings::new(backend, &self.verify_config(timeout))
    }

    /// The verification the DNS worker runs after applying `change` with `backend`.
    pub async fn verify(
        &self,
        backend: &BackendConfig,
        change: &Change,
        timeout: Duration,
    ) -> Verification {
        self.authorities(backend, timeout)
            .verify_change(&change.zone, &change.to)
            .await
    }

    /// `ns1.<zone> (addr)` and `ns2.<zone> (addr)`, as verification names them.
    pub fn names(&self) -> [String; 2] {
        let [a, b] = self.servers();
        [
            format!("ns1.{} ({a})", self.served.zone),
            format!("ns2.{} ({b})", self.served.zone),
        ]
    }

    /// Runs the worker's verification of `change` (applied with `backend`) and asserts that
    /// both name servers were found through the resolver, were asked, and served exactly the
    /// new A and AAAA record sets with the new TTL.
    pub async fn assert_served(&self, backend: &BackendConfig, change: &Change) {
        let before = self.asked();
        let v = self.verify(backend, change, VERIFY_TIMEOUT).await;
        let kind = backend.kind();
        assert!(v.problems.is_empty(), "{kind}: {:?}", v.problems);
        let found: Vec<String> = v.checks.iter().map(|(a, _)| a.to_string()).collect();
        assert_eq!(found, self.names(), "{kind}: the zone's name servers");
        for (a, c) in &v.checks {
            assert!(c.ok, "{kind}: {a} does not serve the change: {c:?}");
            assert_eq!(
                c.last_seen.as_deref(),
                Some(change.to.as_slice()),
                "{kind}: what {a} serves"
            );
        }
        assert_eq!(v.alert(1), None, "{kind}");
        let after = self.asked();
        for i in 0..2 {
            assert!(
                after[i] >= before[i] + 2,
                "{kind}: ns{} asked for A and AAAA: {before:?} → {after:?}",
                i + 1
            );
        }
    }

    /// With ns2 lagging ([`ZoneDns::lag_second`] before `change` was applied): the worker's
    /// verification says ns2 does not serve it (a `dns-lagging` alert naming it, still
    /// serving `change.from`), and ns1 does.
    pub async fn assert_second_lags(&self, backend: &BackendConfig, change: &Change) {
        let v = self.verify(backend, change, LAGGING_TIMEOUT).await;
        let kind = backend.kind();
        assert!(v.problems.is_empty(), "{kind}: {:?}", v.problems);
        let [ns1, ns2] = self.names();
        assert_eq!(v.checks.len(), 2, "{kind}: {v:?}");
        assert!(v.checks[0].1.ok, "{kind}: {ns1}: {:?}", v.checks[0].1);
        let lag = &v.checks[1].1;
        assert!(!lag.ok, "{kind}: {ns2} reported as serving: {lag:?}");
        assert_eq!(
            lag.last_seen.as_deref(),
            Some(change.from.as_slice()),
            "{kind}: {ns2} still serves the old records"
        );
        assert_eq!(v.lagging(), std::slice::from_ref(&ns2), "{kind}");
        assert_eq!(
            v.alert(7).as_deref(),
            Some(format!("dns-lagging: change 7 not served by {ns2} in time").as_str()),
            "{kind}"
        );
    }
}

/// How long verification waits for the name servers in [`ZoneDns::assert_served`] (it ends
/// as soon as both serve the change).
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long verification waits for a lagging server before it says so.
pub const LAGGING_TIMEOUT: Duration = Duration::from_millis(800);

impl Drop for ZoneDns {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// One port on which both addresses take UDP and TCP.
async fn bind_both() -> (u16, Vec<(UdpSocket, TcpListener)>) {
    for _ in 0..BIND_TRIES {
        let Ok(first) = UdpSocket::bind((NS_ADDRS[0], 0)).await else {
            continue;
        };
        let Ok(port) = first.local_addr().map(|a| a.port()) else {
            continue;
        };
        let rest = async {
            let tcp0 = TcpListener::bind((NS_ADDRS[0], port)).await.ok()?;
            let udp1 = UdpSocket::bind((NS_ADDRS[1], port)).await.ok()?;
            let tcp1 = TcpListener::bind((NS_ADDRS[1], port)).await.ok()?;
            Some((tcp0, udp1, tcp1))
        };
        if let Some((tcp0, udp1, tcp1)) = rest.await {
            return (port, vec![(first, tcp0), (udp1, tcp1)]);
        }
    }
    panic!(
        "no port free on both {} and {} (UDP and TCP) in {BIND_TRIES} tries",
        NS_ADDRS[0], NS_ADDRS[1]
    );
}

async fn serve_udp(sock: UdpSocket, served: Arc<Served>, server: usize) {
    let mut buf = vec![0u8; 4096];
    // Ends when the task is aborted (the `ZoneDns` dropped) or the socket fails.
    while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
        let Ok(request) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(mut bytes) = reply(&served, server, &request) else {
            continue;
        };
        if bytes.len() > MAX_UDP_ANSWER && request.edns.is_none() {
            let mut truncated = header_only(&request, ResponseCode::NoError);
            truncated.metadata.truncation = true;
            let Ok(t) = truncated.to_vec() else { continue };
            bytes = t;
        }
        let _ = sock.send_to(&bytes, peer).await;
    }
}

async fn serve_tcp(listener: TcpListener, served: Arc<Served>, server: usize) {
    // Dropped with this task: every connection's task goes with it.
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_TCP_CONNECTIONS {
            continue; // closed at once
        }
        connections.spawn(serve_connection(stream, served.clone(), server));
    }
}

async fn serve_connection(mut stream: TcpStream, served: Arc<Served>, server: usize) {
    for _ in 0..MAX_TCP_MESSAGES {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Ok(request) = Message::from_vec(&buf) else {
            return;
        };
        let Some(bytes) = reply(&served, server, &request) else {
            return;
        };
        let Ok(n) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut out = n.to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// The encoded answer to a request (`None` for something that is not a query to answer).
fn reply(served: &Served, server: usize, request: &Message) -> Option<Vec<u8>> {
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    if let [q] = request.queries.as_slice()
        && matches!(q.query_type(), WireType::A | WireType::AAAA)
    {
        served.asked[server].fetch_add(1, Ordering::SeqCst);
    }
    let sets = served.sets(server);
    answer(request, &served.zone, &sets).to_vec().ok()
}

fn header_only(request: &Message, rcode: ResponseCode) -> Message {
    let mut response = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.response_code = rcode;
    response.add_queries(request.queries.iter().cloned());
    response
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok()
}

/// Pure: the answer of the zone's name servers to `request`, the zone holding `sets`.
pub fn answer(request: &Message, zone: &str, sets: &[RecordSet]) -> Message {
    if request.metadata.op_code != OpCode::Query {
        return header_only(request, ResponseCode::NotImp);
    }
    let [query] = request.queries.as_slice() else {
        return header_only(request, ResponseCode::FormErr);
    };
    let qname = normalize_name(&query.name().to_ascii());
    let in_zone = qname == zone || qname.ends_with(&format!(".{zone}"));
    if query.query_class() != DNSClass::IN || !in_zone {
        return header_only(request, ResponseCode::Refused);
    }
    let (Some(apex), Some(ns1), Some(ns2), Some(qname_wire)) = (
        name(zone),
        name(&format!("ns1.{zone}")),
        name(&format!("ns2.{zone}")),
        name(&qname),
    ) else {
        return header_only(request, ResponseCode::ServFail);
    };
    let mut response = header_only(request, ResponseCode::NoError);
    response.metadata.authoritative = true;
    let soa = || {
        Record::from_rdata(
            apex.clone(),
            INFRA_TTL,
            RData::SOA(SOA::new(
                ns1.clone(),
                name(&format!("hostmaster.{zone}")).unwrap_or_else(|| ns1.clone()),
                1,
                3600,
                600,
                86_400,
                60,
            )),
        )
    };
    let glue = [&ns1, &ns2]
        .into_iter()
        .zip(NS_ADDRS)
        .map(|(n, ip)| Record::from_rdata(n.clone(), INFRA_TTL, RData::A(A(ip))))
        .collect::<Vec<_>>();
    let qtype = query.query_type();
    let mut answers: Vec<Record> = Vec::new();
    let mut exists = false;
    if qname == zone {
        exists = true;
        match qtype {
            WireType::SOA => answers.push(soa()),
            WireType::NS => {
                for n in [&ns1, &ns2] {
                    answers.push(Record::from_rdata(
                        apex.clone(),
                        INFRA_TTL,
                        RData::NS(NS(n.clone())),
                    ));
                }
                response.additionals.extend(glue.iter().cloned());
            }
            _ => {}
        }
    }
    for g in &glue {
        if normalize_name(&g.name.to_ascii()) == qname {
            exists = true;
            if qtype == WireType::A {
                answers.push(g.clone());
            }
        }
    }
    for set in sets {
        if normalize_name(&set.name) != qname || set.addrs.is_empty() {
            continue;
        }
        exists = true;
        let wanted = match set.rtype {
            RecordType::A => WireType::A,
            RecordType::AAAA => WireType::AAAA,
        };
        if wanted != qtype {
            continue;
        }
        for addr in &set.addrs {
            let data = match addr {
                IpAddr::V4(a) => RData::A(A(*a)),
                IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
            };
            answers.push(Record::from_rdata(qname_wire.clone(), set.ttl, data));
        }
    }
    if answers.is_empty() {
        if !exists {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        response.authorities.push(soa());
    }
    response.answers = answers;
    response
}

/// A stand-in's record as served: `(owner name, type, TTL, value)` → the A and AAAA record
/// sets, grouped by name and type, the smallest TTL of a set's records as its TTL (what a
/// resolver takes too); other types and values that are not addresses are left out.
pub fn record_sets<'a>(
    records: impl IntoIterator<Item = (String, &'a str, u32, &'a str)>,
) -> Vec<RecordSet> {
    let mut out: Vec<RecordSet> = Vec::new();
    for (owner, rtype, ttl, value) in records {
        let rtype = match rtype {
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            _ => continue,
        };
        let Ok(addr) = value.parse::<IpAddr>() else {
            continue;
        };
        if addr.is_ipv4() != (rtype == RecordType::A) {
            continue;
        }
        let owner = normalize_name(&owner);
        match out.iter_mut().find(|s| s.name == owner && s.rtype == rtype) {
            Some(set) => {
                set.ttl = set.ttl.min(ttl);
                set.addrs.push(addr);
            }
            None => out.push(RecordSet::new(owner, rtype, ttl, vec![addr])),
        }
    }
    out
}

/// The owner name of a relative name in `zone` (`@` or empty for the apex).
pub fn owner(relative: &str, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match relative {
        "@" | "" => format!("{zone}."),
        r => format!("{r}.{zone}."),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use coordinator::dns::served::exchange;
    use hickory_proto::op::Query;
    use std::sync::atomic::AtomicBool;

    async fn ask(server: SocketAddr, name: &str, rtype: WireType, tcp: bool) -> Message {
        let mut msg = Message::query();
        msg.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        exchange(server, &msg, tcp, Duration::from_secs(2))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn answers_over_udp_and_tcp_from_the_live_records_and_ns2_can_lag() {
        let switched = Arc::new(AtomicBool::new(false));
        let flag = switched.clone();
        let dns = ZoneDns::start(
            "example.test",
            Box::new(move || {
                let addr = if flag.load(Ordering::SeqCst) {
                    "198.51.100.10"
                } else {
                    "192.0.2.10"
                };
                vec![RecordSet::new(
                    "www.example.test.",
                    RecordType::A,
                    60,
                    vec![addr.parse().unwrap()],
                )]
            }),
        )
        .await;
        let [ns1, ns2] = dns.servers();
        for tcp in [false, true] {
            let a = ask(ns2, "WWW.example.test.", WireType::A, tcp).await;
            assert!(a.metadata.authoritative, "tcp {tcp}");
            assert_eq!(a.answers.len(), 1, "tcp {tcp}: {a:?}");
            assert_eq!(a.answers[0].ttl, 60);
        }
        let ns = ask(ns1, "example.test.", WireType::NS, true).await;
        assert_eq!(ns.answers.len(), 2, "{ns:?}");
        let glue: Vec<String> = ns
            .additionals
            .iter()
            .map(|r| format!("{} {:?}", r.name, r.data))
            .collect();
        assert_eq!(glue.len(), 2, "{glue:?}");
        assert!(glue[1].contains("127.0.0.5"), "{glue:?}");
        let soa = ask(ns1, "example.test.", WireType::SOA, false).await;
        assert_eq!(soa.answers.len(), 1);
        let none = ask(ns1, "nosuch.example.test.", WireType::A, false).await;
        assert_eq!(none.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(none.authorities.len(), 1, "the SOA for negative caching");
        let nodata = ask(ns1, "www.example.test.", WireType::AAAA, false).await;
        assert_eq!(
            (nodata.metadata.response_code, nodata.answers.len()),
            (ResponseCode::NoError, 0)
        );
        let outside = ask(ns1, "example.org.", WireType::A, false).await;
        assert_eq!(outside.metadata.response_code, ResponseCode::Refused);

        dns.lag_second();
        switched.store(true, Ordering::SeqCst);
        let served = |m: &Message| format!("{:?}", m.answers[0].data);
        let now1 = ask(ns1, "www.example.test.", WireType::A, false).await;
        let now2 = ask(ns2, "www.example.test.", WireType::A, false).await;
        assert!(served(&now1).contains("198.51.100.10"), "{now1:?}");
        assert!(served(&now2).contains("192.0.2.10"), "ns2 lags: {now2:?}");
        assert!(
            dns.asked()[0] >= 2 && dns.asked()[1] >= 3,
            "{:?}",
            dns.asked()
        );
    }
}
