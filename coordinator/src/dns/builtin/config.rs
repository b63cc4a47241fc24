//! `[dns.builtin]` config: the raw TOML shape and its validation into [`BuiltinConfig`]
//! (names, TTLs, static records); every error names the key that was wrong.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType as WireType};
use serde::Deserialize;

use crate::dns::SettingError;

/// Largest TTL RFC 2181 allows.
pub const MAX_TTL: u32 = i32::MAX as u32;
/// Largest TXT value accepted from the config.
const MAX_TXT_LEN: usize = 4000;

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

/// A value that is not a TTL or a name of the zone; the caller adds the key
/// ([`ValueError::at`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected a number of seconds up to {MAX_TTL}, got {0}")]
    Ttl(u32),
    #[error(
        "expected a fully qualified name ending with '.', such as \"ns1.example.test.\", got {0:?}"
    )]
    NotFullyQualified(String),
    #[error("expected a domain name, got {raw:?}: {reason}")]
    NotAName { raw: String, reason: String },
    #[error("wildcards are not supported, got {0:?}")]
    Wildcard(String),
    #[error("expected a name inside {apex}, got {raw:?}")]
    OutsideZone { apex: Name, raw: String },
}

impl ValueError {
    /// The same problem as a setting error at `key`.
    pub fn at(self, key: impl Into<String>) -> SettingError {
        SettingError::new(key, self.to_string())
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

/// Validated config: what [`Builtin::new`](super::Builtin::new) takes.
#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    /// Where the lead should bind (see [`bind`](super::bind)).
    pub listen: Vec<SocketAddr>,
    pub apex: Name,
    pub ttl: u32,
    pub soa: SoaFields,
    pub ns: Vec<Name>,
    pub records: Vec<Record>,
}

impl Config {
    /// Checks every field; errors name the key (`records[2].value`, `soa.rname`, …).
    pub fn build(&self) -> Result<BuiltinConfig, SettingError> {
        if self.listen.is_empty() {
            return Err(SettingError::new(
                "listen",
                "expected at least one address such as \"127.0.0.1:5353\"",
            ));
        }
        let mut listen = Vec::with_capacity(self.listen.len());
        for (i, raw) in self.listen.iter().enumerate() {
            let addr: SocketAddr = raw.parse().map_err(|_| {
                SettingError::new(
                    format!("listen[{i}]"),
                    format!(
                        "expected an address with port such as \"127.0.0.1:5353\" or \"[::1]:5353\", got {raw:?}"
                    ),
                )
            })?;
            listen.push(addr);
        }

        let apex = parse_absolute(&self.zone).map_err(|m| m.at("zone"))?;
        if apex.is_root() {
            return Err(SettingError::new(
                "zone",
                "expected a zone below the root, got \".\"",
            ));
        }
        let ttl = check_ttl(self.ttl).map_err(|m| m.at("ttl"))?;

        if self.ns.is_empty() {
            return Err(SettingError::new(
                "ns",
                "expected at least one nameserver such as \"ns1.example.test.\"",
            ));
        }
        let mut ns = Vec::with_capacity(self.ns.len());
        for (i, raw) in self.ns.iter().enumerate() {
            let name = parse_absolute(raw).map_err(|m| m.at(format!("ns[{i}]")))?;
            if ns.contains(&name) {
                return Err(SettingError::new(
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
                    return Err(SettingError::new(
                        format!("records[{i}]"),
                        format!("duplicates records[{j}]"),
                    ));
                }
                if records[j].ttl != record.ttl {
                    return Err(SettingError::new(
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
                return Err(SettingError::new(
                    format!("records[{i}].name"),
                    "a CNAME cannot be at the zone apex (it has SOA and NS)",
                ));
            }
            if let Some(j) = records
                .iter()
                .position(|other| other.name == record.name && !std::ptr::eq(other, record))
            {
                return Err(SettingError::new(
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
                return Err(SettingError::new(
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

    fn build_soa(&self, apex: &Name, ns: &[Name]) -> Result<SoaFields, SettingError> {
        let mname = match &self.soa.mname {
            Some(raw) => parse_absolute(raw).map_err(|m| m.at("soa.mname"))?,
            None => ns[0].clone(),
        };
        let rname = match &self.soa.rname {
            Some(raw) if raw.contains('@') => {
                return Err(SettingError::new(
                    "soa.rname",
                    format!(
                        "expected a mailbox written as a name such as \"hostmaster.example.test.\", got {raw:?}"
                    ),
                ));
            }
            Some(raw) => parse_absolute(raw).map_err(|m| m.at("soa.rname"))?,
            None => Name::from_ascii("hostmaster")
                .and_then(|n| n.append_domain(apex))
                .map_err(|e| {
                    SettingError::new("soa.rname", format!("cannot build default: {e}"))
                })?,
        };
        let timer = |key: &str, value: Option<u32>, default: u32| {
            let value = value.unwrap_or(default);
            check_ttl(value).map_err(|m| m.at(format!("soa.{key}")))
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

fn check_ttl(value: u32) -> Result<u32, ValueError> {
    if value > MAX_TTL {
        Err(ValueError::Ttl(value))
    } else {
        Ok(value)
    }
}

/// A fully qualified name (trailing dot), lowercased, no wildcard labels.
fn parse_absolute(raw: &str) -> Result<Name, ValueError> {
    if !raw.ends_with('.') {
        return Err(ValueError::NotFullyQualified(raw.to_string()));
    }
    parse_name(raw)
}

pub(super) fn parse_name(raw: &str) -> Result<Name, ValueError> {
    let name = Name::from_ascii(raw).map_err(|e| ValueError::NotAName {
        raw: raw.to_string(),
        reason: e.to_string(),
    })?;
    if name.iter().any(|label| label.contains(&b'*')) {
        return Err(ValueError::Wildcard(raw.to_string()));
    }
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    Ok(name)
}

/// A record owner: `@`, relative to the zone, or fully qualified inside it.
fn parse_owner(raw: &str, apex: &Name) -> Result<Name, ValueError> {
    let name = if raw == "@" {
        apex.clone()
    } else if raw.ends_with('.') {
        parse_name(raw)?
    } else {
        parse_name(&format!("{raw}.{apex}"))?
    };
    if !apex.zone_of(&name) {
        return Err(ValueError::OutsideZone {
            apex: apex.clone(),
            raw: raw.to_string(),
        });
    }
    Ok(name)
}

fn build_record(
    raw: &RecordConfig,
    apex: &Name,
    default_ttl: u32,
    i: usize,
) -> Result<Record, SettingError> {
    let key = |field: &str| format!("records[{i}].{field}");
    let name = parse_owner(&raw.name, apex).map_err(|m| m.at(key("name")))?;
    let ttl = check_ttl(raw.ttl.unwrap_or(default_ttl)).map_err(|m| m.at(key("ttl")))?;
    let value = raw.value.trim();
    let data = match raw.rtype.to_ascii_uppercase().as_str() {
        "A" => RData::A(A(value.parse::<Ipv4Addr>().map_err(|_| {
            SettingError::new(
                key("value"),
                format!("expected an IPv4 address, got {value:?}"),
            )
        })?)),
        "AAAA" => RData::AAAA(AAAA(value.parse::<Ipv6Addr>().map_err(|_| {
            SettingError::new(
                key("value"),
                format!("expected an IPv6 address, got {value:?}"),
            )
        })?)),
        "CNAME" => RData::CNAME(CNAME(
            parse_absolute(value).map_err(|m| m.at(key("value")))?,
        )),
        "TXT" => {
            if raw.value.len() > MAX_TXT_LEN {
                return Err(SettingError::new(
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
                return Err(SettingError::new(
                    key("value"),
                    format!(
                        "expected \"<preference> <exchange.>\" such as \"10 mail.example.test.\", got {value:?}"
                    ),
                ));
            };
            let pref: u16 = pref.parse().map_err(|_| {
                SettingError::new(
                    key("value"),
                    format!("expected a preference from 0 to 65535, got {pref:?}"),
                )
            })?;
            let exchange = parse_absolute(exchange).map_err(|m| m.at(key("value")))?;
            RData::MX(MX::new(pref, exchange))
        }
        other => {
            return Err(SettingError::new(
                key("type"),
                format!(
                    "expected one of A, AAAA, CNAME, TXT, MX (NS come from `ns`, SOA from `soa`), got {other:?}"
                ),
            ));
        }
    };
    Ok(Record::from_rdata(name, ttl, data))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dns::builtin::fixtures::*;
    use hickory_proto::rr::Name;

    // --- config ---

    fn build_err(toml_text: &str) -> SettingError {
        parse(toml_text).build().unwrap_err()
    }

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
}
