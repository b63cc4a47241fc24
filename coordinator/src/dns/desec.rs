//! The deSEC backend (`https://desec.io/api/v1`, `Authorization: Token …`). Following
//! https://desec.readthedocs.io/en/latest/dns/rrsets.html and `…/dns/domains.html`:
//! - `GET /domains/{name}/` (the zone and its `minimum_ttl`, 3600 s unless deSEC lowered it
//!   for the domain; 404 when the token's account does not hold it);
//! - `GET /domains/{name}/rrsets/?subname={sub}`: the RRsets of one name (`subname` relative,
//!   empty for the apex), each `{subname, type, ttl, records}`;
//! - bulk `PUT /domains/{name}/rrsets/` with a list of RRsets replaces all of them in one
//!   transaction (all or nothing); `records: []` deletes one. A TTL under `minimum_ttl` is
//!   refused (400, per-RRset errors in a list).
//!
//! So a change is ONE request, A and AAAA together. No conditional write: read → compare →
//! write, a hand edit between the read and the write is overwritten. `check` warns (a line
//! starting with [`WARNING`]) when the service's TTL is under the domain's minimum, since
//! the switch would then be refused. Rate limits: per-token throttling answered 429 with
//! `Retry-After` (e.g. 2 RRset writes a second, 15 a minute).

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
    Change, Checked, DnsBackend, DnsError, RecordSet, SettingError, WARNING, check_expected,
    normalize_name,
};

/// `[dns] type = "desec"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API (default `"https://desec.io/api/v1"`); tests point it at a stand-in.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The zone, e.g. `"example.com"`.
    pub zone: String,
    /// File (mode 0600) holding a deSEC token (sent as `Authorization: Token …`), best one restricted to this domain.
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

/// deSEC's default minimum TTL (seconds), used when the domain's answer does not say.
pub const DEFAULT_MINIMUM_TTL: u32 = 3600;

const SPEC: Spec = Spec {
    provider: "desec",
    default_url: "https://desec.io/api/v1",
    scheme: "Token",
    detail: provider::json_reason,
};

#[derive(Clone)]
pub struct Desec {
    api: Api,
    force: bool,
}

impl fmt::Debug for Desec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Desec")
            .field("api", &self.api)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads the token and builds the backend.
pub fn build(config: &Config) -> Result<Desec, SettingError> {
    let token = config.token_source()?.read()?;
    build_with_secret(config, &token)
}

/// Builds the backend from the token already read (the config's validation reads it once).
pub fn build_with_secret(config: &Config, token: &str) -> Result<Desec, SettingError> {
    let source = config.token_source()?;
    let api = Api::new(
        SPEC,
        &config.base_url,
        &config.zone,
        config.timeout,
        token,
        &source,
    )?;
    Ok(Desec {
        api,
        force: config.force,
    })
}

#[derive(Deserialize)]
struct DomainJson {
    #[serde(default)]
    minimum_ttl: Option<u32>,
}

#[derive(Deserialize)]
struct RrsetJson {
    #[serde(default)]
    subname: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    records: Vec<String>,
}

impl Desec {
    fn record(set: &RecordSet) -> String {
        format!("{} {}", normalize_name(&set.name), set.rtype)
    }

    fn domain_path(&self) -> String {
        format!("/domains/{}/", provider::seg(self.api.domain()))
    }

    /// The domain's minimum TTL.
    async fn minimum_ttl(&self) -> Result<u32, DnsError> {
        let reply = self
            .api
            .call(Method::GET, &self.domain_path(), None, "(zone)")
            .await?;
        match reply.status {
            s if s.is_success() => Ok(self
                .api
                .parse::<DomainJson>(&reply, "(zone)")?
                .minimum_ttl
                .unwrap_or(DEFAULT_MINIMUM_TTL)),
            StatusCode::NOT_FOUND => Err(self.api.unknown_zone(&reply)),
            _ => Err(self.api.rejected(&reply, "(zone)", "read the domain")),
        }
    }

    async fn sets(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        // One request per name (A and AAAA of a name come together).
        let mut by_name: Vec<(String, Vec<RrsetJson>)> = Vec::new();
        let mut out = Vec::new();
        for l in like {
            let sub = provider::relative(&l.name, &self.api.zone);
            if !by_name.iter().any(|(n, _)| *n == sub) {
                let record = Self::record(l);
                let path = format!(
                    "{}rrsets/?subname={}",
                    self.domain_path(),
                    provider::seg(&sub)
                );
                let reply = self.api.call(Method::GET, &path, None, &record).await?;
                match reply.status {
                    s if s.is_success() => {}
                    StatusCode::NOT_FOUND => return Err(self.api.unknown_zone(&reply)),
                    _ => return Err(self.api.rejected(&reply, &record, "list the RRsets")),
                }
                let sets = self.api.parse::<Vec<RrsetJson>>(&reply, &record)?;
                by_name.push((sub.clone(), sets));
            }
            let found = by_name
                .iter()
                .find(|(n, _)| *n == sub)
                .and_then(|(_, sets)| {
                    sets.iter().find(|s| {
                        s.subname.eq_ignore_ascii_case(&sub)
                            && s.rtype.eq_ignore_ascii_case(&l.rtype.to_string())
                    })
                });
            let name = normalize_name(&l.name);
            out.push(match found {
                Some(r) => {
                    let addrs: Vec<IpAddr> = r
                        .records
                        .iter()
                        .filter_map(|v| v.trim().parse().ok())
                        .collect();
                    let ttl = if addrs.is_empty() { 0 } else { r.ttl };
                    RecordSet::new(name, l.rtype, ttl, addrs)
                }
                None => RecordSet::new(name, l.rtype, 0, Vec::new()),
            });
        }
        Ok(out)
    }

    async fn read_current(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        self.sets(like).await
    }

    /// The readiness check: the domain's GET proves the token and the domain (and gives its
    /// minimum TTL); the RRsets are compared. A TTL under the minimum is a warning: the
    /// records are fine now, but a switch would be refused. No dry-run write: a read-only
    /// token passes this check.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        self.api.same_zone(zone)?;
        let minimum = self.minimum_ttl().await?;
        check_expected(expected, &self.sets(expected).await?)?;
        let proof = format!(
            "desec: token accepted at {}, domain {} there (minimum TTL {minimum} s); {} record set(s) are as expected; no conditional write (read, compare, then one bulk PUT)",
            self.api.base,
            self.api.domain(),
            expected.len()
        );
        match expected
            .iter()
            .map(|s| s.ttl)
            .filter(|t| *t < minimum)
            .min()
        {
            Some(low) => Ok(format!(
                "{WARNING} TTL {low} s is under deSEC's minimum of {minimum} s for {}: a switch would be refused; raise the service's ttl to {minimum}, or ask deSEC to lower the domain's minimum; {proof}",
                self.api.domain()
            )),
            None => Ok(proof),
        }
    }

    async fn write(&self, change: &Change) -> Result<(), DnsError> {
        let records: Vec<String> = change.to.iter().map(Self::record).collect();
        let record = records.join(", ");
        let minimum = self.minimum_ttl().await?;
        let body: Vec<serde_json::Value> = change
            .to
            .iter()
            .map(|s| {
                let values: Vec<String> = s.addrs.iter().map(|a| a.to_string()).collect();
                // An empty `records` deletes the RRset; its TTL must still be acceptable.
                let ttl = if s.addrs.is_empty() {
                    s.ttl.max(minimum)
                } else {
                    s.ttl
                };
                json!({
                    "subname": provider::relative(&s.name, &self.api.zone),
                    "type": s.rtype.to_string(),
                    "ttl": ttl,
                    "records": values,
                })
            })
            .collect();
        let path = format!("{}rrsets/", self.domain_path());
        let reply = self
            .api
            .call(
                Method::PUT,
                &path,
                Some(&serde_json::Value::Array(body)),
                &record,
            )
            .await?;
        if !reply.status.is_success() {
            let mut e = self.api.rejected(&reply, &record, "replace the RRsets");
            if let DnsError::Rejected(t) = &mut e
                && let Some(low) = change
                    .to
                    .iter()
                    .map(|s| s.ttl)
                    .filter(|t| *t < minimum)
                    .min()
            {
                t.push_str(&format!(
                    "; TTL {low} s is under the domain's minimum of {minimum} s"
                ));
            }
            return Err(e);
        }
        Ok(())
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        self.api.validate(change)?;
        let steps = Checked {
            check_first: !self.force,
            read_back: true,
        };
        steps.apply(self, change, self.write(change)).await
    }
}

impl DnsBackend for Desec {
    fn kind(&self) -> &'static str {
        "desec"
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
