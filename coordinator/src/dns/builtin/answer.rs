//! The pure part of the server: a parsed query and the [`Zones`] served in, an answer out
//! ([`answer`]); request bytes in, reply bytes out within the size limits ([`respond`]).
//! No I/O, no clock.

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, NS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType as WireType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tracing::{debug, warn};

use super::zone::{ZoneSnapshot, Zones};

/// record; anything bigger is not worth parsing.
pub const MAX_REQUEST_LEN: usize = 4096;
/// Largest UDP reply with EDNS (the DNS flag day 2020 value); the client may ask for less.
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// UDP reply limit for clients without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;
/// CNAME chains inside the zone are followed at most this many steps.
const MAX_CNAME_CHAIN: usize = 8;

/// Types that cannot be asked for (RFC 6895 §3.1): 0, OPT, and the meta range 128–250 (TKEY,
/// TSIG, …). The QTYPE-only ones above 250 (IXFR, AXFR, MAILB, MAILA, ANY) are handled apart.
fn is_meta_type(rtype: WireType) -> bool {
    let code = u16::from(rtype);
    code == 0 || rtype == WireType::OPT || (128..=250).contains(&code)
}

/// Answers one parsed query from the zone of `zones` closest to its name. Pure: no I/O, no
/// clock.
pub fn answer(request: &Message, zones: &Zones) -> Message {
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
    let zone = match zones.for_name(qname) {
        Some(zone) if query.query_class() == DNSClass::IN => zone,
        _ => {
            response.metadata.response_code = ResponseCode::Refused;
            return response;
        }
    };
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
pub fn respond(request: &[u8], zones: &Zones, transport: Transport) -> Option<Reply> {
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
    let mut response = answer(&message, zones);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dns::builtin::Builtin;
    use crate::dns::builtin::fixtures::*;
    use hickory_proto::op::Query;
    use proptest::prelude::*;

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
}
