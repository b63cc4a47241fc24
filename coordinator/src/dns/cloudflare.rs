//! The Cloudflare backend: its v4 API with an API token (`Authorization: Bearer`).
//!
//! - The zone id is looked up once from the zone's name (`GET /zones?name=`) and kept.
//! - `current` lists each name's records (`GET /zones/{id}/dns_records?name=`) and keeps the
//!   A and AAAA ones.
//! - A change is ONE request: `POST /zones/{id}/dns_records/batch` with `deletes` (the record
//!   ids read just before) and `posts` (the new records). Cloudflare runs a batch's deletes,
//!   patches, puts and posts in that order in one transaction: all or nothing. A record
//!   deleted or replaced since the read makes its id unknown and the whole batch fails, which
//!   is reported as a conflict, not written over. (A record edited in place keeps its id and
//!   is not caught: the read before the write narrows that race but cannot close it.)
//! - `proxied` is kept per record set as it was (the first existing record's value); a new
//!   record set gets Cloudflare's default (not proxied).
//!
//! Documentation followed: <https://developers.cloudflare.com/api/resources/dns/subresources/records/methods/batch/>,
//! `.../records/methods/list/` and `.../zones/methods/list/`.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

use super::http::{self, Trust};
use super::secret::SecretSource;
use super::{
    Change, DnsBackend, DnsError, RecordSet, RecordType, SettingError, Ttl, WARNING,
    check_expected, describe_sets, normalize_name, precheck, same_records,
};

/// Cloudflare's API.
pub const DEFAULT_BASE_URL: &str = "https://api.cloudflare.com/client/v4";

/// Records asked for per page. An RRset Quorate switches has a handful of addresses; a name
/// with more records than this is refused rather than half read.
const PER_PAGE: usize = 100;

/// Bytes of an error answer quoted in messages.
const BODY_KEEP: usize = 1024;

/// Cloudflare's error codes for a batch whose delete names a record that does not exist
/// (81044) and for a post identical to a record that exists (81058): someone else changed
/// the records since Quorate read them.
const STALE_CODES: [i64; 2] = [81044, 81058];

/// Cloudflare's error codes for a token it does not accept, sent with HTTP 400 rather than
/// 401/403: invalid request headers (6003), a malformed Authorization header (6111), an
/// invalid access token (9109), authentication error (10000).
const AUTH_CODES: [i64; 4] = [6003, 6111, 9109, 10000];

/// `[dns] type = "cloudflare"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zone's name as Cloudflare shows it, e.g. `"example.com"`.
    pub zone: String,
    /// File (mode 0600) holding an API token with Zone:DNS:Edit on the zone.
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// Or: the name of an environment variable holding the token.
    #[serde(default)]
    pub api_token_env: Option<String>,
    /// Or: the name of a systemd credential (`LoadCredential=<name>:…`).
    #[serde(default)]
    pub api_token_credential: Option<String>,
    /// The API's base URL (default [`DEFAULT_BASE_URL`]; tests point it at a stand-in).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Trust only the CA certificate(s) in this PEM file (a stand-in or a proxy).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time allowed per request, e.g. `"10s"` (default).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// Skip the conflict check and replace whatever is there (default false).
    #[serde(default)]
    pub force: bool,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    /// The one configured source of the token, and the key that names it.
    pub fn token_source(&self) -> Result<(SecretSource, &'static str), SettingError> {
        let source = super::provider::token_source(
            self.api_token_file.as_ref(),
            self.api_token_env.as_ref(),
            self.api_token_credential.as_ref(),
        )?;
        let key = source.key();
        Ok((source, key))
    }

    /// Reads the token from its source; errors name the key.
    pub fn read_token(&self) -> Result<String, SettingError> {
        let (source, _) = self.token_source()?;
        source.read()
    }
}

pub struct Cloudflare {
    base: String,
    /// `example.com.` (compared with changes) and `example.com` (what the API takes).
    zone: String,
    zone_name: String,
    token: String,
    /// Where the token came from, for messages: `api_token_file (/etc/quorate/cf.token)`.
    token_from: String,
    client: reqwest::Client,
    force: bool,
    zone_id: OnceCell<String>,
}

impl fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cloudflare")
            .field("base", &self.base)
            .field("zone", &self.zone)
            .field("token_from", &self.token_from)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads the token and builds the backend.
pub fn build(config: &Config) -> Result<Cloudflare, SettingError> {
    let token = config.read_token()?;
    build_with_secret(config, token)
}

/// Builds the backend from the token already read (the config's validation reads it once).
pub fn build_with_secret(config: &Config, token: String) -> Result<Cloudflare, SettingError> {
    shared::install_crypto_provider();
    let (source, key) = config.token_source()?;
    let url = reqwest::Url::parse(&config.base_url).map_err(|e| {
        SettingError::new(
            "base_url",
            format!(
                "expected a URL like {DEFAULT_BASE_URL:?}, got {:?} ({e})",
                config.base_url
            ),
        )
    })?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(SettingError::new(
            "base_url",
            format!(
                "expected https:// (the token travels in every request; http:// only on loopback), got {:?}",
                config.base_url
            ),
        ));
    }
    let zone = normalize_name(&config.zone);
    if zone == "." || zone.contains(['/', '?', '#', '&']) {
        return Err(SettingError::new(
            "zone",
            format!(
                "expected a zone name like \"example.com\", got {:?}",
                config.zone
            ),
        ));
    }
    let trust = Trust::from_keys(config.ca_file.as_deref(), None)?;
    let client = http::client(config.timeout, &trust)?;
    let token_from = match &source {
        SecretSource::File(p) => format!("{key} ({})", p.display()),
        SecretSource::Env(n) | SecretSource::Credential(n) => format!("{key} ({n})"),
    };
    Ok(Cloudflare {
        base: config.base_url.trim_end_matches('/').to_string(),
        zone_name: zone.trim_end_matches('.').to_string(),
        zone,
        token,
        token_from,
        client,
        force: config.force,
        zone_id: OnceCell::new(),
    })
}

#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<CfMessage>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct CfMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_count: Option<u64>,
}

#[derive(Deserialize)]
struct ZoneJson {
    id: String,
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
struct RecordJson {
    id: String,
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    content: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    proxied: Option<bool>,
}

/// A 4xx answer other than 401/403/429, for the caller to interpret.
struct Refusal {
    status: StatusCode,
    errors: Vec<CfMessage>,
    text: String,
}

impl Refusal {
    fn describe(&self) -> String {
        if self.errors.is_empty() {
            return http::quote(&self.text, BODY_KEEP);
        }
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{} (code {})", e.message, e.code))
            .collect();
        parts.join("; ")
    }
}

fn rtype_of(s: &str) -> Option<RecordType> {
    match s {
        "A" => Some(RecordType::A),
        "AAAA" => Some(RecordType::AAAA),
        _ => None,
    }
}

/// The names of `sets`, once each, in order.
fn names_of(sets: &[RecordSet]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in sets {
        let n = normalize_name(&s.name);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

fn what(sets: &[RecordSet]) -> String {
    let keys: Vec<String> = sets
        .iter()
        .map(|s| format!("{} {}", normalize_name(&s.name), s.rtype))
        .collect();
    keys.join(", ")
}

impl Cloudflare {
    /// Sends `req` with the token; `about` names the zone and records for messages. Ok(Err)
    /// is a refusal the caller interprets.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        about: &str,
    ) -> Result<Result<String, Refusal>, DnsError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| http::send_error(&format!("cloudflare API ({about})"), e))?;
        let status = resp.status();
        if status.is_success() {
            return http::read_answer(resp, &format!("cloudflare API ({about})"))
                .await
                .map(Ok);
        }
        let retry_after = http::retry_after(resp.headers());
        let text = http::error_body(resp).await;
        let errors = serde_json::from_str::<Envelope<serde_json::Value>>(&text)
            .map(|e| e.errors)
            .unwrap_or_default();
        let refusal = Refusal {
            status,
            errors,
            text,
        };
        let token_refused =
            status.as_u16() == 400 && refusal.errors.iter().any(|e| AUTH_CODES.contains(&e.code));
        match status.as_u16() {
            _ if token_refused => Err(DnsError::Auth(format!(
                "cloudflare refused the API token from {} (HTTP {status}) for {about}: {}; the token needs Zone:Read and Zone:DNS:Edit on {}",
                self.token_from,
                refusal.describe(),
                self.zone_name
            ))),
            401 | 403 => Err(DnsError::Auth(format!(
                "cloudflare refused the API token from {} (HTTP {status}) for {about}: {}; the token needs Zone:Read and Zone:DNS:Edit on {}",
                self.token_from,
                refusal.describe(),
                self.zone_name
            ))),
            429 => Err(DnsError::Throttled {
                message: format!(
                    "cloudflare rate limit (HTTP 429) for {about}: {}",
                    refusal.describe()
                ),
                retry_after,
            }),
            s if s >= 500 => Err(DnsError::Transient(format!(
                "cloudflare API failed (HTTP {status}) for {about}: {}",
                refusal.describe()
            ))),
            _ => Ok(Err(refusal)),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        body: &str,
        about: &str,
    ) -> Result<Envelope<T>, DnsError> {
        let env: Envelope<T> = serde_json::from_str(body).map_err(|e| {
            DnsError::Transient(format!(
                "cloudflare API sent an unreadable answer for {about}: {e}"
            ))
        })?;
        if !env.success {
            let msgs: Vec<String> = env.errors.iter().map(|e| e.message.clone()).collect();
            return Err(DnsError::Rejected(format!(
                "cloudflare answered success=false for {about}: {}",
                msgs.join("; ")
            )));
        }
        Ok(env)
    }

    /// The zone's id, looked up once (`GET /zones?name=`).
    async fn zone_id(&self) -> Result<&str, DnsError> {
        self.zone_id
            .get_or_try_init(|| self.find_zone())
            .await
            .map(String::as_str)
    }

    async fn find_zone(&self) -> Result<String, DnsError> {
        let about = format!("zone {}", self.zone);
        let req = self
            .client
            .get(format!("{}/zones", self.base))
            .query(&[("name", self.zone_name.as_str())]);
        let body = match self.call(req, &about).await? {
            Ok(b) => b,
            Err(r) => {
                return Err(DnsError::Rejected(format!(
                    "cloudflare refused the zone lookup for {} (HTTP {}): {}",
                    self.zone_name,
                    r.status,
                    r.describe()
                )));
            }
        };
        let zones: Vec<ZoneJson> = Self::parse(&body, &about)?.result.unwrap_or_default();
        zones
            .into_iter()
            .find(|z| z.name.eq_ignore_ascii_case(&self.zone_name))
            .map(|z| z.id)
            .ok_or_else(|| {
                DnsError::Rejected(format!(
                    "cloudflare has no zone {} that the API token from {} can see; add the zone to the account, give the token access to it, or fix dns.zone",
                    self.zone_name, self.token_from
                ))
            })
    }

    /// Every A and AAAA record of `name` (fully qualified), with its id.
    async fn records_of(&self, zone_id: &str, name: &str) -> Result<Vec<RecordJson>, DnsError> {
        let bare = name.trim_end_matches('.');
        let about = format!("zone {}, record {name}", self.zone);
        let req = self
            .client
            .get(format!("{}/zones/{zone_id}/dns_records", self.base))
            .query(&[("name", bare), ("per_page", &PER_PAGE.to_string())]);
        let body = match self.call(req, &about).await? {
            Ok(b) => b,
            Err(r) => {
                return Err(DnsError::Rejected(format!(
                    "cloudflare refused to list the records of {about} (HTTP {}): {}",
                    r.status,
                    r.describe()
                )));
            }
        };
        let env: Envelope<Vec<RecordJson>> = Self::parse(&body, &about)?;
        let records = env.result.unwrap_or_default();
        if let Some(total) = env.result_info.and_then(|i| i.total_count)
            && total > records.len() as u64
        {
            return Err(DnsError::Rejected(format!(
                "{about}: cloudflare holds {total} records for the name, more than the {PER_PAGE} Quorate reads; a failover name should hold a few"
            )));
        }
        Ok(records
            .into_iter()
            .filter(|r| normalize_name(&r.name) == name && rtype_of(&r.rtype).is_some())
            .collect())
    }

    /// The records of every name in `like`, with ids.
    async fn read(&self, like: &[RecordSet]) -> Result<Vec<RecordJson>, DnsError> {
        let zone_id = self.zone_id().await?;
        let mut all = Vec::new();
        for name in names_of(like) {
            all.extend(self.records_of(zone_id, &name).await?);
        }
        Ok(all)
    }

    fn sets_of(records: &[RecordJson], like: &[RecordSet]) -> Vec<RecordSet> {
        like.iter()
            .map(|l| {
                let name = normalize_name(&l.name);
                let mine: Vec<&RecordJson> = records
                    .iter()
                    .filter(|r| {
                        normalize_name(&r.name) == name && rtype_of(&r.rtype) == Some(l.rtype)
                    })
                    .collect();
                let addrs: Vec<IpAddr> = mine
                    .iter()
                    .filter_map(|r| r.content.trim().parse().ok())
                    .collect();
                let ttl = mine.iter().map(|r| r.ttl).min().unwrap_or(0);
                let ttl = if addrs.is_empty() { 0 } else { ttl };
                RecordSet::new(name, l.rtype, ttl, addrs)
            })
            .collect()
    }

    /// The batch replacing each record set of `change.to`: every A/AAAA record of its key
    /// deleted by id, then the new ones posted with the old `proxied`.
    fn batch_body(change: &Change, records: &[RecordJson]) -> serde_json::Value {
        let mut deletes = Vec::new();
        let mut posts = Vec::new();
        for set in &change.to {
            let name = normalize_name(&set.name);
            let old: Vec<&RecordJson> = records
                .iter()
                .filter(|r| {
                    normalize_name(&r.name) == name && rtype_of(&r.rtype) == Some(set.rtype)
                })
                .collect();
            deletes.extend(old.iter().map(|r| json!({ "id": r.id })));
            let proxied = old.first().and_then(|r| r.proxied);
            for a in &set.addrs {
                let mut post = json!({
                    "name": name.trim_end_matches('.'),
                    "type": set.rtype.to_string(),
                    "content": a.to_string(),
                    "ttl": set.ttl,
                });
                if let (Some(p), Some(obj)) = (proxied, post.as_object_mut()) {
                    obj.insert("proxied".into(), json!(p));
                }
                posts.push(post);
            }
        }
        json!({ "deletes": deletes, "posts": posts })
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        change.validate()?;
        if normalize_name(&change.zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "change is for zone {} but this cloudflare backend updates {} (dns.zone)",
                change.zone, self.zone
            )));
        }
        let about = format!("zone {}, records {}", self.zone, what(&change.to));
        let records = self.read(&change.to).await?;
        let now = Self::sets_of(&records, &change.to);
        if !self.force {
            precheck(change, &now, false)?;
        }
        if same_records(&change.to, &now, Ttl::Compared) {
            return Ok(());
        }
        let zone_id = self.zone_id().await?;
        let req = self
            .client
            .post(format!("{}/zones/{zone_id}/dns_records/batch", self.base))
            .json(&Self::batch_body(change, &records));
        match self.call(req, &about).await? {
            Ok(body) => {
                Self::parse::<serde_json::Value>(&body, &about)?;
            }
            Err(r) if r.errors.iter().any(|e| STALE_CODES.contains(&e.code)) => {
                // The batch is one transaction: nothing was changed. Say what is there now.
                let found = match self.read(&change.to).await {
                    Ok(rs) => describe_sets(&Self::sets_of(&rs, &change.to)),
                    Err(e) => format!("(unknown: {e})"),
                };
                return Err(DnsError::Conflict {
                    expected: format!(
                        "{} (cloudflare refused the batch for {about}: {})",
                        describe_sets(&change.from),
                        r.describe()
                    ),
                    found,
                });
            }
            Err(r) => {
                return Err(DnsError::Rejected(format!(
                    "cloudflare rejected the change of {about} (HTTP {}): {}",
                    r.status,
                    r.describe()
                )));
            }
        }
        // A record added by hand between the read and the batch is still there: read back.
        let after = Self::sets_of(&self.read(&change.to).await?, &change.to);
        if !same_records(&change.to, &after, Ttl::Ignored) {
            return Err(DnsError::Rejected(format!(
                "cloudflare accepted the change of {about} but holds {}",
                describe_sets(&after)
            )));
        }
        Ok(())
    }

    /// The readiness check: the zone lookup proves the token and that the zone is there; the
    /// records are compared. Cloudflare has no dry-run write: Zone:DNS:Edit is not proven.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        if normalize_name(zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "check is for zone {zone} but this cloudflare backend updates {} (dns.zone)",
                self.zone
            )));
        }
        let zone_id = self.zone_id().await?.to_string();
        let records = self.read(expected).await?;
        check_expected(expected, &Self::sets_of(&records, expected))?;
        let proof = format!(
            "cloudflare: API token from {} accepted, zone {} there (id {zone_id}); {} record set(s) are as expected; the permission to edit (Zone:DNS:Edit) is not proven by a read",
            self.token_from,
            self.zone_name,
            expected.len()
        );
        Ok(match proxied_warning(&records) {
            Some(warning) => format!("{warning}; {proof}"),
            None => proof,
        })
    }
}

/// A proxied name is answered with Cloudflare's own addresses: a switch still moves the
/// origin behind the proxy, but no name server will ever serve the backup's address, so the
/// verification after each switch reports the change as lagging. Said before an outage, as a
/// readiness warning, not discovered at the first failover.
fn proxied_warning(records: &[RecordJson]) -> Option<String> {
    let mut names: Vec<String> = records
        .iter()
        .filter(|r| r.proxied == Some(true))
        .map(|r| format!("{} {}", r.name, r.rtype))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "{WARNING} {} proxied by Cloudflare: its name servers answer with Cloudflare's addresses, so a switch moves the origin but the verification on the name servers cannot see it and reports every switch as lagging; set these records to \"DNS only\" to fail over in DNS",
        names.join(", ")
    ))
}

impl DnsBackend for Cloudflare {
    fn kind(&self) -> &'static str {
        "cloudflare"
    }

    fn current<'a>(
        &'a self,
        _zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(async move { Ok(Self::sets_of(&self.read(like).await?, like)) })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn proxied_records_are_a_readiness_warning() {
        let record = |name: &str, rtype: &str, proxied: Option<bool>| RecordJson {
            id: format!("{name}-{rtype}"),
            name: name.into(),
            rtype: rtype.into(),
            content: "192.0.2.1".into(),
            ttl: 60,
            proxied,
        };
        assert_eq!(
            proxied_warning(&[
                record("www.example.test", "A", Some(false)),
                record("api.example.test", "A", None),
            ]),
            None
        );
        let warning = proxied_warning(&[
            record("www.example.test", "AAAA", Some(true)),
            record("www.example.test", "A", Some(true)),
            record("www.example.test", "A", Some(true)),
            record("api.example.test", "A", Some(false)),
        ])
        .unwrap();
        assert!(
            warning.starts_with(&format!(
                "{WARNING} www.example.test A, www.example.test AAAA proxied by Cloudflare"
            )),
            "{warning}"
        );
        assert!(warning.contains("\"DNS only\""), "{warning}");
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../../docs/dns-backends.md");
        let example = super::super::doc_example(doc, "cloudflare");
        let c: super::super::BackendConfig = toml::from_str(&example).unwrap();
        match c {
            super::super::BackendConfig::Cloudflare(c) => {
                assert_eq!(c.base_url, DEFAULT_BASE_URL);
                assert!(c.token_source().is_ok());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_batch_deletes_by_id_and_keeps_proxied() {
        let rec = |id: &str, t: &str, c: &str, p| RecordJson {
            id: id.into(),
            name: "www.example.test".into(),
            rtype: t.into(),
            content: c.into(),
            ttl: 300,
            proxied: p,
        };
        let records = vec![
            rec("a1", "A", "192.0.2.10", Some(true)),
            rec("q1", "AAAA", "2001:db8::10", Some(false)),
        ];
        let to = vec![
            RecordSet::new(
                "www.example.test.",
                RecordType::A,
                60,
                vec!["198.51.100.10".parse().unwrap()],
            ),
            RecordSet::new("www.example.test.", RecordType::AAAA, 60, vec![]),
        ];
        let change = Change {
            zone: "example.test.".into(),
            from: Cloudflare::sets_of(&records, &to),
            to,
        };
        let body = Cloudflare::batch_body(&change, &records);
        assert_eq!(
            body,
            json!({
                "deletes": [{"id": "a1"}, {"id": "q1"}],
                "posts": [{"name": "www.example.test", "type": "A", "content": "198.51.100.10", "ttl": 60, "proxied": true}],
            })
        );
    }
}
