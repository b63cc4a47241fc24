//! Checking what the authoritative servers of a zone actually serve: plain non-recursive
//! queries straight at each server (UDP, TCP when the answer is truncated), polled until every
//! server serves the expected addresses and TTL ([`same_records`] with [`Ttl::Compared`]) or a
//! deadline passes. The servers are configured (`[dns.verify] servers`, else the rfc2136
//! backend's own server); they are never discovered from NS records.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType as HRecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::{RecordSet, RecordType, Ttl, normalize_name, same_records};

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
    let id = message.metadata.id;
    let run = async {
        if !tcp {
            let answer = exchange_udp(server, &bytes, id).await?;
            if !answer.metadata.truncation {
                return Ok(answer);
            }
        }
        exchange_tcp(server, &bytes, id).await
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

async fn exchange_udp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, QueryError> {
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
            return Ok(msg);
        }
    }
    Err(QueryError::Malformed {
        server,
        msg: "no answer with the query's id".into(),
    })
}

async fn exchange_tcp(server: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, QueryError> {
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
    Ok(msg)
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
    let qname = parse_name(name)?;
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Query;
    msg.metadata.recursion_desired = false;
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
    if !answer.metadata.authoritative {
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
