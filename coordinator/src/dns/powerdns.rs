//! The PowerDNS backend: its HTTP API. A change is ONE `PATCH /api/v1/servers/<id>/zones/<zone>`
//! with every RRset as `changetype: REPLACE` (PowerDNS applies one PATCH in one transaction).
//! The conflict check reads the zone first and compares with `change.from`; unlike RFC 2136
//! prerequisites this read is not atomic with the write (a hand change in between is
//! overwritten), which is the best the API offers.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Trust};
use super::{
    Change, Checked, DnsBackend, DnsError, RecordSet, RecordType, SettingError, check_expected,
    normalize_name,
};

/// Bytes of an error answer quoted in messages.
const BODY_KEEP: usize = 1024;

/// `[dns] type = "powerdns"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of the API, e.g. `"http://127.0.0.1:8081"` or `"https://ns1.example.com:8443"`.
    pub url: String,
    /// PowerDNS server id in the API path (default `"localhost"`).
    #[serde(default = "default_server_id")]
    pub server_id: String,
    /// The zone, e.g. `"example.com."`.
    pub zone: String,
    /// File (mode 0600) holding the API key (`api-key=` in pdns.conf).
    pub api_key_file: PathBuf,
    /// For https: trust only the CA certificate(s) in this PEM file instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time allowed per request, e.g. `"10s"` (default).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// Skip the conflict check and overwrite whatever is there (default false).
    #[serde(default)]
    pub force: bool,
}

fn default_server_id() -> String {
    "localhost".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Clone)]
pub struct PowerDns {
    zone_url: String,
    zone: String,
    api_key: String,
    /// `api_key_file` as configured, named in messages (never its content).
    api_key_file: PathBuf,
    client: reqwest::Client,
    force: bool,
}

impl fmt::Debug for PowerDns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerDns")
            .field("zone_url", &self.zone_url)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads `api_key_file` (as given: the caller resolves relative paths) and builds the backend.
pub fn build(config: &Config) -> Result<PowerDns, SettingError> {
    let api_key = shared::keys::read_secret_file(&config.api_key_file)
        .map_err(|e| SettingError::new("api_key_file", e.to_string()))?;
    build_with_secret(config, api_key)
}

/// Builds the backend from the API key already read from `api_key_file` (the config's
/// validation reads it once) and checks the config.
pub fn build_with_secret(config: &Config, api_key: String) -> Result<PowerDns, SettingError> {
    shared::install_crypto_provider();
    let url = reqwest::Url::parse(&config.url).map_err(|e| {
        SettingError::new(
            "url",
            format!(
                "expected a URL like \"http://127.0.0.1:8081\", got {:?} ({e})",
                config.url
            ),
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(SettingError::new(
            "url",
            format!("expected http:// or https://, got {:?}", config.url),
        ));
    }
    if config.ca_file.is_some() && url.scheme() != "https" {
        return Err(SettingError::new(
            "ca_file",
            "only meaningful with an https:// url",
        ));
    }
    if config.server_id.is_empty() || config.server_id.contains(['/', '?', '#']) {
        return Err(SettingError::new(
            "server_id",
            format!(
                "expected a plain id like \"localhost\", got {:?}",
                config.server_id
            ),
        ));
    }
    let zone = normalize_name(&config.zone);
    if zone == "." || zone.contains(['/', '?', '#']) {
        return Err(SettingError::new(
            "zone",
            format!(
                "expected a zone name like \"example.com.\", got {:?}",
                config.zone
            ),
        ));
    }
    let trust = Trust::from_keys(config.ca_file.as_deref(), None)?;
    let client = http::client(config.timeout, &trust)?;
    let base = config.url.trim_end_matches('/');
    Ok(PowerDns {
        zone_url: format!("{base}/api/v1/servers/{}/zones/{zone}", config.server_id),
        zone,
        api_key,
        api_key_file: config.api_key_file.clone(),
        client,
        force: config.force,
    })
}

#[derive(Deserialize)]
struct ZoneJson {
    /// `Native`, `Master`, `Slave`, `Producer`, `Consumer`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rrsets: Vec<RrsetJson>,
}

#[derive(Deserialize)]
struct RrsetJson {
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    ttl: u32,
    #[serde(default)]
    records: Vec<RecordJson>,
}

#[derive(Deserialize)]
struct RecordJson {
    content: String,
    #[serde(default)]
    disabled: bool,
}

/// PowerDNS puts its reason in `{"error": "..."}`.
fn error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| http::quote(body, BODY_KEEP))
}

impl PowerDns {
    fn net_error(&self, e: reqwest::Error) -> DnsError {
        http::send_error(&format!("powerdns API {}", self.zone_url), e)
    }

    async fn status_error(&self, status: StatusCode, resp: reqwest::Response) -> DnsError {
        let text = error_text(&http::error_body(resp).await);
        match status.as_u16() {
            401 | 403 => DnsError::Auth(format!(
                "powerdns API refused the API key (HTTP {status}): the key in api_key_file ({}) is not the server's `api-key`: {text}",
                self.api_key_file.display()
            )),
            404 => DnsError::Rejected(format!(
                "the zone {} is not on that powerdns server (HTTP 404 at {}): {text}; create it there, or fix dns.zone / dns.server_id",
                self.zone, self.zone_url
            )),
            400 | 422 => DnsError::Rejected(format!(
                "powerdns rejected the change (HTTP {status}): {text}"
            )),
            _ => http::status_error(
                "powerdns API",
                status,
                &format!("powerdns API refused the API key (HTTP {status})"),
                &text,
            ),
        }
    }

    async fn read_zone(&self) -> Result<ZoneJson, DnsError> {
        let resp = self
            .client
            .get(&self.zone_url)
            .header("X-API-Key", &self.api_key)
            .send()
            .await
            .map_err(|e| self.net_error(e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(status, resp).await);
        }
        let body = http::read_answer(resp, &format!("powerdns API {}", self.zone_url)).await?;
        serde_json::from_str::<ZoneJson>(&body)
            .map_err(|e| DnsError::Transient(format!("powerdns API sent an unreadable zone: {e}")))
    }

    async fn read_current(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let zone = self.read_zone().await?;
        Ok(Self::sets_of(&zone, like))
    }

    /// The readiness check: the zone's GET proves the key and that the zone is there (the API
    /// has no dry-run write; a key that can read can write, unless the server runs with
    /// `api-readonly`); a secondary zone cannot be written through the API.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        if normalize_name(zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "check is for zone {zone} but this backend updates {} (dns.zone)",
                self.zone
            )));
        }
        let z = match self.read_zone().await {
            // PowerDNS 4.7 answers 404 for an unknown zone; some versions 422.
            Err(DnsError::Rejected(text)) if text.contains("HTTP 422") => {
                return Err(DnsError::Rejected(format!(
                    "the zone {} is not on that powerdns server: {text}",
                    self.zone
                )));
            }
            other => other?,
        };
        if z.kind.eq_ignore_ascii_case("slave") || z.kind.eq_ignore_ascii_case("consumer") {
            return Err(DnsError::Rejected(format!(
                "the zone {} is a secondary ({}) on that powerdns server: changes must go to its primary",
                self.zone, z.kind
            )));
        }
        check_expected(expected, &Self::sets_of(&z, expected))?;
        Ok(format!(
            "powerdns: API key accepted at {}, zone {} there ({}); {} record set(s) are as expected",
            self.zone_url,
            self.zone,
            if z.kind.is_empty() {
                "kind unknown"
            } else {
                &z.kind
            },
            expected.len()
        ))
    }

    fn sets_of(zone: &ZoneJson, like: &[RecordSet]) -> Vec<RecordSet> {
        like.iter()
            .map(|l| {
                let want = normalize_name(&l.name);
                let found = zone.rrsets.iter().find(|r| {
                    normalize_name(&r.name) == want
                        && r.rtype.eq_ignore_ascii_case(&l.rtype.to_string())
                });
                match found {
                    Some(r) => {
                        let addrs: Vec<IpAddr> = r
                            .records
                            .iter()
                            .filter(|rec| !rec.disabled)
                            .filter_map(|rec| rec.content.trim().parse().ok())
                            .collect();
                        let ttl = if addrs.is_empty() { 0 } else { r.ttl };
                        RecordSet::new(want, l.rtype, ttl, addrs)
                    }
                    None => RecordSet::new(want, l.rtype, 0, Vec::new()),
                }
            })
            .collect()
    }

    fn patch_body(change: &Change) -> serde_json::Value {
        let rrsets: Vec<serde_json::Value> = change
            .to
            .iter()
            .map(|s| {
                let rtype = match s.rtype {
                    RecordType::A => "A",
                    RecordType::AAAA => "AAAA",
                };
                if s.addrs.is_empty() {
                    json!({"name": normalize_name(&s.name), "type": rtype, "changetype": "DELETE"})
                } else {
                    let records: Vec<serde_json::Value> = s
                        .addrs
                        .iter()
                        .map(|a| json!({"content": a.to_string(), "disabled": false}))
                        .collect();
                    json!({
                        "name": normalize_name(&s.name),
                        "type": rtype,
                        "ttl": s.ttl,
                        "changetype": "REPLACE",
                        "records": records,
                    })
                }
            })
            .collect();
        json!({ "rrsets": rrsets })
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        change.validate()?;
        if normalize_name(&change.zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "change is for zone {} but this backend updates {}",
                change.zone, self.zone
            )));
        }
        // PowerDNS answers 204 on success; the read-back makes sure the zone holds the records.
        let steps = Checked {
            check_first: !self.force,
            read_back: true,
        };
        steps.apply(self, change, self.patch(change)).await
    }

    async fn patch(&self, change: &Change) -> Result<(), DnsError> {
        let resp = self
            .client
            .patch(&self.zone_url)
            .header("X-API-Key", &self.api_key)
            .json(&Self::patch_body(change))
            .send()
            .await
            .map_err(|e| self.net_error(e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(status, resp).await);
        }
        Ok(())
    }
}

impl DnsBackend for PowerDns {
    fn kind(&self) -> &'static str {
        "powerdns"
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
