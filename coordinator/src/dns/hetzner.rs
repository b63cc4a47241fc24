//! The Hetzner backend: DNS in the Hetzner Cloud API (`https://api.hetzner.cloud/v1`, Bearer
//! token of a Cloud project; the old `dns.hetzner.com` API was shut down in May 2026).
//! Following https://docs.hetzner.cloud/reference/cloud#zone-rrsets and `#zone-rrset-actions`:
//! - `GET /zones/{zone}` (mode `primary`/`secondary`, default `ttl`);
//! - `GET /zones/{zone}/rrsets/{name}/{type}` (`name` relative, `@` for the apex; 404 when the
//!   RRset does not exist; `ttl: null` means the zone's default);
//! - `POST …/rrsets/{name}/{type}/actions/set_records` (`{"records":[{"value":…}]}`) replaces
//!   the records of an existing RRset, `…/actions/change_ttl` (`{"ttl":…}`) its TTL,
//!   `POST /zones/{zone}/rrsets` creates one, `DELETE …/rrsets/{name}/{type}` removes one;
//! - each of these answers with an asynchronous action (`running` → `success` | `error`),
//!   polled at `GET /zones/actions/{id}` until it finishes, within `action_timeout`; `error`
//!   → [`DnsError::Rejected`].
//!
//! No conditional write: Quorate reads the RRsets, compares with `change.from`, then writes
//! (a hand edit between the read and the write is overwritten), and reads back. Each RRset is
//! its own action: A and AAAA do not switch in one step.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::provider::{self, Api, Reply, Spec};
use super::secret::SecretSource;
use super::{
    Change, Checked, DnsBackend, DnsError, RecordSet, SettingError, check_expected, normalize_name,
};

/// `[dns] type = "hetzner"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Cloud API (default `"https://api.hetzner.cloud/v1"`); tests point it at a stand-in.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The zone, e.g. `"example.com"`.
    pub zone: String,
    /// File (mode 0600) holding a Cloud project API token with read & write permission.
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
    /// Time allowed for one action to finish (default `"60s"`).
    #[serde(
        default = "default_action_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub action_timeout: Duration,
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

fn default_action_timeout() -> Duration {
    Duration::from_secs(60)
}

/// First wait between two polls of an action; doubled up to [`POLL_MAX`]. Hetzner's actions
/// for DNS usually finish within a second: the first polls are quick, later ones spare the
/// rate limit (3,600 requests an hour per project).
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);

const SPEC: Spec = Spec {
    provider: "hetzner",
    default_url: "https://api.hetzner.cloud/v1",
    scheme: "Bearer",
    detail: provider::json_reason,
};

#[derive(Clone)]
pub struct Hetzner {
    api: Api,
    action_timeout: Duration,
    force: bool,
}

impl fmt::Debug for Hetzner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hetzner")
            .field("api", &self.api)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads the token and builds the backend.
pub fn build(config: &Config) -> Result<Hetzner, SettingError> {
    let token = config.token_source()?.read()?;
    build_with_secret(config, &token)
}

/// Builds the backend from the token already read (the config's validation reads it once).
pub fn build_with_secret(config: &Config, token: &str) -> Result<Hetzner, SettingError> {
    let source = config.token_source()?;
    let api = Api::new(
        SPEC,
        &config.base_url,
        &config.zone,
        config.timeout,
        token,
        &source,
    )?;
    Ok(Hetzner {
        api,
        action_timeout: config.action_timeout,
        force: config.force,
    })
}

#[derive(Deserialize)]
struct ZoneReply {
    zone: ZoneJson,
}

#[derive(Deserialize)]
struct ZoneJson {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    ttl: Option<u32>,
}

#[derive(Deserialize)]
struct RrsetReply {
    rrset: RrsetJson,
}

#[derive(Deserialize)]
struct RrsetJson {
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    records: Vec<RecordJson>,
}

#[derive(Deserialize)]
struct RecordJson {
    value: String,
}

#[derive(Deserialize)]
struct ActionReply {
    action: ActionJson,
}

#[derive(Deserialize)]
struct ActionJson {
    id: u64,
    #[serde(default)]
    command: String,
    status: String,
    #[serde(default)]
    error: Option<ActionError>,
}

#[derive(Deserialize)]
struct ActionError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What one RRset is at Hetzner now: `None` when it does not exist.
struct Found {
    ttl: Option<u32>,
    addrs: Vec<IpAddr>,
}

impl Hetzner {
    /// `www` → `www`, apex → `@`.
    fn rr_name(&self, name: &str) -> String {
        let r = provider::relative(name, &self.api.zone);
        if r.is_empty() { "@".into() } else { r }
    }

    fn rrset_path(&self, set: &RecordSet) -> String {
        format!(
            "/zones/{}/rrsets/{}/{}",
            provider::seg(self.api.domain()),
            provider::seg(&self.rr_name(&set.name)),
            set.rtype
        )
    }

    fn record(set: &RecordSet) -> String {
        format!("{} {}", normalize_name(&set.name), set.rtype)
    }

    async fn zone(&self) -> Result<ZoneJson, DnsError> {
        let path = format!("/zones/{}", provider::seg(self.api.domain()));
        let reply = self.api.call(Method::GET, &path, None, "(zone)").await?;
        match reply.status {
            s if s.is_success() => Ok(self.api.parse::<ZoneReply>(&reply, "(zone)")?.zone),
            StatusCode::NOT_FOUND => Err(self.api.unknown_zone(&reply)),
            _ => Err(self.api.rejected(&reply, "(zone)", "read the zone")),
        }
    }

    async fn rrset(&self, set: &RecordSet) -> Result<Option<Found>, DnsError> {
        let record = Self::record(set);
        let reply = self
            .api
            .call(Method::GET, &self.rrset_path(set), None, &record)
            .await?;
        match reply.status {
            s if s.is_success() => {
                let r = self.api.parse::<RrsetReply>(&reply, &record)?.rrset;
                Ok(Some(Found {
                    ttl: r.ttl,
                    addrs: r
                        .records
                        .iter()
                        .filter_map(|v| v.value.trim().parse().ok())
                        .collect(),
                }))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.api.rejected(&reply, &record, "read the RRset")),
        }
    }

    async fn read_current(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let zone = self.zone().await?;
        self.sets(&zone, like).await
    }

    async fn sets(&self, zone: &ZoneJson, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let mut out = Vec::new();
        for l in like {
            let name = normalize_name(&l.name);
            out.push(match self.rrset(l).await? {
                Some(f) if !f.addrs.is_empty() => RecordSet::new(
                    name,
                    l.rtype,
                    f.ttl.or(zone.ttl).unwrap_or_default(),
                    f.addrs,
                ),
                _ => RecordSet::new(name, l.rtype, 0, Vec::new()),
            });
        }
        Ok(out)
    }

    /// The readiness check: the zone's GET proves the token and the zone (and that it is a
    /// primary zone, the only mode whose RRsets can be written); the RRsets are compared. The
    /// API has no dry-run write: a read-only token passes this check.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        self.api.same_zone(zone)?;
        let z = self.zone().await?;
        if !z.mode.is_empty() && !z.mode.eq_ignore_ascii_case("primary") {
            return Err(DnsError::Rejected(format!(
                "hetzner: zone {} is in {} mode; only primary zones' RRsets can be changed",
                self.api.zone, z.mode
            )));
        }
        check_expected(expected, &self.sets(&z, expected).await?)?;
        Ok(format!(
            "hetzner: API token accepted at {}, zone {} there (primary); {} record set(s) are as expected; no conditional write (read, compare, then write)",
            self.api.base,
            self.api.zone,
            expected.len()
        ))
    }

    /// Waits for an action to leave `running`: `success` → Ok, `error` → rejected.
    async fn wait_action(&self, reply: &Reply, record: &str) -> Result<(), DnsError> {
        let mut action = self.api.parse::<ActionReply>(reply, record)?.action;
        let deadline = tokio::time::Instant::now() + self.action_timeout;
        let mut pause = POLL_FIRST;
        loop {
            match action.status.as_str() {
                "success" => return Ok(()),
                "error" => {
                    let (code, message) = action
                        .error
                        .map(|e| (e.code, e.message))
                        .unwrap_or_default();
                    return Err(DnsError::Rejected(format!(
                        "hetzner: action {} ({}) failed (zone {}, {record}): {code}: {message}",
                        action.id, action.command, self.api.zone
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(DnsError::Transient(format!(
                    "hetzner: action {} ({}) still {} after {:?} (zone {}, {record}); the change may still happen",
                    action.id, action.command, action.status, self.action_timeout, self.api.zone
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            let path = format!("/zones/actions/{}", action.id);
            let polled = self.api.call(Method::GET, &path, None, record).await?;
            if !polled.status.is_success() {
                return Err(self.api.rejected(&polled, record, "show the action"));
            }
            action = self.api.parse::<ActionReply>(&polled, record)?.action;
        }
    }

    /// One action-returning request, then its action waited for.
    async fn act(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        record: &str,
        doing: &str,
    ) -> Result<(), DnsError> {
        let reply = self.api.call(method, path, body, record).await?;
        if !reply.status.is_success() {
            return Err(self.api.rejected(&reply, record, doing));
        }
        self.wait_action(&reply, record).await
    }

    /// Makes one RRset `to`: created, records set (and TTL changed), or deleted.
    async fn write_set(&self, to: &RecordSet) -> Result<(), DnsError> {
        let record = Self::record(to);
        let path = self.rrset_path(to);
        let records: Vec<serde_json::Value> = to
            .addrs
            .iter()
            .map(|a| json!({ "value": a.to_string() }))
            .collect();
        match (self.rrset(to).await?, to.addrs.is_empty()) {
            (None, true) => Ok(()),
            (Some(_), true) => {
                self.act(Method::DELETE, &path, None, &record, "delete the RRset")
                    .await
            }
            (None, false) => {
                let body = json!({
                    "name": self.rr_name(&to.name),
                    "type": to.rtype.to_string(),
                    "ttl": to.ttl,
                    "records": records,
                });
                let create = format!("/zones/{}/rrsets", provider::seg(self.api.domain()));
                self.act(
                    Method::POST,
                    &create,
                    Some(&body),
                    &record,
                    "create the RRset",
                )
                .await
            }
            (Some(found), false) => {
                let body = json!({ "records": records });
                self.act(
                    Method::POST,
                    &format!("{path}/actions/set_records"),
                    Some(&body),
                    &record,
                    "set the RRset's records",
                )
                .await?;
                if found.ttl != Some(to.ttl) {
                    let body = json!({ "ttl": to.ttl });
                    self.act(
                        Method::POST,
                        &format!("{path}/actions/change_ttl"),
                        Some(&body),
                        &record,
                        "change the RRset's TTL",
                    )
                    .await?;
                }
                Ok(())
            }
        }
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

impl DnsBackend for Hetzner {
    fn kind(&self) -> &'static str {
        "hetzner"
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
