//! RFC 2136 dynamic update with TSIG (what `nsupdate` speaks): each change is ONE signed
//! UPDATE message holding, for every RRset, a prerequisite that the RRset is exactly what
//! Quorate expects, a delete of the RRset and the adds of the new records. The server applies
//! all of it or none of it, so there is no moment without an answer and a record someone
//! changed by hand is never silently overwritten (the server answers NXRRSET/YXRRSET and we
//! report a conflict with what it serves now).
//!
//! The readiness check (`DnsBackend::check`) sends the same kind of signed UPDATE with the
//! prerequisites and, per RRset, the delete of one record the prerequisites prove absent:
//! proof of key, zone and permission that leaves the zone as it is (`check_message`);
//! `Rfc2136::check_zone` has the table of what BIND answers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use hickory_net::NetError;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsHandle as _, DnsMultiplexer};
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Message, OpCode, Query, ResponseCode, UpdateMessage as _,
};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{
    DNSClass, Name, RData, Record, RecordType as HRecordType, TSigVerifier, TSigner,
};
use serde::Deserialize;

use super::served::{QueryError, exchange_bytes, proto_type, query_all};
use super::{
    Change, DnsBackend, DnsError, RecordSet, SettingError, Ttl, describe_sets, name_in_zone,
    normalize_name, same_records,
};

/// Above this many bytes (before the TSIG record is added) the update goes over TCP: a UDP
/// message should stay within 512 bytes and the signature adds roughly 100.
const UDP_LIMIT: usize = 400;

/// TSIG "fudge": how far apart the clocks of coordinator and server may be, in seconds.
const TSIG_FUDGE: u16 = 300;

/// TSIG algorithms Quorate signs with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum TsigAlg {
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    #[serde(rename = "hmac-sha512")]
    HmacSha512,
}

impl TsigAlg {
    /// As written in the config and in BIND's `key` statement.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlg::HmacSha256 => "hmac-sha256",
            TsigAlg::HmacSha512 => "hmac-sha512",
        }
    }

    fn proto(self) -> TsigAlgorithm {
        match self {
            TsigAlg::HmacSha256 => TsigAlgorithm::HmacSha256,
            TsigAlg::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

/// How the UPDATE travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP when the message is small, TCP when it is not.
    #[default]
    Auto,
    /// Always TCP.
    Tcp,
}

/// `[dns] type = "rfc2136"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The primary server that accepts updates, e.g. `"192.0.2.53:53"`.
    pub server: SocketAddr,
    /// The zone, e.g. `"example.com."`.
    pub zone: String,
    /// The TSIG key's name as the server knows it.
    pub tsig_key_name: String,
    /// `"hmac-sha256"` (default) or `"hmac-sha512"`.
    #[serde(default)]
    pub tsig_algorithm: TsigAlg,
    /// File (mode 0600) holding the key's secret in base64, as `tsig-keygen` prints it.
    pub tsig_secret_file: PathBuf,
    /// How long to wait for the server, e.g. `"5s"` (default).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// Skip the prerequisites and overwrite whatever is there (default false).
    #[serde(default)]
    pub force: bool,
    /// `"auto"` (default) or `"tcp"`.
    #[serde(default)]
    pub transport: Transport,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// The RFC 2136 backend. Holds the TSIG secret: its `Debug` does not print it.
#[derive(Clone)]
pub struct Rfc2136 {
    server: SocketAddr,
    zone: String,
    zone_name: Name,
    key_name: String,
    alg: TsigAlg,
    /// `tsig_secret_file` as configured, named in messages (never its content).
    secret_file: PathBuf,
    signer: TSigner,
    timeout: Duration,
    force: bool,
    transport: Transport,
}

impl fmt::Debug for Rfc2136 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("key_name", &self.key_name)
            .field("timeout", &self.timeout)
            .field("force", &self.force)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

/// Reads the secret file (`tsig_secret_file` as given: the caller resolves relative paths)
/// and builds the backend.
pub fn build(config: &Config) -> Result<Rfc2136, SettingError> {
    let secret_b64 = shared::keys::read_secret_file(&config.tsig_secret_file)
        .map_err(|e| SettingError::new("tsig_secret_file", e.to_string()))?;
    build_with_secret(config, &secret_b64)
}

/// Builds the backend from the secret already read from `tsig_secret_file` (the config's
/// validation reads it once) and checks the config.
pub fn build_with_secret(config: &Config, secret_b64: &str) -> Result<Rfc2136, SettingError> {
    let zone = normalize_name(&config.zone);
    let zone_name = Name::from_ascii(&zone).map_err(|e| {
        SettingError::new(
            "zone",
            format!(
                "expected a domain name like \"example.com.\", got {:?} ({e})",
                config.zone
            ),
        )
    })?;
    let key_name = Name::from_ascii(&config.tsig_key_name).map_err(|e| {
        SettingError::new(
            "tsig_key_name",
            format!(
                "expected a key name like \"quorate-key\", got {:?} ({e})",
                config.tsig_key_name
            ),
        )
    })?;
    let secret = base64::engine::general_purpose::STANDARD
        .decode(secret_b64.as_bytes())
        .map_err(|e| {
            SettingError::new(
                "tsig_secret_file",
                format!(
                    "{}: expected the key's secret in base64, as tsig-keygen prints it ({e})",
                    config.tsig_secret_file.display()
                ),
            )
        })?;
    if secret.len() < 16 {
        return Err(SettingError::new(
            "tsig_secret_file",
            format!(
                "{}: the secret is {} bytes; expected at least 16",
                config.tsig_secret_file.display(),
                secret.len()
            ),
        ));
    }
    let signer = TSigner::new(secret, config.tsig_algorithm.proto(), key_name, TSIG_FUDGE)
        .map_err(|e| SettingError::new("tsig_algorithm", e.to_string()))?;
    Ok(Rfc2136 {
        server: config.server,
        zone,
        zone_name,
        key_name: config.tsig_key_name.clone(),
        alg: config.tsig_algorithm,
        secret_file: config.tsig_secret_file.clone(),
        signer,
        timeout: config.timeout,
        force: config.force,
        transport: config.transport,
    })
}

fn rdata(addr: &IpAddr) -> RData {
    match addr {
        IpAddr::V4(a) => RData::A(A(*a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(*a)),
    }
}

fn name_of(set: &RecordSet) -> Result<Name, DnsError> {
    Name::from_ascii(normalize_name(&set.name))
        .map_err(|e| DnsError::Rejected(format!("{}: not a domain name ({e})", set.name)))
}

/// An UPDATE message for `zone` with no prerequisites and no updates yet.
fn empty_update(zone: &Name) -> Message {
    let mut zone_q = Query::new();
    zone_q
        .set_name(zone.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(HRecordType::SOA);
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Update;
    msg.metadata.recursion_desired = false;
    msg.add_zone(zone_q);
    msg
}

/// The prerequisites (RFC 2136 §2.4) that each RRset of `sets` is exactly what it is: the
/// whole RRset, value dependent (§2.4.2), or "RRset does not exist" (§2.4.3) for a set with
/// no addresses.
fn add_prerequisites(msg: &mut Message, sets: &[RecordSet]) -> Result<(), DnsError> {
    for set in sets {
        let name = name_of(set)?;
        if set.addrs.is_empty() {
            // "RRset does not exist": class NONE, type, empty rdata, TTL 0.
            let mut r = Record::update0(name, 0, proto_type(set.rtype)).into_record_of_rdata();
            r.dns_class = DNSClass::NONE;
            msg.add_pre_requisite(r);
        } else {
            // "RRset exists (value dependent)": the whole RRset, class of the zone, TTL 0.
            for a in &set.addrs {
                let mut r = Record::from_rdata(name.clone(), 0, rdata(a));
                r.dns_class = DNSClass::IN;
                msg.add_pre_requisite(r);
            }
        }
    }
    Ok(())
}

/// Builds the one UPDATE message of a change (RFC 2136 §2.4 prerequisites, §2.5 updates).
pub fn update_message(zone: &Name, change: &Change, force: bool) -> Result<Message, DnsError> {
    let mut msg = empty_update(zone);
    if !force {
        add_prerequisites(&mut msg, &change.from)?;
    }
    for set in &change.to {
        let name = name_of(set)?;
        // "Delete an RRset": class ANY, type, empty rdata, TTL 0.
        let mut del =
            Record::update0(name.clone(), 0, proto_type(set.rtype)).into_record_of_rdata();
        del.dns_class = DNSClass::ANY;
        msg.add_update(del);
        for a in &set.addrs {
            let mut r = Record::from_rdata(name.clone(), set.ttl, rdata(a));
            r.dns_class = DNSClass::IN;
            msg.add_update(r);
        }
    }
    Ok(msg)
}

/// The readiness probe: an UPDATE whose prerequisites say each RRset of `expected` is exactly
/// what it is, and whose update section deletes, per RRset, one record that the prerequisites
/// prove absent (an address not in the set, RFC 2136 §2.5.4). A server applies the update
/// section only when every prerequisite holds, and then deleting an absent record changes
/// nothing, so the zone (and its serial) stays as it is whatever the answer. The delete is
/// there for `update-policy`: BIND checks a key's grants only against the update section, so
/// with an empty one a key granted nothing in the zone would pass; with it, such a key is
/// REFUSED (measured with BIND 9.18).
pub fn check_message(zone: &Name, expected: &[RecordSet]) -> Result<Message, DnsError> {
    let mut msg = empty_update(zone);
    add_prerequisites(&mut msg, expected)?;
    for set in expected {
        let name = name_of(set)?;
        let absent = absent_address(set);
        let mut del = Record::from_rdata(name, 0, rdata(&absent));
        // "Delete an RR from an RRset": class NONE, TTL 0.
        del.dns_class = DNSClass::NONE;
        msg.add_update(del);
    }
    Ok(msg)
}

/// An address of `set`'s type that is not in `set` (documentation ranges, RFC 5737 / 3849).
fn absent_address(set: &RecordSet) -> IpAddr {
    let candidates: Vec<IpAddr> = match set.rtype {
        super::RecordType::A => (1..=255u8)
            .rev()
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, i)))
            .collect(),
        super::RecordType::AAAA => (1..=255u16)
            .rev()
            .map(|i| {
                IpAddr::V6(std::net::Ipv6Addr::new(
                    0x2001, 0xdb8, 0, 0, 0, 0, 0xffff, i,
                ))
            })
            .collect(),
    };
    candidates
        .into_iter()
        .find(|a| !set.addrs.contains(a))
        // 255 candidates, and a set this large is refused long before: never reached.
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 0)))
}

impl Rfc2136 {
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    fn auth_error(&self) -> DnsError {
        DnsError::Auth(format!(
            "TSIG key rejected by {} (wrong secret or unknown key name '{}')",
            self.server, self.key_name
        ))
    }

    fn map_net(&self, e: NetError) -> DnsError {
        match e {
            NetError::Timeout => DnsError::Transient(format!(
                "no answer from {} within {:?}",
                self.server, self.timeout
            )),
            NetError::Io(io) => DnsError::Transient(format!("{}: {io}", self.server)),
            NetError::Proto(p) => {
                // A signed update whose answer does not verify: the server answered BADSIG or
                // BADKEY, unsigned; hickory reports that as a protocol error.
                let text = p.to_string().to_ascii_lowercase();
                if text.contains("tsig") || text.contains("hmac") || text.contains("sig") {
                    self.auth_error()
                } else {
                    DnsError::Transient(format!("{}: malformed answer ({p})", self.server))
                }
            }
            other => DnsError::Transient(format!("{}: {other}", self.server)),
        }
    }

    async fn send(&self, msg: Message) -> Result<Message, DnsError> {
        let size = msg
            .to_vec()
            .map_err(|e| DnsError::Rejected(format!("cannot encode the update: {e}")))?
            .len();
        let use_tcp = self.transport == Transport::Tcp || size > UDP_LIMIT;
        let provider = TokioRuntimeProvider::default();
        let mut opts = DnsRequestOptions::default();
        opts.use_edns = false;
        opts.recursion_desired = false;
        let request = DnsRequest::new(msg, opts);
        let run = async {
            let (client, bg) = if use_tcp {
                let (connect, handle) =
                    TcpClientStream::new(self.server, None, Some(self.timeout), provider);
                let stream = connect.await.map_err(|e| self.map_net(e))?;
                let mux = DnsMultiplexer::new(stream, handle)
                    .with_timeout(self.timeout)
                    .with_signer(self.signer.clone());
                let (c, bg) = Client::<TokioRuntimeProvider>::from_sender(mux);
                (c, tokio::spawn(bg))
            } else {
                let stream = UdpClientStream::builder(self.server, provider)
                    .with_timeout(Some(self.timeout))
                    .with_signer(Some(self.signer.clone()))
                    .build();
                let (c, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
                (c, tokio::spawn(bg))
            };
            let mut responses = client.send(request);
            let first = responses.next().await;
            bg.abort();
            match first {
                Some(Ok(resp)) => Ok(resp.into_message()),
                Some(Err(e)) => Err(self.map_net(e)),
                None => Err(DnsError::Transient(format!(
                    "{} closed the connection without answering",
                    self.server
                ))),
            }
        };
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), run).await {
            Ok(r) => r,
            Err(_) => Err(DnsError::Transient(format!(
                "no answer from {} within {:?}",
                self.server, self.timeout
            ))),
        }
    }

    async fn current_sets(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        query_all(self.server, like, self.timeout)
            .await
            .map_err(map_query_error)
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        change.validate()?;
        if normalize_name(&change.zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "change is for zone {} but this backend updates {}",
                change.zone, self.zone
            )));
        }
        let msg = update_message(&self.zone_name, change, self.force)?;
        let answer = self.send(msg).await?;
        let rcode = answer.metadata.response_code;
        match rcode {
            ResponseCode::NoError => Ok(()),
            ResponseCode::NXRRSet
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::YXDomain => {
                // A prerequisite failed: nothing was changed. Say what is there now.
                let found = self.current_sets(&change.from).await?;
                if same_records(&change.to, &found, Ttl::Compared) {
                    // Our own earlier attempt got through (its answer was lost).
                    tracing::info!(server = %self.server, "update already applied");
                    return Ok(());
                }
                Err(DnsError::Conflict {
                    expected: describe_sets(&change.from),
                    found: describe_sets(&found),
                })
            }
            ResponseCode::Refused => Err(DnsError::Auth(format!(
                "{} refused the update of zone {} (is key '{}' granted these names in update-policy / allow-update?)",
                self.server, self.zone, self.key_name
            ))),
            ResponseCode::NotAuth => Err(DnsError::Rejected(format!(
                "{} is not authoritative for zone {} (NOTAUTH)",
                self.server, self.zone
            ))),
            ResponseCode::NotZone => Err(DnsError::Rejected(format!(
                "{} says a name of the change is not in zone {} (NOTZONE)",
                self.server, self.zone
            ))),
            ResponseCode::NotImp => Err(DnsError::Rejected(format!(
                "{} does not support dynamic updates (NOTIMP)",
                self.server
            ))),
            ResponseCode::FormErr => Err(DnsError::Rejected(format!(
                "{} could not parse the update (FORMERR)",
                self.server
            ))),
            ResponseCode::ServFail => Err(DnsError::Transient(format!(
                "{} failed to apply the update (SERVFAIL)",
                self.server
            ))),
            other => Err(DnsError::Rejected(format!(
                "{} answered {} to the update",
                self.server,
                other.to_str().to_ascii_uppercase()
            ))),
        }
    }
}

/// Query failures while reading back records: refusals mean a misconfiguration.
pub(crate) fn map_query_error(e: QueryError) -> DnsError {
    if e.is_refusal() {
        DnsError::Rejected(e.to_string())
    } else {
        DnsError::Transient(e.to_string())
    }
}

/// What the server said to the readiness probe, before it is put into words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// The answer carried a TSIG record with this error (RFC 8945 §5.3): the request's
    /// signature was not accepted (BIND answers these unsigned, rcode NOTAUTH).
    TsigError {
        error: TsigError,
        /// BADTIME: the server's clock, seconds since the epoch (the TSIG "other data").
        server_time: Option<u64>,
    },
    /// No TSIG error, but the answer is not signed with our key (or its signature does not
    /// verify): something else answered, or it does not hold the key.
    Unsigned(ResponseCode),
    /// A signed answer with this rcode.
    Signed(ResponseCode),
}

/// Reads the TSIG record of an answer to a signed request: its error, or whether the answer
/// verifies with the request's verifier.
fn probe_answer(answer: &Message, raw: &[u8], verifier: Option<TSigVerifier>) -> ProbeAnswer {
    let rcode = answer.metadata.response_code;
    let Some(sig) = answer.signature() else {
        return ProbeAnswer::Unsigned(rcode);
    };
    if let Some(error) = sig.data.error {
        let server_time = (error == TsigError::BadTime && sig.data.other.len() == 6).then(|| {
            sig.data
                .other
                .iter()
                .fold(0u64, |t, b| (t << 8) | u64::from(*b))
        });
        return ProbeAnswer::TsigError { error, server_time };
    }
    match verifier.map(|mut v| v.verify(raw)) {
        Some(Ok(_)) => ProbeAnswer::Signed(rcode),
        _ => ProbeAnswer::Unsigned(rcode),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Rfc2136 {
    /// Sends the readiness probe ([`check_message`]) and puts the answer into words. What BIND
    /// 9.18 answers (measured with `nsupdate -D` and by `tests/tests/dns_rfc2136.rs`):
    ///
    /// | situation | rcode | TSIG error | signed |
    /// |---|---|---|---|
    /// | all well | NOERROR | none | yes |
    /// | wrong secret | NOTAUTH | BADSIG | no |
    /// | key name (or name + algorithm) unknown | NOTAUTH | BADKEY | no |
    /// | clocks apart by more than the fudge (300 s) | NOTAUTH | BADTIME | yes |
    /// | zone not served by that server (as primary) | NOTAUTH | none | yes |
    /// | zone served, no `allow-update`/`update-policy`, or `allow-update` without our key | REFUSED | none | yes |
    /// | a value-dependent prerequisite does not hold (hand edit) | NXRRSET | none | yes |
    /// | "RRset does not exist" does not hold | YXRRSET | none | yes |
    /// | nothing listens on the port | (ICMP port unreachable: connection refused) | | |
    ///
    /// A wrong key is answered BADKEY even for a zone the server does not serve: the key is
    /// checked first. With `update-policy`, BIND checks the key's grants per record of the
    /// update section: the delete of an absent record in it makes a key that is known but
    /// granted nothing for the service's names answered REFUSED too.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        if normalize_name(zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "check is for zone {zone} but this backend updates {} (dns.zone)",
                self.zone
            )));
        }
        if let Some(out) = expected.iter().find(|s| !name_in_zone(&s.name, &self.zone)) {
            return Err(DnsError::Rejected(format!(
                "{} is not inside zone {}",
                out.name, self.zone
            )));
        }
        let mut msg = check_message(&self.zone_name, expected)?;
        let verifier = msg
            .finalize(&self.signer, unix_now())
            .map_err(|e| DnsError::Rejected(format!("cannot sign the check with TSIG: {e}")))?;
        let bytes = msg
            .to_vec()
            .map_err(|e| DnsError::Rejected(format!("cannot encode the check: {e}")))?;
        let tcp = self.transport == Transport::Tcp || bytes.len() > UDP_LIMIT;
        let (answer, raw) = exchange_bytes(self.server, &bytes, msg.metadata.id, tcp, self.timeout)
            .await
            .map_err(|e| self.unreachable(e))?;
        match probe_answer(&answer, &raw, verifier) {
            ProbeAnswer::Signed(ResponseCode::NoError) => Ok(format!(
                "rfc2136: {} accepted a signed UPDATE for zone {} with TSIG key `{}`; {} record set(s) are as expected; nothing was changed",
                self.server,
                self.zone,
                self.key_name,
                expected.len()
            )),
            ProbeAnswer::TsigError { error, server_time } => {
                Err(self.tsig_error(error, server_time))
            }
            ProbeAnswer::Signed(
                ResponseCode::NXRRSet
                | ResponseCode::YXRRSet
                | ResponseCode::NXDomain
                | ResponseCode::YXDomain,
            ) => {
                let found = self.current_sets(expected).await?;
                Err(DnsError::Conflict {
                    expected: describe_sets(expected),
                    found: describe_sets(&found),
                })
            }
            ProbeAnswer::Signed(ResponseCode::NotAuth) => Err(DnsError::Rejected(format!(
                "{} does not serve zone {} as a primary (NOTAUTH; the TSIG key was accepted): dns.server must be the zone's primary server and dns.zone its name there",
                self.server, self.zone
            ))),
            ProbeAnswer::Signed(ResponseCode::Refused) => Err(DnsError::Auth(format!(
                "{} serves zone {} and accepted TSIG key `{}` but does not permit it to update the zone (REFUSED): grant the key in the zone's `allow-update` or `update-policy`",
                self.server, self.zone, self.key_name
            ))),
            ProbeAnswer::Signed(ResponseCode::NotZone) => Err(DnsError::Rejected(format!(
                "{} says a name of the record sets is not in zone {} (NOTZONE): the service's names must be inside dns.zone",
                self.server, self.zone
            ))),
            ProbeAnswer::Signed(ResponseCode::NotImp) => Err(DnsError::Rejected(format!(
                "{} does not support dynamic updates (NOTIMP)",
                self.server
            ))),
            ProbeAnswer::Signed(ResponseCode::ServFail) => Err(DnsError::Transient(format!(
                "{} failed to process the check (SERVFAIL)",
                self.server
            ))),
            ProbeAnswer::Signed(other) => Err(DnsError::Rejected(format!(
                "{} answered {} to the check",
                self.server,
                other.to_str().to_ascii_uppercase()
            ))),
            ProbeAnswer::Unsigned(rcode) => Err(DnsError::Auth(format!(
                "{} answered {} without a valid signature of TSIG key `{}`: it does not hold that key with that secret, or something else answers on that address",
                self.server,
                rcode.to_str().to_ascii_uppercase(),
                self.key_name
            ))),
        }
    }

    fn tsig_error(&self, error: TsigError, server_time: Option<u64>) -> DnsError {
        match error {
            TsigError::BadSig => DnsError::Auth(format!(
                "the server refused the TSIG signature of key `{}` (BADSIG): the secret in tsig_secret_file ({}) is not the server's secret for that key; copy the server's secret",
                self.key_name,
                self.secret_file.display()
            )),
            TsigError::BadKey => DnsError::Auth(format!(
                "the server does not know TSIG key `{}` (BADKEY): tsig_key_name must match a `key` in the server's config (with algorithm {}, tsig_algorithm)",
                self.key_name,
                self.alg.as_str()
            )),
            TsigError::BadTime => {
                let skew = server_time
                    .map(|t| {
                        let now = unix_now();
                        let (ahead, by) = if now >= t {
                            ("ahead of", now - t)
                        } else {
                            ("behind", t - now)
                        };
                        format!("this machine's clock is {by} s {ahead} the server's")
                    })
                    .unwrap_or_else(|| "the clocks differ".to_string());
                DnsError::Auth(format!(
                    "the server refused the TSIG signature of key `{}` for its time (BADTIME): {skew}, more than the {TSIG_FUDGE} s allowed; synchronise both clocks (NTP)",
                    self.key_name
                ))
            }
            other => DnsError::Auth(format!(
                "the server refused TSIG key `{}` ({other:?})",
                self.key_name
            )),
        }
    }

    fn unreachable(&self, e: QueryError) -> DnsError {
        match e {
            QueryError::Timeout { timeout, .. } => DnsError::Transient(format!(
                "no answer from the DNS server {} (dns.server) within {timeout:?}: is it running, and reachable on that address and port?",
                self.server
            )),
            QueryError::Network { msg, .. } => DnsError::Transient(format!(
                "cannot reach the DNS server {} (dns.server): {msg}",
                self.server
            )),
            other => DnsError::Transient(format!("{} (dns.server): {other}", self.server)),
        }
    }
}

impl DnsBackend for Rfc2136 {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }

    fn current<'a>(
        &'a self,
        _zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(self.current_sets(like))
    }

    fn apply<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.apply_change(change))
    }

    fn check<'a>(
        &'a self,
        zone: &'a str,
        expected: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<String, DnsError>> {
        Box::pin(self.check_zone(zone, expected))
    }
}
