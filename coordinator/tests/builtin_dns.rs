//! The built-in DNS server on real loopback sockets, queried with the real `dig`: flags, TTLs
//! and answers before and after a switch, negative answers, truncation, and a flood of
//! malformed packets after which it still answers.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::dns::builtin::{self, Builtin, Config, Limits};
use coordinator::dns::{Change, DnsBackend, DnsError, RecordSet, RecordType};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType as WireType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
listen = ["127.0.0.1:0", "[::1]:0"]
zone = "example.test."
ttl = 300
ns = ["ns1.example.test.", "ns.elsewhere.test."]
soa = { mname = "ns1.example.test.", rname = "hostmaster.example.test.", minimum = 60 }
records = [
  { name = "ns1", type = "A", value = "127.0.0.1" },
  { name = "ns1", type = "AAAA", value = "::1" },
  { name = "@", type = "MX", value = "10 mail.example.test.", ttl = 3600 },
  { name = "mail", type = "A", value = "192.0.2.25" },
  { name = "@", type = "TXT", value = "v=spf1 -all" },
  { name = "alias", type = "CNAME", value = "www.example.test." },
  { name = "deep.below", type = "TXT", value = "leaf" },
]
"#;

const INITIAL_SERIAL: u32 = 2026110101;

fn www(addrs: &[&str], ttl: u32) -> RecordSet {
    RecordSet::new(
        "www.example.test.",
        RecordType::A,
        ttl,
        addrs.iter().map(|a| a.parse().unwrap()).collect(),
    )
}

fn www6(addrs: &[&str], ttl: u32) -> RecordSet {
    RecordSet::new(
        "www.example.test.",
        RecordType::AAAA,
        ttl,
        addrs.iter().map(|a| a.parse().unwrap()).collect(),
    )
}

/// A running server on loopback; stops on drop.
struct Server {
    builtin: Arc<Builtin>,
    v4: SocketAddr,
    v6: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn start(config_text: &str, limits: Limits) -> Server {
    let config: Config = toml::from_str(config_text).unwrap();
    let config = config.build().unwrap();
    let listen = config.listen.clone();
    let builtin = Arc::new(
        Builtin::new(
            config,
            vec![www(&["192.0.2.10"], 300), www6(&["2001:db8::10"], 300)],
            INITIAL_SERIAL,
        )
        .unwrap()
        .with_limits(limits),
    );
    // Port 0 picks a UDP port and TCP then binds the same one; another process may hold it
    // for TCP, so try a few times.
    let mut attempts = 0;
    let (udp, tcp) = loop {
        attempts += 1;
        match builtin::bind(&listen).await {
            Ok(sockets) => break sockets,
            Err(error) if attempts < 20 => eprintln!("bind attempt {attempts}: {error}"),
            Err(error) => panic!("cannot bind: {error}"),
        }
    };
    let v4 = udp[0].local_addr().unwrap();
    let v6 = udp[1].local_addr().unwrap();
    assert_eq!(tcp[0].local_addr().unwrap(), v4);
    assert_eq!(tcp[1].local_addr().unwrap(), v6);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(builtin.clone().serve(udp, tcp, shutdown.clone()));
    Server {
        builtin,
        v4,
        v6,
        shutdown,
        task: Some(task),
    }
}

/// One record line of dig's output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// What dig printed, parsed.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: Vec<String>,
    /// `udp:` of the OPT pseudo-section, if the reply had one.
    edns_udp: Option<u16>,
    edns_flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    server: String,
    raw: String,
}

impl Dig {
    fn answer_data(&self) -> Vec<String> {
        let mut data: Vec<String> = self.answer.iter().map(|r| r.data.clone()).collect();
        data.sort();
        data
    }

    fn soa_serial(&self) -> u32 {
        let soa = self
            .answer
            .iter()
            .chain(&self.authority)
            .find(|r| r.rtype == "SOA")
            .unwrap_or_else(|| panic!("no SOA in\n{}", self.raw));
        soa.data.split_whitespace().nth(2).unwrap().parse().unwrap()
    }
}

fn parse_rr(line: &str) -> Rr {
    let mut parts = line.split_whitespace();
    let name = parts.next().unwrap().to_string();
    let ttl = parts.next().unwrap().parse().unwrap();
    assert_eq!(parts.next(), Some("IN"), "{line}");
    let rtype = parts.next().unwrap().to_string();
    let data = parts.collect::<Vec<_>>().join(" ");
    Rr {
        name,
        ttl,
        rtype,
        data,
    }
}

fn parse_dig(raw: &str) -> Dig {
    let mut dig = Dig {
        raw: raw.to_string(),
        ..Dig::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<- ") {
            let status = rest.split("status: ").nth(1).unwrap();
            dig.status = status.split(',').next().unwrap().to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap();
            dig.flags = flags.split_whitespace().map(str::to_string).collect();
        } else if let Some(rest) = line.strip_prefix("; EDNS: ") {
            // "version: 0, flags: do; udp: 1232"
            let flags = rest
                .split("flags:")
                .nth(1)
                .unwrap()
                .split(';')
                .next()
                .unwrap();
            dig.edns_flags = flags.split_whitespace().map(str::to_string).collect();
            let udp = rest.split("udp: ").nth(1).unwrap();
            dig.edns_udp = Some(udp.trim().parse().unwrap());
        } else if let Some(rest) = line.strip_prefix(";; SERVER: ") {
            dig.server = rest.to_string();
        } else if line.starts_with(";; ") && line.ends_with(" SECTION:") {
            section = match line {
                ";; ANSWER SECTION:" => "answer",
                ";; AUTHORITY SECTION:" => "authority",
                ";; ADDITIONAL SECTION:" => "additional",
                _ => "",
            };
        } else if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
        } else {
            match section {
                "answer" => dig.answer.push(parse_rr(line)),
                "authority" => dig.authority.push(parse_rr(line)),
                "additional" => dig.additional.push(parse_rr(line)),
                _ => {}
            }
        }
    }
    dig
}

/// Runs the real `dig` against `at` and parses what it prints.
async fn dig(at: SocketAddr, args: &[&str]) -> Dig {
    let stdout = dig_raw(at, args).await;
    let parsed = parse_dig(&stdout);
    assert!(
        !parsed.status.is_empty(),
        "no header in dig output:\n{stdout}"
    );
    parsed
}

/// Runs the real `dig` against `at`; returns what it printed.
async fn dig_raw(at: SocketAddr, args: &[&str]) -> String {
    let mut command = Command::new("dig");
    if at.is_ipv6() {
        command.arg("-6");
    }
    command
        .arg(format!("@{}", at.ip()))
        .arg("-p")
        .arg(at.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(15), command.output())
        .await
        .expect("dig did not finish in time")
        .expect("cannot run dig (bind9-dnsutils)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "dig {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn change(from: Vec<RecordSet>, to: Vec<RecordSet>) -> Change {
    Change {
        zone: "example.test.".into(),
        from,
        to,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_sees_answers_before_and_after_a_switch() {
    let server = start(CONFIG, Limits::default()).await;
    let endpoints = [server.v4, server.v6];

    for at in endpoints {
        for transport in ["+notcp", "+tcp"] {
            let out = dig(at, &["www.example.test", "A", "+norecurse", transport]).await;
            assert_eq!(out.status, "NOERROR", "{}", out.raw);
            assert_eq!(out.flags, ["qr", "aa"], "{}", out.raw);
            assert_eq!(
                out.answer,
                [Rr {
                    name: "www.example.test.".into(),
                    ttl: 300,
                    rtype: "A".into(),
                    data: "192.0.2.10".into()
                }],
                "{}",
                out.raw
            );
            let proto = if transport == "+tcp" {
                "(TCP)"
            } else {
                "(UDP)"
            };
            assert!(out.server.contains(proto), "{}", out.server);
            assert!(out.server.contains(&at.ip().to_string()), "{}", out.server);
        }
    }
    let aaaa = dig(server.v6, &["www.example.test", "AAAA", "+norecurse"]).await;
    assert_eq!(aaaa.answer_data(), ["2001:db8::10"]);
    assert_eq!(aaaa.answer[0].ttl, 300);

    let soa = dig(server.v4, &["example.test", "SOA", "+norecurse"]).await;
    assert_eq!(soa.flags, ["qr", "aa"]);
    assert_eq!(soa.soa_serial(), INITIAL_SERIAL);
    assert_eq!(
        soa.answer[0].data,
        format!("ns1.example.test. hostmaster.example.test. {INITIAL_SERIAL} 3600 600 86400 60")
    );

    // RD is copied, RA never set: no recursion here.
    let rd = dig(server.v4, &["www.example.test", "A"]).await;
    assert_eq!(rd.flags, ["qr", "aa", "rd"], "{}", rd.raw);

    // The switch: primary → backup addresses with a lower TTL, both families in one change.
    let like = [www(&[], 0), www6(&[], 0)];
    let before = server
        .builtin
        .current("example.test.", &like)
        .await
        .unwrap();
    assert_eq!(
        before,
        [www(&["192.0.2.10"], 300), www6(&["2001:db8::10"], 300)]
    );
    server
        .builtin
        .apply(&change(
            before.clone(),
            vec![
                www(&["198.51.100.7", "198.51.100.8"], 60),
                www6(&["2001:db8:beef::7"], 60),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        server.builtin.serial_of("example.test.").unwrap(),
        INITIAL_SERIAL + 1
    );

    for at in endpoints {
        for transport in ["+notcp", "+tcp"] {
            let out = dig(at, &["www.example.test", "A", "+norecurse", transport]).await;
            assert_eq!(out.flags, ["qr", "aa"]);
            assert_eq!(
                out.answer_data(),
                ["198.51.100.7", "198.51.100.8"],
                "{}",
                out.raw
            );
            assert!(out.answer.iter().all(|r| r.ttl == 60), "{}", out.raw);
        }
    }
    let aaaa = dig(
        server.v6,
        &["www.example.test", "AAAA", "+norecurse", "+tcp"],
    )
    .await;
    assert_eq!(aaaa.answer_data(), ["2001:db8:beef::7"]);
    assert_eq!(aaaa.answer[0].ttl, 60);
    let soa = dig(server.v6, &["example.test", "SOA", "+norecurse"]).await;
    assert_eq!(soa.soa_serial(), INITIAL_SERIAL + 1);
    // The CNAME to www follows the switch too.
    let alias = dig(server.v4, &["alias.example.test", "A", "+norecurse"]).await;
    assert_eq!(alias.answer.len(), 3, "{}", alias.raw);
    assert_eq!(alias.answer[0].rtype, "CNAME");
    assert_eq!(alias.answer[1].name, "www.example.test.");
    assert_eq!(
        alias.answer_data(),
        ["198.51.100.7", "198.51.100.8", "www.example.test."]
    );

    // A stale `from` is a conflict and changes nothing.
    let stale = server
        .builtin
        .apply(&change(
            before,
            vec![www(&["192.0.2.99"], 60), www6(&[], 60)],
        ))
        .await
        .unwrap_err();
    assert!(matches!(stale, DnsError::Conflict { .. }), "{stale}");
    let out = dig(server.v4, &["www.example.test", "A", "+norecurse"]).await;
    assert_eq!(out.answer_data(), ["198.51.100.7", "198.51.100.8"]);
    assert_eq!(
        server.builtin.serial_of("example.test.").unwrap(),
        INITIAL_SERIAL + 1
    );

    // And back (failback).
    let now = server
        .builtin
        .current("example.test.", &like)
        .await
        .unwrap();
    server
        .builtin
        .apply(&change(
            now,
            vec![www(&["192.0.2.10"], 300), www6(&["2001:db8::10"], 300)],
        ))
        .await
        .unwrap();
    let out = dig(server.v6, &["www.example.test", "A", "+norecurse", "+tcp"]).await;
    assert_eq!(out.answer_data(), ["192.0.2.10"]);
    assert_eq!(out.answer[0].ttl, 300);
    let soa = dig(server.v4, &["example.test", "SOA", "+norecurse"]).await;
    assert_eq!(soa.soa_serial(), INITIAL_SERIAL + 2);

    let stats = server.builtin.stats();
    assert!(
        stats.responses == std::collections::BTreeMap::from([(0, 17)]),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_refusals_and_static_records() {
    let server = start(CONFIG, Limits::default()).await;
    let at = server.v4;

    let nx = dig(at, &["nope.example.test", "A", "+norecurse"]).await;
    assert_eq!(nx.status, "NXDOMAIN", "{}", nx.raw);
    assert_eq!(nx.flags, ["qr", "aa"]);
    assert!(nx.answer.is_empty());
    assert_eq!(nx.authority.len(), 1);
    assert_eq!(nx.authority[0].rtype, "SOA");
    assert_eq!(nx.authority[0].name, "example.test.");
    assert_eq!(
        nx.authority[0].ttl, 60,
        "negative TTL = min(SOA TTL, minimum)"
    );

    for (name, rtype) in [
        ("www.example.test", "TXT"),
        ("example.test", "A"),
        ("below.example.test", "TXT"),
    ] {
        let nodata = dig(at, &[name, rtype, "+norecurse"]).await;
        assert_eq!(nodata.status, "NOERROR", "{name} {rtype}: {}", nodata.raw);
        assert_eq!(nodata.flags, ["qr", "aa"]);
        assert!(nodata.answer.is_empty(), "{}", nodata.raw);
        assert_eq!(nodata.authority.len(), 1);
        assert_eq!(nodata.authority[0].rtype, "SOA");
    }

    let refused = dig(at, &["www.example.org", "A", "+norecurse"]).await;
    assert_eq!(refused.status, "REFUSED", "{}", refused.raw);
    assert_eq!(refused.flags, ["qr"]);
    let refused = dig(server.v6, &["test", "SOA", "+norecurse", "+tcp"]).await;
    assert_eq!(refused.status, "REFUSED");
    // No zone transfers: dig only says the transfer failed, so check the rcode by hand too.
    let axfr = dig_raw(at, &["example.test", "AXFR"]).await;
    assert!(axfr.contains("Transfer failed"), "{axfr}");
    let mut stream = TcpStream::connect(at).await.unwrap();
    let reply = tcp_exchange(&mut stream, &wire_query(5, "example.test.", WireType::AXFR)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());

    let ns = dig(at, &["example.test", "NS", "+norecurse"]).await;
    assert_eq!(ns.flags, ["qr", "aa"]);
    assert_eq!(
        ns.answer_data(),
        ["ns.elsewhere.test.", "ns1.example.test."]
    );
    assert!(ns.answer.iter().all(|r| r.ttl == 300));
    let mut glue: Vec<(String, String, String)> = ns
        .additional
        .iter()
        .map(|r| (r.name.clone(), r.rtype.clone(), r.data.clone()))
        .collect();
    glue.sort();
    assert_eq!(
        glue,
        [
            ("ns1.example.test.".into(), "A".into(), "127.0.0.1".into()),
            ("ns1.example.test.".into(), "AAAA".into(), "::1".into()),
        ],
        "{}",
        ns.raw
    );

    let mx = dig(at, &["example.test", "MX", "+norecurse"]).await;
    assert_eq!(mx.answer_data(), ["10 mail.example.test."]);
    assert_eq!(mx.answer[0].ttl, 3600);
    let txt = dig(at, &["example.test", "TXT", "+norecurse"]).await;
    assert_eq!(txt.answer_data(), ["\"v=spf1 -all\""]);
    let leaf = dig(at, &["deep.below.example.test", "TXT", "+norecurse"]).await;
    assert_eq!(leaf.answer_data(), ["\"leaf\""]);
    let cname = dig(at, &["alias.example.test", "CNAME", "+norecurse"]).await;
    assert_eq!(cname.answer_data(), ["www.example.test."]);

    // Case-insensitive match, the question's case echoed.
    let mixed = dig(at, &["WwW.ExAmPlE.TeSt", "A", "+norecurse"]).await;
    assert_eq!(mixed.answer[0].name, "WwW.ExAmPlE.TeSt.");
    assert_eq!(mixed.answer_data(), ["192.0.2.10"]);

    // ANY: one RRset (RFC 8482).
    let any = dig(at, &["example.test", "ANY", "+norecurse"]).await;
    assert_eq!(any.status, "NOERROR");
    assert_eq!(any.answer.len(), 1, "{}", any.raw);

    // EDNS: OPT echoed, payload 1232, DO copied; none without EDNS.
    let edns = dig(
        at,
        &[
            "www.example.test",
            "A",
            "+norecurse",
            "+dnssec",
            "+bufsize=4096",
        ],
    )
    .await;
    assert_eq!(edns.edns_udp, Some(1232), "{}", edns.raw);
    assert_eq!(edns.edns_flags, ["do"], "{}", edns.raw);
    assert_eq!(edns.answer_data(), ["192.0.2.10"]);
    let plain = dig(at, &["www.example.test", "A", "+norecurse", "+noedns"]).await;
    assert_eq!(plain.edns_udp, None, "{}", plain.raw);
    assert_eq!(plain.answer_data(), ["192.0.2.10"]);
    // EDNS version 1: BADVERS with an OPT of version 0.
    let badvers = dig(
        at,
        &[
            "www.example.test",
            "A",
            "+norecurse",
            "+edns=1",
            "+noednsneg",
        ],
    )
    .await;
    assert_eq!(badvers.status, "BADVERS", "{}", badvers.raw);

    let stats = server.builtin.stats();
    assert!(
        stats.responses.get(&3).copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert!(
        stats.responses.get(&5).copied().unwrap_or(0) >= 2,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_set_tc_over_udp_and_come_whole_over_tcp() {
    let mut text = CONFIG.trim_end().trim_end_matches(']').to_string();
    for i in 0..20 {
        text.push_str(&format!(
            "  {{ name = \"big\", type = \"TXT\", value = \"{i:02}{}\" }},\n",
            "x".repeat(180)
        ));
    }
    text.push_str("]\n");
    let server = start(&text, Limits::default()).await;
    let at = server.v4;

    for args in [
        ["+bufsize=512", "+ignore"],
        ["+noedns", "+ignore"],
        ["+bufsize=1232", "+ignore"],
    ] {
        let out = dig(
            at,
            &["big.example.test", "TXT", "+norecurse", args[0], args[1]],
        )
        .await;
        assert_eq!(out.status, "NOERROR", "{args:?}: {}", out.raw);
        assert_eq!(out.flags, ["qr", "aa", "tc"], "{args:?}: {}", out.raw);
        assert!(out.answer.is_empty(), "{}", out.raw);
    }
    // dig retries over TCP by itself on TC and gets the whole RRset.
    let retried = dig(
        at,
        &["big.example.test", "TXT", "+norecurse", "+bufsize=1232"],
    )
    .await;
    assert!(
        retried.raw.contains("Truncated, retrying in TCP mode"),
        "{}",
        retried.raw
    );
    assert_eq!(retried.answer.len(), 20, "{}", retried.raw);
    assert!(retried.server.contains("(TCP)"));
    let tcp = dig(
        server.v6,
        &["big.example.test", "TXT", "+norecurse", "+tcp"],
    )
    .await;
    assert_eq!(tcp.flags, ["qr", "aa"]);
    assert_eq!(tcp.answer.len(), 20);
    // A small answer still fits in a small buffer.
    let small = dig(at, &["www.example.test", "A", "+norecurse", "+bufsize=512"]).await;
    assert_eq!(small.flags, ["qr", "aa"]);
    assert!(server.builtin.stats().truncated >= 4);
}

/// splitmix64: a small seeded generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn wire_query(id: u16, name: &str, rtype: WireType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message.to_vec().unwrap()
}

/// `count` malformed datagrams of several kinds.
fn garbage(rng: &mut Rng, count: usize) -> Vec<Vec<u8>> {
    let valid = wire_query(7, "www.example.test.", WireType::A);
    let mut packets = vec![Vec::new(), vec![0u8; 1], vec![0xff; 11], vec![0u8; 60_000]];
    while packets.len() < count {
        let packet = match rng.below(5) {
            0 => {
                let len = rng.below(700);
                rng.bytes(len)
            }
            1 => {
                let len = rng.below(12);
                rng.bytes(len)
            }
            2 => {
                // A valid query with a few bytes flipped.
                let mut p = valid.clone();
                for _ in 0..=rng.below(4) {
                    let at = rng.below(p.len());
                    p[at] ^= rng.next() as u8 | 1;
                }
                p
            }
            3 => {
                // A valid query cut short.
                let len = rng.below(valid.len());
                valid[..len].to_vec()
            }
            _ => {
                // A valid header claiming many records, random body.
                let mut p = valid[..12].to_vec();
                p[2] &= 0x7f;
                for at in [4, 6, 8, 10] {
                    p[at] = 0xff;
                }
                let len = rng.below(300);
                p.extend(rng.bytes(len));
                p
            }
        };
        packets.push(packet);
    }
    packets
}

/// Reads until EOF or error; true if the peer closed within `deadline`.
async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    let mut buf = [0u8; 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn tcp_exchange(stream: &mut TcpStream, request: &[u8]) -> Message {
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(request);
    stream.write_all(&framed).await.unwrap();
    read_framed(stream).await
}

async fn read_framed(stream: &mut TcpStream) -> Message {
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut body))
        .await
        .unwrap()
        .unwrap();
    Message::from_vec(&body).unwrap()
}

async fn assert_still_answers(server: &Server) {
    for at in [server.v4, server.v6] {
        for transport in ["+notcp", "+tcp"] {
            let out = dig(at, &["www.example.test", "A", "+norecurse", transport]).await;
            assert_eq!(out.status, "NOERROR", "{}", out.raw);
            assert_eq!(out.flags, ["qr", "aa"]);
            assert_eq!(out.answer_data(), ["192.0.2.10"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_udp_packets_do_not_stop_it() {
    let server = start(CONFIG, Limits::default()).await;
    let mut rng = Rng(0x5eed_0001);
    let packets = garbage(&mut rng, 3000);

    for (target, bind) in [(server.v4, "127.0.0.1:0"), (server.v6, "[::1]:0")] {
        let client = UdpSocket::bind(bind).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let mut replies = 0usize;
        let mut formerr = 0usize;
        // In batches, each followed by a well-formed marker query whose answer must come back
        // after the replies to the garbage: this keeps socket buffers from overflowing and
        // shows the server still answers after every batch.
        for (batch, chunk) in packets.chunks(100).enumerate() {
            for packet in chunk {
                client.send_to(packet, target).await.unwrap();
            }
            let marker_id = 0xb000 + batch as u16;
            let marker = Name::from_ascii("marker.example.test.").unwrap();
            client
                .send_to(
                    &wire_query(marker_id, "marker.example.test.", WireType::A),
                    target,
                )
                .await
                .unwrap();
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let left = end.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "batch {batch}: no answer to the marker");
                let (len, _) = tokio::time::timeout(left, client.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("batch {batch}: no answer to the marker"))
                    .unwrap();
                replies += 1;
                assert!(len <= 1232, "udp reply of {len} bytes");
                let reply = Message::from_vec(&buf[..len]).expect("every reply parses");
                if reply.metadata.response_code == ResponseCode::FormErr {
                    formerr += 1;
                }
                if reply.metadata.id == marker_id
                    && reply.queries.len() == 1
                    && reply.queries[0].name().eq_case(&marker)
                {
                    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
                    assert!(reply.metadata.authoritative);
                    break;
                }
            }
        }
        assert!(
            replies > 1000,
            "only {replies} replies to {} packets",
            packets.len()
        );
        assert!(formerr > 50, "only {formerr} FORMERR replies");
    }
    let stats = server.builtin.stats();
    assert!(stats.dropped > 100, "{stats:?}");
    assert!(
        stats.responses.get(&1).copied().unwrap_or(0) > 100,
        "{stats:?}"
    );
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tcp_streams_do_not_stop_it() {
    let limits = Limits {
        max_tcp_connections: 4,
        tcp_idle_timeout: Duration::from_millis(500),
        max_queries_per_connection: 3,
    };
    let server = start(CONFIG, limits).await;
    let at = server.v4;
    let mut rng = Rng(0x5eed_0002);

    // Framing the server will not read: zero length, over the limit. It hangs up.
    for frame in [vec![0u8, 0], vec![0xff, 0xff], vec![0x10, 0x01]] {
        let mut stream = TcpStream::connect(at).await.unwrap();
        stream.write_all(&frame).await.unwrap();
        assert!(
            closed_within(&mut stream, Duration::from_secs(5)).await,
            "{frame:?}"
        );
    }
    // Half a length prefix, then silence: closed by the idle timeout.
    let mut stream = TcpStream::connect(server.v6).await.unwrap();
    stream.write_all(&[0]).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Well-framed garbage: every frame gets a parseable reply or the connection closes.
    for round in 0..200 {
        let packets = garbage(&mut rng, 6);
        let mut stream = TcpStream::connect(at).await.unwrap();
        for packet in packets.iter().skip(4).take(2) {
            if packet.is_empty() || packet.len() > 4096 {
                continue;
            }
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(packet);
            if stream.write_all(&framed).await.is_err() {
                break;
            }
        }
        stream.shutdown().await.ok();
        // Drain whatever comes back; every reply must parse; the server must close.
        let end = Instant::now() + Duration::from_secs(5);
        let mut data = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "round {round}: connection not closed");
            let mut buf = [0u8; 4096];
            match tokio::time::timeout(left, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
                Err(_) => panic!("round {round}: connection not closed"),
            }
        }
        let mut rest = data.as_slice();
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            assert!(rest.len() >= 2 + len, "round {round}: partial reply");
            Message::from_vec(&rest[2..2 + len]).expect("reply parses");
            rest = &rest[2 + len..];
        }
        assert!(rest.is_empty());
    }

    // Max queries per connection: three answers, then the server hangs up.
    let mut stream = TcpStream::connect(at).await.unwrap();
    for id in 0..3u16 {
        let reply = tcp_exchange(
            &mut stream,
            &wire_query(id, "www.example.test.", WireType::A),
        )
        .await;
        assert_eq!(reply.metadata.id, id);
        assert_eq!(reply.answers.len(), 1);
    }
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

    // Connection limit: four idle connections hold every permit; a fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = TcpStream::connect(at).await.unwrap();
        // One exchange proves the connection owns a permit before the next one is opened.
        let reply = tcp_exchange(&mut stream, &wire_query(1, "example.test.", WireType::SOA)).await;
        assert_eq!(reply.answers.len(), 1);
        held.push(stream);
    }
    let mut extra = TcpStream::connect(at).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(5)).await);
    assert!(server.builtin.stats().tcp_rejected >= 1);
    // UDP is unaffected meanwhile.
    let out = dig(at, &["www.example.test", "A", "+norecurse"]).await;
    assert_eq!(out.answer_data(), ["192.0.2.10"]);
    drop(held);

    // Once the held connections are gone, TCP answers again (the server notices the closes
    // asynchronously: poll with a deadline).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = TcpStream::connect(at).await.unwrap();
        let mut framed = Vec::new();
        let query = wire_query(9, "www.example.test.", WireType::A);
        framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
        framed.extend_from_slice(&query);
        if stream.write_all(&framed).await.is_ok() {
            let mut len = [0u8; 2];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut len)).await
            {
                break;
            }
        }
        assert!(
            Instant::now() < end,
            "tcp never recovered after the held connections closed"
        );
        tokio::task::yield_now().await;
    }
    assert_still_answers(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_loop() {
    let mut server = start(CONFIG, Limits::default()).await;
    // An open TCP connection must not hold the shutdown up.
    let mut stream = TcpStream::connect(server.v4).await.unwrap();
    let reply = tcp_exchange(
        &mut stream,
        &wire_query(3, "www.example.test.", WireType::A),
    )
    .await;
    assert_eq!(reply.answers.len(), 1);
    server.shutdown.cancel();
    let task = server.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    let address: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(
        TcpStream::connect((address, server.v4.port()))
            .await
            .is_err()
    );
}
