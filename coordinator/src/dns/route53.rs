//! The Route 53 backend: its REST/XML API (2013-04-01), requests signed with SigV4 by the
//! `aws-sigv4` crate alone (the AWS SDK always brings aws-lc-rs, a second crypto stack).
//!
//! - `current` lists each record set (`GET /2013-04-01/hostedzone/{id}/rrset?name=&type=`).
//! - A change is ONE `ChangeResourceRecordSets` batch: per record set a DELETE carrying the
//!   exact values and TTL read just before (when it exists) and a CREATE of the new one (when
//!   it has addresses). Route 53 applies a batch all or nothing and refuses a DELETE whose
//!   values differ from what it holds, or a CREATE over an existing set: a record changed
//!   since the read makes the whole batch fail (`InvalidChangeBatch`), reported as a
//!   conflict. This is a real conditional write.
//! - Then `GetChange` is polled until `INSYNC` (every authoritative Route 53 server has it),
//!   for at most `sync_timeout`.
//!
//! Documentation followed:
//! <https://docs.aws.amazon.com/Route53/latest/APIReference/API_ChangeResourceRecordSets.html>,
//! `API_GetChange.html`, `API_ListResourceRecordSets.html`, `API_GetHostedZone.html` and
//! the common errors page.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::http::{self, Trust};
use super::secret::{SecretKeys, SecretSource};
use super::{
    Change, DnsBackend, DnsError, RecordSet, RecordType, SettingError, Ttl, check_expected,
    describe_sets, normalize_name, precheck, same_records,
};

/// Route 53's global endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://route53.amazonaws.com";
/// Route 53 is signed for us-east-1 whatever the zone.
pub const DEFAULT_REGION: &str = "us-east-1";
const SERVICE: &str = "route53";
const XMLNS: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// Bytes of an error answer quoted in messages.
const BODY_KEEP: usize = 1024;
/// The first `GetChange` poll waits this long, then twice as long each time up to
/// [`MAX_POLL`]: Route 53 usually reaches INSYNC within a minute, and GetChange counts
/// against the account's 5 requests a second.
const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(5);

/// `[dns] type = "route53"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The hosted zone's name, e.g. `"example.com."`.
    pub zone: String,
    /// The hosted zone's id, e.g. `"Z0123456789ABCDEFGHIJ"` (with or without `/hostedzone/`).
    pub hosted_zone_id: String,
    /// An AWS shared credentials file (INI, mode 0600) to read the keys from; without it (and
    /// without `access_key_id`) the environment's `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// (and `AWS_SESSION_TOKEN`).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// The profile (section) of `credentials_file` (default `"default"`).
    #[serde(default)]
    pub profile: Option<String>,
    /// The access key's id (`AKIA…`: an identifier, not a secret), whose secret comes from
    /// exactly one of `secret_access_key_file`, `_env`, `_credential`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// A mode 0600 file holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
    /// The name of an environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/<name>`) holding it.
    #[serde(default)]
    pub secret_access_key_credential: Option<String>,
    /// The API endpoint (default [`DEFAULT_ENDPOINT`]; tests point it at a stand-in).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The SigV4 signing region (default [`DEFAULT_REGION`]).
    #[serde(default = "default_region")]
    pub region: String,
    /// Trust only the CA certificate(s) in this PEM file (a stand-in or a proxy).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time allowed per request, e.g. `"10s"` (default).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// How long to wait for the change to be `INSYNC` (default `"120s"`).
    #[serde(
        default = "default_sync_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub sync_timeout: Duration,
    /// Skip the conflict check: delete whatever is there (default false).
    #[serde(default)]
    pub force: bool,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}

fn default_region() -> String {
    DEFAULT_REGION.into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_sync_timeout() -> Duration {
    Duration::from_secs(120)
}

/// An access key, read once. `Debug` shows the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where they came from, for messages: `credentials_file (/etc/quorate/aws) profile quorate`.
    pub from: String,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The keys Route 53's secret access key can be given with.
pub const SECRET_ACCESS_KEY: SecretKeys = SecretKeys {
    file: "secret_access_key_file",
    env: "secret_access_key_env",
    credential: "secret_access_key_credential",
    what: "the secret access key",
};

impl Config {
    /// Reads the credentials: `access_key_id` with its secret from a file, an environment
    /// variable or a systemd credential; or `credentials_file` (and `profile`); or the AWS
    /// environment variables.
    pub fn read_credentials(&self) -> Result<AwsCredentials, SettingError> {
        self.read_credentials_with(|n| std::env::var(n).ok())
    }

    /// Whether one of the `access_key_id` / `secret_access_key_*` keys is set.
    fn has_access_key(&self) -> bool {
        self.access_key_id.is_some()
            || self.secret_access_key_file.is_some()
            || self.secret_access_key_env.is_some()
            || self.secret_access_key_credential.is_some()
    }

    /// [`Config::read_credentials`] with the process's environment given (tests): the AWS
    /// variables, the variable `secret_access_key_env` names, and `CREDENTIALS_DIRECTORY`.
    pub fn read_credentials_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AwsCredentials, SettingError> {
        if self.has_access_key() {
            return self.read_access_key(&env);
        }
        match &self.credentials_file {
            Some(path) => {
                let profile = self.profile.as_deref().unwrap_or("default");
                let text = shared::keys::read_secret_file(path)
                    .map_err(|e| SettingError::new("credentials_file", e.to_string()))?;
                profile_credentials(&text, profile, path)
            }
            None => {
                if self.profile.is_some() {
                    return Err(SettingError::new(
                        "profile",
                        "only meaningful with credentials_file",
                    ));
                }
                let get = |n: &str| {
                    env(n)
                        .map(|v| v.trim().to_string())
                        .filter(|v| !v.is_empty())
                };
                match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => Ok(AwsCredentials {
                        access_key_id: id,
                        secret_access_key: secret,
                        session_token: get("AWS_SESSION_TOKEN"),
                        from: "the environment (AWS_ACCESS_KEY_ID)".into(),
                    }),
                    _ => Err(SettingError::new(
                        "credentials_file",
                        "missing; expected access_key_id with one of secret_access_key_file, secret_access_key_env or secret_access_key_credential, or a 0600 AWS credentials file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment",
                    )),
                }
            }
        }
    }

    /// `access_key_id` and its secret from one of the `secret_access_key_*` sources.
    fn read_access_key(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AwsCredentials, SettingError> {
        if self.credentials_file.is_some() || self.profile.is_some() {
            let key = if self.credentials_file.is_some() {
                "credentials_file"
            } else {
                "profile"
            };
            return Err(SettingError::new(
                key,
                "give either credentials_file (and profile) or access_key_id with one of secret_access_key_file, secret_access_key_env and secret_access_key_credential, not both",
            ));
        }
        let id = self
            .access_key_id
            .as_deref()
            .map(str::trim)
            .unwrap_or_default();
        if id.is_empty() {
            return Err(SettingError::new(
                "access_key_id",
                "missing; a secret_access_key_* key is set, so expected the access key's id too (like \"AKIAIOSFODNN7EXAMPLE\"; not a secret)",
            ));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric()) || id.len() > 128 {
            return Err(SettingError::new(
                "access_key_id",
                format!(
                    "expected an access key id of letters and digits like \"AKIAIOSFODNN7EXAMPLE\", got {id:?} (the secret belongs in secret_access_key_file, _env or _credential)"
                ),
            ));
        }
        let source = SecretSource::one_of(
            SECRET_ACCESS_KEY,
            self.secret_access_key_file.as_ref(),
            self.secret_access_key_env.as_ref(),
            self.secret_access_key_credential.as_ref(),
        )?;
        let secret = source.read_as(SECRET_ACCESS_KEY, env)?;
        Ok(AwsCredentials {
            access_key_id: id.to_string(),
            secret_access_key: secret,
            session_token: None,
            from: source.describe_in(SECRET_ACCESS_KEY),
        })
    }
}

/// `[profile]` → `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token` of an
/// AWS shared credentials file.
fn profile_credentials(
    text: &str,
    profile: &str,
    path: &Path,
) -> Result<AwsCredentials, SettingError> {
    let mut section: Option<String> = None;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        if section.as_deref() != Some(profile) {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(AwsCredentials {
            access_key_id,
            secret_access_key,
            session_token: token,
            from: format!("credentials_file ({}) profile {profile}", path.display()),
        }),
        _ => Err(SettingError::new(
            "credentials_file",
            format!(
                "{}: expected a [{profile}] section with aws_access_key_id and aws_secret_access_key (set profile to use another section)",
                path.display()
            ),
        )),
    }
}

pub struct Route53 {
    endpoint: String,
    region: String,
    zone: String,
    /// The bare id (`Z0123…`).
    zone_id: String,
    creds: AwsCredentials,
    client: reqwest::Client,
    sync_timeout: Duration,
    force: bool,
}

impl fmt::Debug for Route53 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53")
            .field("endpoint", &self.endpoint)
            .field("zone", &self.zone)
            .field("zone_id", &self.zone_id)
            .field("creds", &self.creds)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads the credentials and builds the backend.
pub fn build(config: &Config) -> Result<Route53, SettingError> {
    let creds = config.read_credentials()?;
    build_with_credentials(config, creds)
}

/// Builds the backend from credentials already read (the config's validation reads them once).
pub fn build_with_credentials(
    config: &Config,
    creds: AwsCredentials,
) -> Result<Route53, SettingError> {
    shared::install_crypto_provider();
    let url = reqwest::Url::parse(&config.endpoint).map_err(|e| {
        SettingError::new(
            "endpoint",
            format!(
                "expected a URL like {DEFAULT_ENDPOINT:?}, got {:?} ({e})",
                config.endpoint
            ),
        )
    })?;
    let loopback = url
        .host_str()
        .is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()));
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(SettingError::new(
            "endpoint",
            format!(
                "expected https:// (http:// only on loopback), got {:?}",
                config.endpoint
            ),
        ));
    }
    let zone = normalize_name(&config.zone);
    if zone == "." {
        return Err(SettingError::new(
            "zone",
            format!(
                "expected the hosted zone's name like \"example.com.\", got {:?}",
                config.zone
            ),
        ));
    }
    let zone_id = config
        .hosted_zone_id
        .trim()
        .trim_start_matches("/hostedzone/")
        .to_string();
    if zone_id.is_empty() || !zone_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SettingError::new(
            "hosted_zone_id",
            format!(
                "expected an id like \"Z0123456789ABCDEFGHIJ\", got {:?}",
                config.hosted_zone_id
            ),
        ));
    }
    if config.region.is_empty() {
        return Err(SettingError::new(
            "region",
            "expected a region like \"us-east-1\"",
        ));
    }
    let trust = Trust::from_keys(config.ca_file.as_deref(), None)?;
    let client = http::client(config.timeout, &trust)?;
    Ok(Route53 {
        endpoint: config.endpoint.trim_end_matches('/').to_string(),
        region: config.region.clone(),
        zone,
        zone_id,
        creds,
        client,
        sync_timeout: config.sync_timeout,
        force: config.force,
    })
}

// ---- XML of the API -------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename = "ChangeResourceRecordSetsRequest")]
struct ChangeRequestXml {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "ChangeBatch")]
    batch: ChangeBatchXml,
}

#[derive(Serialize)]
struct ChangeBatchXml {
    #[serde(rename = "Comment")]
    comment: String,
    #[serde(rename = "Changes")]
    changes: ChangesXml,
}

#[derive(Serialize)]
struct ChangesXml {
    #[serde(rename = "Change")]
    change: Vec<ChangeXml>,
}

#[derive(Serialize)]
struct ChangeXml {
    #[serde(rename = "Action")]
    action: &'static str,
    #[serde(rename = "ResourceRecordSet")]
    set: RrsetXml,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct RrsetXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(
        rename = "SetIdentifier",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    set_identifier: Option<String>,
    #[serde(rename = "TTL", default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(
        rename = "ResourceRecords",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    records: Option<RecordsXml>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct RecordsXml {
    #[serde(rename = "ResourceRecord", default)]
    record: Vec<RecordXml>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct RecordXml {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Deserialize)]
struct ListXml {
    #[serde(rename = "ResourceRecordSets", default)]
    sets: ListSetsXml,
}

#[derive(Deserialize, Default)]
struct ListSetsXml {
    #[serde(rename = "ResourceRecordSet", default)]
    set: Vec<RrsetXml>,
}

#[derive(Deserialize)]
struct ChangeInfoResponseXml {
    #[serde(rename = "ChangeInfo")]
    info: ChangeInfoXml,
}

#[derive(Deserialize)]
struct ChangeInfoXml {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Status")]
    status: String,
}

#[derive(Deserialize)]
struct HostedZoneResponseXml {
    #[serde(rename = "HostedZone")]
    zone: HostedZoneXml,
}

#[derive(Deserialize)]
struct HostedZoneXml {
    #[serde(rename = "Name")]
    name: String,
}

/// `<ErrorResponse><Error><Code>…` or `<InvalidChangeBatch><Messages><Message>…`.
#[derive(Deserialize, Default)]
struct ErrorXml {
    #[serde(rename = "Error", default)]
    error: Option<ErrorInnerXml>,
    #[serde(rename = "Messages", default)]
    messages: Option<MessagesXml>,
    #[serde(rename = "Message", default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorInnerXml {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize, Default)]
struct MessagesXml {
    #[serde(rename = "Message", default)]
    message: Vec<String>,
}

/// A failed answer: the error code (the root element's name for `InvalidChangeBatch`) and
/// the messages.
#[derive(Debug)]
struct Failure {
    status: u16,
    code: String,
    messages: Vec<String>,
}

impl Failure {
    fn parse(status: u16, body: &str) -> Failure {
        let parsed: ErrorXml = quick_xml::de::from_str(body).unwrap_or_default();
        let mut messages = Vec::new();
        let mut code = String::new();
        if let Some(e) = parsed.error {
            code = e.code;
            messages.push(e.message);
        }
        if let Some(m) = parsed.messages {
            messages.extend(m.message);
        }
        messages.extend(parsed.message);
        if code.is_empty() && body.contains("<InvalidChangeBatch") {
            code = "InvalidChangeBatch".into();
        }
        messages.retain(|m| !m.is_empty());
        if messages.is_empty() {
            messages.push(http::quote(body, BODY_KEEP));
        }
        Failure {
            status,
            code,
            messages,
        }
    }

    /// An `InvalidChangeBatch` saying the records are not what the batch says they are (a
    /// DELETE that does not match or finds nothing, a CREATE over an existing set): someone
    /// changed them since Quorate read them. Other refusals (a bad value) are not conflicts.
    fn is_stale(&self) -> bool {
        self.code == "InvalidChangeBatch"
            && self.messages.iter().any(|m| {
                m.contains("do not match")
                    || m.contains("was not found")
                    || m.contains("already exists")
            })
    }

    fn describe(&self) -> String {
        format!(
            "{} (HTTP {}): {}",
            if self.code.is_empty() {
                "error"
            } else {
                &self.code
            },
            self.status,
            self.messages.join("; ")
        )
    }
}

const AUTH_CODES: [&str; 7] = [
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "AccessDenied",
    "AccessDeniedException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
];
const THROTTLE_CODES: [&str; 3] = [
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
];

fn rtype_str(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
    }
}

fn describe_keys(sets: &[RecordSet]) -> String {
    let keys: Vec<String> = sets
        .iter()
        .map(|s| format!("{} {}", normalize_name(&s.name), s.rtype))
        .collect();
    keys.join(", ")
}

impl Route53 {
    fn about(&self, records: &str) -> String {
        format!("hosted zone {} ({}), {records}", self.zone_id, self.zone)
    }

    /// Signs and sends one request; Ok(Err) is a 4xx the caller interprets (after auth and
    /// throttling are sorted out here).
    async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<String>,
        about: &str,
    ) -> Result<Result<String, Failure>, DnsError> {
        let url = format!("{}{path_and_query}", self.endpoint);
        let body_bytes = body.unwrap_or_default();
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if method == reqwest::Method::POST {
            headers.push(("content-type", "text/xml"));
        }
        let signed = self
            .sign(method.as_str(), &url, &headers, body_bytes.as_bytes())
            .map_err(|e| {
                DnsError::Rejected(format!("route53: cannot sign the request for {about}: {e}"))
            })?;
        let mut req = self.client.request(method, &url);
        for (k, v) in headers
            .iter()
            .copied()
            .chain(signed.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            req = req.header(k, v);
        }
        if !body_bytes.is_empty() {
            req = req.body(body_bytes);
        }
        let what = format!("route53 API ({about})");
        let resp = req.send().await.map_err(|e| http::send_error(&what, e))?;
        let status = resp.status();
        if status.is_success() {
            return http::read_answer(resp, &what).await.map(Ok);
        }
        let retry_after = http::retry_after(resp.headers());
        let failure = Failure::parse(status.as_u16(), &http::error_body(resp).await);
        if status.as_u16() == 401
            || status.as_u16() == 403
            || AUTH_CODES.contains(&failure.code.as_str())
        {
            return Err(DnsError::Auth(format!(
                "route53 refused the access key {} from {} for {about}: {}; check the secret key, and that the key may call route53:ListResourceRecordSets, route53:ChangeResourceRecordSets, route53:GetChange and route53:GetHostedZone",
                self.creds.access_key_id,
                self.creds.from,
                failure.describe()
            )));
        }
        if status.as_u16() == 429 || THROTTLE_CODES.contains(&failure.code.as_str()) {
            return Err(DnsError::Throttled {
                message: format!(
                    "route53 throttled the request for {about}: {}",
                    failure.describe()
                ),
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(DnsError::Transient(format!(
                "{what} failed: {}",
                failure.describe()
            )));
        }
        if failure.code == "NoSuchHostedZone" {
            return Err(DnsError::Rejected(format!(
                "route53 has no hosted zone {} (dns.hosted_zone_id) for {about}: {}",
                self.zone_id,
                failure.describe()
            )));
        }
        Ok(Err(failure))
    }

    /// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-content-sha256`, maybe
    /// `x-amz-security-token`) for one request.
    ///
    /// The payload's hash travels as a signed `x-amz-content-sha256` header, a standard SigV4
    /// header (S3 requires it, the other services take it): the signature is the same, and a
    /// verifier that rebuilds the body wrongly still finds the hash (moto 5.2's check of
    /// Route 53 GET requests rebuilds it from the wrong fields and refuses every one without it).
    fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
        };
        let creds = aws_credential_types::Credentials::new(
            &self.creds.access_key_id,
            &self.creds.secret_access_key,
            self.creds.session_token.clone(),
            None,
            "quorate",
        );
        let identity = creds.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn rejected(&self, about: &str, f: &Failure) -> DnsError {
        DnsError::Rejected(format!(
            "route53 refused the request for {about}: {}",
            f.describe()
        ))
    }

    /// One record set as Route 53 holds it (simple routing only), `None` when it does not exist.
    async fn read_set(&self, key: &RecordSet) -> Result<Option<RrsetXml>, DnsError> {
        let name = normalize_name(&key.name);
        let rtype = rtype_str(key.rtype);
        let about = self.about(&format!("record {name} {rtype}"));
        let mut url =
            reqwest::Url::parse("http://x/").map_err(|e| DnsError::Rejected(e.to_string()))?;
        url.set_path(&format!("/2013-04-01/hostedzone/{}/rrset", self.zone_id));
        url.query_pairs_mut()
            .append_pair("name", &name)
            .append_pair("type", rtype)
            .append_pair("maxitems", "10");
        let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let body = match self.call(reqwest::Method::GET, &path, None, &about).await? {
            Ok(b) => b,
            Err(f) => return Err(self.rejected(&about, &f)),
        };
        let list: ListXml = quick_xml::de::from_str(&body).map_err(|e| {
            DnsError::Transient(format!(
                "route53 sent an unreadable record list for {about}: {e}"
            ))
        })?;
        let mut mine: Vec<RrsetXml> = list
            .sets
            .set
            .into_iter()
            .filter(|s| normalize_name(&unescape(&s.name)) == name && s.rtype == rtype)
            .collect();
        if mine.len() > 1 || mine.iter().any(|s| s.set_identifier.is_some()) {
            return Err(DnsError::Rejected(format!(
                "{about}: the record set uses a routing policy (SetIdentifier); Quorate switches simple record sets only"
            )));
        }
        Ok(mine.pop())
    }

    async fn read_sets(
        &self,
        like: &[RecordSet],
    ) -> Result<Vec<(RecordSet, Option<RrsetXml>)>, DnsError> {
        let mut out = Vec::new();
        for l in like {
            let raw = self.read_set(l).await?;
            let addrs: Vec<IpAddr> = raw
                .as_ref()
                .and_then(|r| r.records.as_ref())
                .map(|r| {
                    r.record
                        .iter()
                        .filter_map(|v| v.value.trim().parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let ttl = if addrs.is_empty() {
                0
            } else {
                raw.as_ref().and_then(|r| r.ttl).unwrap_or(0)
            };
            out.push((
                RecordSet::new(normalize_name(&l.name), l.rtype, ttl, addrs),
                raw,
            ));
        }
        Ok(out)
    }

    /// The batch: per record set, DELETE of what is there now (exact values and TTL), CREATE
    /// of the new one.
    fn batch(change: &Change, now: &[(RecordSet, Option<RrsetXml>)]) -> String {
        let mut changes = Vec::new();
        for (set, (_, old)) in change.to.iter().zip(now) {
            if let Some(old) = old {
                changes.push(ChangeXml {
                    action: "DELETE",
                    set: old.clone(),
                });
            }
            if !set.addrs.is_empty() {
                changes.push(ChangeXml {
                    action: "CREATE",
                    set: RrsetXml {
                        name: normalize_name(&set.name),
                        rtype: rtype_str(set.rtype).into(),
                        set_identifier: None,
                        ttl: Some(set.ttl),
                        records: Some(RecordsXml {
                            record: set
                                .addrs
                                .iter()
                                .map(|a| RecordXml {
                                    value: a.to_string(),
                                })
                                .collect(),
                        }),
                    },
                });
            }
        }
        let req = ChangeRequestXml {
            xmlns: XMLNS,
            batch: ChangeBatchXml {
                comment: "quorate failover".into(),
                changes: ChangesXml { change: changes },
            },
        };
        let xml = quick_xml::se::to_string(&req).unwrap_or_default();
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}")
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        change.validate()?;
        if normalize_name(&change.zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "change is for zone {} but this route53 backend updates {} (dns.zone)",
                change.zone, self.zone
            )));
        }
        let about = self.about(&format!("records {}", describe_keys(&change.to)));
        let now = self.read_sets(&change.to).await?;
        let sets: Vec<RecordSet> = now.iter().map(|(s, _)| s.clone()).collect();
        if !self.force {
            precheck(change, &sets, false)?;
        }
        if same_records(&change.to, &sets, Ttl::Compared) {
            return Ok(());
        }
        let path = format!("/2013-04-01/hostedzone/{}/rrset", self.zone_id);
        let body = Self::batch(change, &now);
        let answer = match self
            .call(reqwest::Method::POST, &path, Some(body), &about)
            .await?
        {
            Ok(b) => b,
            Err(f) if f.is_stale() => {
                // All or nothing: nothing changed. Someone changed the records since the read.
                let found = match self.read_sets(&change.to).await {
                    Ok(sets) => {
                        describe_sets(&sets.into_iter().map(|(s, _)| s).collect::<Vec<_>>())
                    }
                    Err(e) => format!("(unknown: {e})"),
                };
                return Err(DnsError::Conflict {
                    expected: format!(
                        "{} (route53 refused the batch for {about}: {})",
                        describe_sets(&change.from),
                        f.describe()
                    ),
                    found,
                });
            }
            Err(f) => return Err(self.rejected(&about, &f)),
        };
        let info: ChangeInfoResponseXml = quick_xml::de::from_str(&answer).map_err(|e| {
            DnsError::Transient(format!(
                "route53 sent an unreadable answer to the change for {about}: {e}"
            ))
        })?;
        self.wait_insync(&info.info, &about).await
    }

    /// Polls `GetChange` until `INSYNC`, at most `sync_timeout`.
    async fn wait_insync(&self, info: &ChangeInfoXml, about: &str) -> Result<(), DnsError> {
        let id = info.id.trim_start_matches("/change/").to_string();
        let mut status = info.status.clone();
        let deadline = tokio::time::Instant::now() + self.sync_timeout;
        let mut delay = FIRST_POLL;
        while status != "INSYNC" {
            if tokio::time::Instant::now() + delay > deadline {
                return Err(DnsError::Transient(format!(
                    "route53 accepted change {id} for {about} but it is still {status} after {} s (sync_timeout); a retry finds it applied",
                    self.sync_timeout.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_POLL);
            let path = format!("/2013-04-01/change/{id}");
            let body = match self.call(reqwest::Method::GET, &path, None, about).await? {
                Ok(b) => b,
                Err(f) => return Err(self.rejected(about, &f)),
            };
            let got: ChangeInfoResponseXml = quick_xml::de::from_str(&body).map_err(|e| {
                DnsError::Transient(format!(
                    "route53 sent an unreadable GetChange answer for {about}: {e}"
                ))
            })?;
            status = got.info.status;
        }
        Ok(())
    }

    /// The readiness check: `GetHostedZone` proves the key and the zone (and that its name is
    /// `dns.zone`); the record sets are compared. Route 53 has no dry-run change: the
    /// permission to change records is not proven.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        if normalize_name(zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "check is for zone {zone} but this route53 backend updates {} (dns.zone)",
                self.zone
            )));
        }
        let about = self.about("the hosted zone");
        let path = format!("/2013-04-01/hostedzone/{}", self.zone_id);
        let body = match self.call(reqwest::Method::GET, &path, None, &about).await? {
            Ok(b) => b,
            Err(f) => return Err(self.rejected(&about, &f)),
        };
        let hz: HostedZoneResponseXml = quick_xml::de::from_str(&body).map_err(|e| {
            DnsError::Transient(format!(
                "route53 sent an unreadable hosted zone for {about}: {e}"
            ))
        })?;
        if normalize_name(&unescape(&hz.zone.name)) != self.zone {
            return Err(DnsError::Rejected(format!(
                "route53 hosted zone {} is {}, not {} (dns.zone); fix dns.hosted_zone_id or dns.zone",
                self.zone_id, hz.zone.name, self.zone
            )));
        }
        let sets: Vec<RecordSet> = self
            .read_sets(expected)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        check_expected(expected, &sets)?;
        Ok(format!(
            "route53: access key {} from {} accepted, hosted zone {} is {}; {} record set(s) are as expected; the permission to change records is not proven by a read",
            self.creds.access_key_id,
            self.creds.from,
            self.zone_id,
            self.zone,
            expected.len()
        ))
    }
}

/// Route 53 writes some characters of names as `\ooo` octal escapes (`\052` for `*`).
fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let esc = rest.get(pos + 1..pos + 4).unwrap_or_default();
        match u8::from_str_radix(esc, 8) {
            Ok(b) if esc.len() == 3 => {
                out.push(char::from(b));
                rest = &rest[pos + 4..];
            }
            _ => {
                out.push('\\');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl DnsBackend for Route53 {
    fn kind(&self) -> &'static str {
        "route53"
    }

    fn current<'a>(
        &'a self,
        _zone: &'a str,
        like: &'a [RecordSet],
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, DnsError>> {
        Box::pin(async move {
            Ok(self
                .read_sets(like)
                .await?
                .into_iter()
                .map(|(s, _)| s)
                .collect())
        })
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
    fn the_documented_example_parses() {
        let doc = include_str!("../../../docs/dns-backends.md");
        let example = super::super::doc_example(doc, "route53");
        let c: super::super::BackendConfig = toml::from_str(&example).unwrap();
        match c {
            super::super::BackendConfig::Route53(c) => {
                assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
                assert_eq!(c.region, DEFAULT_REGION);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_from_a_profile_or_the_environment() {
        let text = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\n[quorate]\naws_access_key_id=AKIAQ\naws_secret_access_key = s3cret\naws_session_token = tok\n";
        let c = profile_credentials(text, "quorate", Path::new("/c")).unwrap();
        assert_eq!(
            (
                c.access_key_id.as_str(),
                c.secret_access_key.as_str(),
                c.session_token.as_deref()
            ),
            ("AKIAQ", "s3cret", Some("tok"))
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = profile_credentials(text, "other", Path::new("/c")).unwrap_err();
        assert!(e.message.contains("[other]"), "{e}");

        let config: Config =
            toml::from_str("zone = \"example.test.\"\nhosted_zone_id = \"Z1\"\n").unwrap();
        let env = |n: &str| match n {
            "AWS_ACCESS_KEY_ID" => Some("AKIAENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("sec".to_string()),
            _ => None,
        };
        let c = config.read_credentials_with(env).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token),
            ("AKIAENV", None)
        );
        let e = config.read_credentials_with(|_| None).unwrap_err();
        assert_eq!(e.key, "credentials_file");
    }

    #[test]
    fn the_secret_access_key_from_a_file_a_variable_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r53.secret");
        shared::keys::write_private_file(&file, b"from-file\n").unwrap();
        std::fs::write(dir.path().join("route53-secret"), "from-credential\n").unwrap();
        let creds_dir = dir.path().display().to_string();
        let env = |n: &str| match n {
            "QUORATE_R53_SECRET" => Some("from-env".to_string()),
            "CREDENTIALS_DIRECTORY" => Some(creds_dir.clone()),
            // Ignored when access_key_id is given.
            "AWS_ACCESS_KEY_ID" => Some("AKIAENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("aws-env".to_string()),
            _ => None,
        };
        let config = |extra: &str| -> Config {
            toml::from_str(&format!(
                "zone = \"example.test.\"\nhosted_zone_id = \"Z1\"\n{extra}"
            ))
            .unwrap()
        };
        let cases = [
            (
                format!("secret_access_key_file = {:?}", file.display().to_string()),
                "from-file",
                format!("secret_access_key_file ({})", file.display()),
            ),
            (
                "secret_access_key_env = \"QUORATE_R53_SECRET\"".to_string(),
                "from-env",
                "secret_access_key_env ($QUORATE_R53_SECRET)".to_string(),
            ),
            (
                "secret_access_key_credential = \"route53-secret\"".to_string(),
                "from-credential",
                "secret_access_key_credential (route53-secret)".to_string(),
            ),
        ];
        for (source, secret, from) in cases {
            let c = config(&format!("access_key_id = \"AKIAQUORATE\"\n{source}\n"))
                .read_credentials_with(env)
                .unwrap();
            assert_eq!(
                (
                    c.access_key_id.as_str(),
                    c.secret_access_key.as_str(),
                    c.from.as_str()
                ),
                ("AKIAQUORATE", secret, from.as_str())
            );
            assert!(c.session_token.is_none());
            assert!(!format!("{c:?}").contains(secret));
        }
    }

    #[test]
    fn access_key_settings_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let creds_dir = dir.path().display().to_string();
        let env = |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| creds_dir.clone());
        let err = |extra: &str| -> SettingError {
            let c: Config = toml::from_str(&format!(
                "zone = \"example.test.\"\nhosted_zone_id = \"Z1\"\n{extra}"
            ))
            .unwrap();
            c.read_credentials_with(env).unwrap_err()
        };
        // (settings, key named, words the message must hold)
        let cases: [(&str, &str, &[&str]); 9] = [
            (
                "secret_access_key_env = \"X\"",
                "access_key_id",
                &["missing", "not a secret"],
            ),
            (
                "access_key_id = \"AKIAQ\"",
                "secret_access_key_file",
                &[
                    "missing",
                    "secret_access_key_env",
                    "secret_access_key_credential",
                ],
            ),
            (
                "access_key_id = \"AKIAQ\"\nsecret_access_key_env = \"X\"\nsecret_access_key_credential = \"y\"",
                "secret_access_key_file",
                &["give only one of"],
            ),
            (
                "access_key_id = \"AKIAQ\"\nsecret_access_key_env = \"X\"\ncredentials_file = \"/etc/aws\"",
                "credentials_file",
                &["not both"],
            ),
            (
                "access_key_id = \"AKIAQ\"\nsecret_access_key_env = \"X\"\nprofile = \"q\"",
                "profile",
                &["not both"],
            ),
            (
                "access_key_id = \"wJalr/K7MDENG+secret\"\nsecret_access_key_env = \"X\"",
                "access_key_id",
                &["letters and digits", "secret_access_key_file"],
            ),
            (
                "access_key_id = \"AKIAQ\"\nsecret_access_key_env = \"QUORATE_SURELY_UNSET\"",
                "secret_access_key_env",
                &["QUORATE_SURELY_UNSET", "not set"],
            ),
            (
                "access_key_id = \"AKIAQ\"\nsecret_access_key_credential = \"empty\"",
                "secret_access_key_credential",
                &["is empty", "expected the secret access key"],
            ),
            (
                "access_key_id = \"AKIAQ\"\nsecret_access_key_credential = \"../x\"",
                "secret_access_key_credential",
                &["no '/'"],
            ),
        ];
        for (settings, key, words) in cases {
            let e = err(settings);
            assert_eq!(e.key, key, "{settings}: {e}");
            for w in words {
                assert!(e.message.contains(w), "{settings}: {e}");
            }
        }
        // A credential without $CREDENTIALS_DIRECTORY (not under systemd).
        let c: Config = toml::from_str(
            "zone = \"example.test.\"\nhosted_zone_id = \"Z1\"\naccess_key_id = \"AKIAQ\"\nsecret_access_key_credential = \"r53\"\n",
        )
        .unwrap();
        let e = c.read_credentials_with(|_| None).unwrap_err();
        assert_eq!(e.key, "secret_access_key_credential");
        assert!(e.message.contains("LoadCredential=r53:"), "{e}");
    }

    #[test]
    fn the_batch_deletes_exactly_what_was_read_and_creates_the_new_set() {
        let old = RrsetXml {
            name: "www.example.test.".into(),
            rtype: "A".into(),
            set_identifier: None,
            ttl: Some(300),
            records: Some(RecordsXml {
                record: vec![RecordXml {
                    value: "192.0.2.10".into(),
                }],
            }),
        };
        let from = RecordSet::new(
            "www.example.test.",
            RecordType::A,
            300,
            vec!["192.0.2.10".parse().unwrap()],
        );
        let to = RecordSet::new(
            "www.example.test.",
            RecordType::A,
            60,
            vec!["198.51.100.10".parse().unwrap()],
        );
        let aaaa = RecordSet::new("www.example.test.", RecordType::AAAA, 60, vec![]);
        let change = Change {
            zone: "example.test.".into(),
            from: vec![from.clone(), aaaa.clone()],
            to: vec![to, aaaa.clone()],
        };
        let xml = Route53::batch(&change, &[(from, Some(old)), (aaaa, None)]);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch><Comment>quorate failover</Comment><Changes>\
<Change><Action>DELETE</Action><ResourceRecordSet><Name>www.example.test.</Name><Type>A</Type><TTL>300</TTL><ResourceRecords><ResourceRecord><Value>192.0.2.10</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>\
<Change><Action>CREATE</Action><ResourceRecordSet><Name>www.example.test.</Name><Type>A</Type><TTL>60</TTL><ResourceRecords><ResourceRecord><Value>198.51.100.10</Value></ResourceRecord></ResourceRecords></ResourceRecordSet></Change>\
</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        );
    }

    #[test]
    fn errors_and_names_are_read() {
        let f = Failure::parse(
            400,
            "<?xml version=\"1.0\"?>\n<InvalidChangeBatch xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Messages><Message>Tried to delete resource record set [name='www.example.test.', type='A'] but the values provided do not match the current values</Message></Messages><RequestId>r</RequestId></InvalidChangeBatch>",
        );
        assert_eq!(f.code, "InvalidChangeBatch");
        assert!(f.messages[0].contains("do not match"), "{f:?}");
        let f = Failure::parse(
            400,
            "<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>",
        );
        assert_eq!(
            (f.code.as_str(), f.messages[0].as_str()),
            ("Throttling", "Rate exceeded")
        );
        assert!(f.code == "Throttling" && !f.is_stale());
        assert_eq!(unescape("\\052.example.test."), "*.example.test.");
        assert_eq!(unescape("a\\b"), "a\\b");
    }
}
