//! The Gandi backend: LiveDNS (`https://api.gandi.net/v5/livedns`, a personal access token as
//! Bearer; API keys are deprecated). Following https://api.gandi.net/docs/livedns/:
//! - `GET /livedns/domains/{fqdn}` (the zone; 404 when it is not there, 403 when the token's
//!   organisation does not hold it);
//! - `GET /livedns/domains/{fqdn}/records/{name}/{type}` (`name` relative, `@` for the apex;
//!   `rrset_ttl`, `rrset_values`; 404 when the RRset does not exist);
//! - `PUT` on the same URL (`{"rrset_values": […], "rrset_ttl": …}`) replaces the RRset (201),
//!   `DELETE` removes it (204).
//!
//! One request per RRset (A and AAAA are two: `PUT …/records/{name}` would replace every type
//! of the name at once, MX and TXT included, so it is not used). No conditional write: read →
//! compare → write, a hand edit between the read and the write is overwritten. Minimum TTL
//! 300 s (a lower one is refused with 400); rate limit 1,000 requests a minute (429).

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

/// `[dns] type = "gandi"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API (default `"https://api.gandi.net/v5"`); tests point it at a stand-in.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The zone, e.g. `"example.com"`.
    pub zone: String,
    /// File (mode 0600) holding a personal access token with the "Manage domain name technical configurations" permission.
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
    provider: "gandi",
    default_url: "https://api.gandi.net/v5",
    scheme: "Bearer",
    detail: reason,
};

#[derive(Clone)]
pub struct Gandi {
    api: Api,
    force: bool,
}

impl fmt::Debug for Gandi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gandi")
            .field("api", &self.api)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads the token and builds the backend.
pub fn build(config: &Config) -> Result<Gandi, SettingError> {
    let token = config.token_source()?.read()?;
    build_with_secret(config, &token)
}

/// Builds the backend from the token already read (the config's validation reads it once).
pub fn build_with_secret(config: &Config, token: &str) -> Result<Gandi, SettingError> {
    let source = config.token_source()?;
    let api = Api::new(
        SPEC,
        &config.base_url,
        &config.zone,
        config.timeout,
        token,
        &source,
    )?;
    Ok(Gandi {
        api,
        force: config.force,
    })
}

/// Gandi's error body: `{"code", "message", "object", "cause"}`, validation errors with
/// `errors: [{"name", "description"}]`.
fn reason(body: &str) -> String {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let details: Vec<String> = v
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| e.as_array())
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.get("name").and_then(|n| n.as_str()).unwrap_or("?"),
                        e.get("description").and_then(|n| n.as_str()).unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let main = provider::json_reason(body);
    if details.is_empty() {
        main
    } else {
        format!("{main} ({})", details.join("; "))
    }
}

#[derive(Deserialize)]
struct RrsetJson {
    #[serde(default)]
    rrset_ttl: u32,
    #[serde(default)]
    rrset_values: Vec<String>,
}

impl Gandi {
    fn record(set: &RecordSet) -> String {
        format!("{} {}", normalize_name(&set.name), set.rtype)
    }

    fn rrset_path(&self, set: &RecordSet) -> String {
        let r = provider::relative(&set.name, &self.api.zone);
        let name = if r.is_empty() { "@".to_string() } else { r };
        format!(
            "/livedns/domains/{}/records/{}/{}",
            provider::seg(self.api.domain()),
            provider::seg(&name),
            set.rtype
        )
    }

    async fn zone(&self) -> Result<(), DnsError> {
        let path = format!("/livedns/domains/{}", provider::seg(self.api.domain()));
        let reply = self.api.call(Method::GET, &path, None, "(zone)").await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(self.api.unknown_zone(&reply)),
            _ => Err(self.api.rejected(&reply, "(zone)", "read the domain")),
        }
    }

    async fn sets(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let mut out = Vec::new();
        for l in like {
            let record = Self::record(l);
            let name = normalize_name(&l.name);
            let reply = self
                .api
                .call(Method::GET, &self.rrset_path(l), None, &record)
                .await?;
            out.push(match reply.status {
                s if s.is_success() => {
                    let r = self.api.parse::<RrsetJson>(&reply, &record)?;
                    let addrs: Vec<IpAddr> = r
                        .rrset_values
                        .iter()
                        .filter_map(|v| v.trim().parse().ok())
                        .collect();
                    let ttl = if addrs.is_empty() { 0 } else { r.rrset_ttl };
                    RecordSet::new(name, l.rtype, ttl, addrs)
                }
                StatusCode::NOT_FOUND => RecordSet::new(name, l.rtype, 0, Vec::new()),
                _ => return Err(self.api.rejected(&reply, &record, "read the RRset")),
            });
        }
        Ok(out)
    }

    async fn read_current(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        self.sets(like).await
    }

    /// The readiness check: the domain's GET proves the token and that LiveDNS serves the
    /// zone; the RRsets are compared. No dry-run write: a read-only token passes this check.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        self.api.same_zone(zone)?;
        self.zone().await?;
        check_expected(expected, &self.sets(expected).await?)?;
        Ok(format!(
            "gandi: personal access token accepted at {}, domain {} on LiveDNS; {} record set(s) are as expected; no conditional write (read, compare, then one PUT per RRset)",
            self.api.base,
            self.api.domain(),
            expected.len()
        ))
    }

    async fn write_set(&self, to: &RecordSet) -> Result<(), DnsError> {
        let record = Self::record(to);
        let path = self.rrset_path(to);
        if to.addrs.is_empty() {
            let reply = self.api.call(Method::DELETE, &path, None, &record).await?;
            return match reply.status {
                s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
                _ => Err(self.api.rejected(&reply, &record, "delete the RRset")),
            };
        }
        let values: Vec<String> = to.addrs.iter().map(|a| a.to_string()).collect();
        let body = json!({ "rrset_values": values, "rrset_ttl": to.ttl });
        let reply = self
            .api
            .call(Method::PUT, &path, Some(&body), &record)
            .await?;
        if !reply.status.is_success() {
            return Err(self.api.rejected(&reply, &record, "replace the RRset"));
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

impl DnsBackend for Gandi {
    fn kind(&self) -> &'static str {
        "gandi"
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
