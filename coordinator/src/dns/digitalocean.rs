//! The DigitalOcean backend: its Domains API (`https://api.digitalocean.com/v2`, Bearer personal
//! access token). Following
//! https://docs.digitalocean.com/reference/api/digitalocean/#tag/Domain-Records:
//! - `GET /domains/{domain}` (the zone; 404 when it is not in the account);
//! - `GET /domains/{domain}/records?type=A&name=www.example.com&per_page=200`: records one by
//!   one, each with its own `id`, `name` relative (`@` for the apex), `data`, `ttl`;
//! - `PUT /domains/{domain}/records/{id}` (`type`, `name`, `data`, `ttl`) rewrites one record,
//!   `POST /domains/{domain}/records` adds one, `DELETE /domains/{domain}/records/{id}`
//!   removes one (204).
//!
//! There are no RRsets and no conditional write: a change is read → compare → one request per
//! record (existing records rewritten in place first, then new ones added, then surplus ones
//! deleted, so the name never has no answer). A hand edit between the read and the write is
//! overwritten, except a record deleted meanwhile: its `PUT`/`DELETE` answers 404, reported as
//! [`DnsError::Conflict`]. Minimum TTL 30 s. Rate limit 5,000 requests an hour and 250 a
//! minute per token (429 with `RateLimit-Reset`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::provider::{self, Api, Spec};
use super::secret::SecretSource;
use super::{
    Change, Checked, DnsBackend, DnsError, RecordSet, SettingError, check_expected, normalize_name,
};

/// `[dns] type = "digitalocean"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API (default `"https://api.digitalocean.com/v2"`); tests point it at a stand-in.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The zone, e.g. `"example.com"`.
    pub zone: String,
    /// File (mode 0600) holding a personal access token with the `domain` read and update scopes (or full write).
    #[serde(default)]
    pub api_token_file: Option<PathBuf>,
    /// Or: the environment variable holding it.
    #[serde(default)]
    pub api_token_env: Option<String>,
    /// Or: the systemd credential holding it (`$CREDENTIALS_DIRECTORY/<name>`).
    #[serde(default)]
    pub api_token_credential: Option<String>,
    /// Time allowed per request (default `"10s"`).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// Skip the conflict check and overwrite whatever is there (default false).
    #[serde(default)]
    pub force: bool,
}

impl Config {
    pub fn token_source(&self) -> Result<SecretSource, SettingError> {
        provider::token_source(
            self.api_token_file.as_ref(),
            self.api_token_env.as_ref(),
            self.api_token_credential.as_ref(),
        )
    }
}

fn default_base_url() -> String {
    SPEC.default_url.into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

const SPEC: Spec = Spec {
    provider: "digitalocean",
    default_url: "https://api.digitalocean.com/v2",
    scheme: "Bearer",
    detail: provider::json_reason,
};

#[derive(Clone)]
pub struct DigitalOcean {
    api: Api,
    force: bool,
}

impl fmt::Debug for DigitalOcean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigitalOcean")
            .field("api", &self.api)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads the token and builds the backend.
pub fn build(config: &Config) -> Result<DigitalOcean, SettingError> {
    let token = config.token_source()?.read()?;
    build_with_secret(config, &token)
}

/// Builds the backend from the token already read (the config's validation reads it once).
pub fn build_with_secret(config: &Config, token: &str) -> Result<DigitalOcean, SettingError> {
    let source = config.token_source()?;
    let api = Api::new(
        SPEC,
        &config.base_url,
        &config.zone,
        config.timeout,
        token,
        &source,
    )?;
    Ok(DigitalOcean {
        api,
        force: config.force,
    })
}

/// Records of one page: 200 is the API's largest page; an RRset of a failover holds a few.
const PER_PAGE: usize = 200;

#[derive(Deserialize)]
struct RecordsReply {
    #[serde(default)]
    domain_records: Vec<RecordJson>,
}

#[derive(Deserialize, Clone)]
struct RecordJson {
    id: u64,
    #[serde(rename = "type")]
    rtype: String,
    name: String,
    #[serde(default)]
    data: String,
    #[serde(default)]
    ttl: u32,
}

impl DigitalOcean {
    /// `www` → `www`, apex → `@`.
    fn rel(&self, name: &str) -> String {
        let r = provider::relative(name, &self.api.zone);
        if r.is_empty() { "@".into() } else { r }
    }

    fn record(set: &RecordSet) -> String {
        format!("{} {}", normalize_name(&set.name), set.rtype)
    }

    fn records_path(&self) -> String {
        format!("/domains/{}/records", provider::seg(self.api.domain()))
    }

    async fn zone(&self) -> Result<(), DnsError> {
        let path = format!("/domains/{}", provider::seg(self.api.domain()));
        let reply = self.api.call(Method::GET, &path, None, "(zone)").await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(self.api.unknown_zone(&reply)),
            _ => Err(self.api.rejected(&reply, "(zone)", "read the domain")),
        }
    }

    /// The records of one name and type, each with its id.
    async fn records(&self, set: &RecordSet) -> Result<Vec<RecordJson>, DnsError> {
        let record = Self::record(set);
        let fqdn = normalize_name(&set.name);
        let path = format!(
            "{}?type={}&name={}&per_page={PER_PAGE}",
            self.records_path(),
            set.rtype,
            provider::seg(fqdn.trim_end_matches('.'))
        );
        let reply = self.api.call(Method::GET, &path, None, &record).await?;
        match reply.status {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Err(self.api.unknown_zone(&reply)),
            _ => return Err(self.api.rejected(&reply, &record, "list the records")),
        }
        let rel = self.rel(&set.name);
        let all = self
            .api
            .parse::<RecordsReply>(&reply, &record)?
            .domain_records;
        if all.len() >= PER_PAGE {
            return Err(DnsError::Rejected(format!(
                "digitalocean: {PER_PAGE} or more records for {record} in zone {}; Quorate reads one page",
                self.api.zone
            )));
        }
        // The filter is the API's; checked here too, so a server that ignores it cannot make
        // Quorate rewrite other names' records.
        Ok(all
            .into_iter()
            .filter(|r| r.rtype.eq_ignore_ascii_case(&set.rtype.to_string()))
            .filter(|r| r.name.eq_ignore_ascii_case(&rel) || normalize_name(&r.name) == fqdn)
            .collect())
    }

    async fn sets(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let mut out = Vec::new();
        for l in like {
            let recs = self.records(l).await?;
            let addrs: Vec<IpAddr> = recs
                .iter()
                .filter_map(|r| r.data.trim().parse().ok())
                .collect();
            let ttl = if addrs.is_empty() {
                0
            } else {
                recs.iter().map(|r| r.ttl).min().unwrap_or_default()
            };
            out.push(RecordSet::new(normalize_name(&l.name), l.rtype, ttl, addrs));
        }
        Ok(out)
    }

    async fn read_current(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        self.sets(like).await
    }

    /// The readiness check: the domain's GET proves the token and the zone; the records are
    /// compared. The API has no dry-run write: a read-only token passes this check.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        self.api.same_zone(zone)?;
        self.zone().await?;
        check_expected(expected, &self.sets(expected).await?)?;
        Ok(format!(
            "digitalocean: API token accepted at {}, domain {} there; {} record set(s) are as expected; no conditional write (read, compare, then one request per record)",
            self.api.base,
            self.api.domain(),
            expected.len()
        ))
    }

    /// A record that vanished between Quorate's read and its write.
    fn gone(&self, record: &str, r: &RecordJson) -> DnsError {
        DnsError::Conflict {
            expected: format!("{record} record id {} ({}) in zone {}", r.id, r.data, self.api.zone),
            found: "no such record any more (digitalocean answered 404: changed by someone else after Quorate read it)".into(),
        }
    }

    /// Makes the records of one name and type `to`: rewritten in place, added, deleted.
    async fn write_set(&self, to: &RecordSet) -> Result<(), DnsError> {
        let record = Self::record(to);
        let existing = self.records(to).await?;
        let mut wanted: Vec<IpAddr> = to.addrs.clone();
        let mut spare: Vec<RecordJson> = Vec::new();
        for r in existing {
            let same = r
                .data
                .trim()
                .parse::<IpAddr>()
                .ok()
                .and_then(|a| wanted.iter().position(|w| *w == a));
            match same {
                Some(i) if r.ttl == to.ttl => {
                    wanted.remove(i);
                }
                _ => spare.push(r),
            }
        }
        let body = |a: &IpAddr| {
            json!({
                "type": to.rtype.to_string(),
                "name": self.rel(&to.name),
                "data": a.to_string(),
                "ttl": to.ttl,
            })
        };
        let mut spare = spare.into_iter();
        for a in &wanted {
            match spare.next() {
                Some(r) => {
                    let path = format!("{}/{}", self.records_path(), r.id);
                    let reply = self
                        .api
                        .call(Method::PUT, &path, Some(&body(a)), &record)
                        .await?;
                    match reply.status {
                        s if s.is_success() => {}
                        StatusCode::NOT_FOUND => return Err(self.gone(&record, &r)),
                        _ => return Err(self.api.rejected(&reply, &record, "update a record")),
                    }
                }
                None => {
                    let reply = self
                        .api
                        .call(Method::POST, &self.records_path(), Some(&body(a)), &record)
                        .await?;
                    if !reply.status.is_success() {
                        return Err(self.api.rejected(&reply, &record, "create a record"));
                    }
                }
            }
        }
        for r in spare {
            let path = format!("{}/{}", self.records_path(), r.id);
            let reply = self.api.call(Method::DELETE, &path, None, &record).await?;
            match reply.status {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => return Err(self.gone(&record, &r)),
                _ => return Err(self.api.rejected(&reply, &record, "delete a record")),
            }
        }
        Ok(())
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        self.api.validate(change)?;
        let steps = Checked {
            check_first: !self.force,
            read_back: true,
        };
        let write = async {
            for to in &change.to {
                self.write_set(to).await?;
            }
            Ok(())
        };
        steps.apply(self, change, write).await
    }
}

impl DnsBackend for DigitalOcean {
    fn kind(&self) -> &'static str {
        "digitalocean"
    }

    fn current<'a>(
        &'a self,
        _zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(self.read_current(like))
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
