//! Test fixtures shared by the built-in server's unit tests: an example zone and query helpers.

#![allow(clippy::unwrap_used)]

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, Record, RecordType as WireType};

use super::{Builtin, Config, answer};
use crate::dns::{RecordSet, RecordType};

pub(super) const CONFIG: &str = r#"
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

pub(super) fn parse(toml_text: &str) -> Config {
    toml::from_str(toml_text).unwrap()
}

pub(super) fn www(addrs: &[&str], ttl: u32) -> RecordSet {
    RecordSet::new(
        "www.example.test.",
        RecordType::A,
        ttl,
        addrs.iter().map(|a| a.parse().unwrap()).collect(),
    )
}

pub(super) fn server() -> Builtin {
    let config = parse(CONFIG).build().unwrap();
    Builtin::new(config, vec![www(&["192.0.2.10"], 300)], 7).unwrap()
}

pub(super) fn query(name: &str, rtype: WireType) -> Message {
    let mut message = Message::query();
    message.metadata.id = 4242;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message
}

pub(super) fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.set_edns(edns);
    message
}

pub(super) fn ask(server: &Builtin, name: &str, rtype: WireType) -> Message {
    answer(&query(name, rtype), &server.snapshot())
}

pub(super) fn rdata(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.data.to_string()).collect()
}

pub(super) const BASE: &str =
    "listen = [\"127.0.0.1:53\"]\nzone = \"example.test.\"\nns = [\"ns.other.test.\"]\n";
