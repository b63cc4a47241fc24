//! Plumbing shared by the hosted providers' backends (Hetzner, DigitalOcean, Gandi, deSEC), on
//! top of [`super::http`]: the token keys (`api_token_file` / `api_token_env` /
//! `api_token_credential`), the base URL, one request with its status mapped to a
//! [`DnsError`] that names the provider, the zone and the record, and names relative to the
//! zone.
//!
//! Status mapping, the same for every provider: 401/403 → [`DnsError::Auth`] naming the token
//! setting; 429 → [`DnsError::Throttled`] with `Retry-After` (or the `RateLimit-Reset` time
//! Hetzner and DigitalOcean send); 5xx → transient; anything else is given back to the backend,
//! which knows what a 404 or a 400 means for that provider.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::http::{self, Trust};
use super::secret::SecretSource;
use super::{DnsError, SettingError, normalize_name};

/// Bytes of an error answer quoted in messages.
pub(crate) const BODY_KEEP: usize = 1024;

/// The token setting of a provider's config: exactly one of the three keys.
pub(crate) fn token_source(
    file: Option<&PathBuf>,
    env: Option<&String>,
    credential: Option<&String>,
) -> Result<SecretSource, SettingError> {
    SecretSource::one_of(super::secret::API_TOKEN, file, env, credential)
}

/// `base_url` checked: https, or http to a loopback address (a local stand-in); no trailing
/// slash. The token travels in every request, so never in clear over a network.
pub(crate) fn base_url(given: &str, example: &str) -> Result<String, SettingError> {
    let url = reqwest::Url::parse(given).map_err(|e| {
        SettingError::new(
            "base_url",
            format!("expected a URL like {example:?}, got {given:?} ({e})"),
        )
    })?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(SettingError::new(
                "base_url",
                format!(
                    "expected https:// (the API token travels in every request; http only to a loopback address), got {given:?}"
                ),
            ));
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(SettingError::new(
            "base_url",
            format!("expected a URL without ?query or #fragment, got {given:?}"),
        ));
    }
    Ok(given.trim_end_matches('/').to_string())
}

/// `zone` checked and normalised (lower case, one trailing dot); not the root.
pub(crate) fn zone_name(given: &str) -> Result<String, SettingError> {
    let zone = normalize_name(given);
    if zone == "." || zone.contains(['/', '?', '#', '%', ' ']) || zone.contains("..") {
        return Err(SettingError::new(
            "zone",
            format!("expected a zone name like \"example.com\", got {given:?}"),
        ));
    }
    Ok(zone)
}

/// `name` relative to `zone` (both fully qualified or not): `""` for the apex, `www` for
/// `www.example.com.`. Callers have checked the name is inside the zone.
pub(crate) fn relative(name: &str, zone: &str) -> String {
    let name = normalize_name(name);
    let zone = normalize_name(zone);
    if name == zone {
        return String::new();
    }
    name.strip_suffix(&format!(".{zone}"))
        .unwrap_or(name.trim_end_matches('.'))
        .to_string()
}

/// The value of a header `Retry-After` or, failing that, `RateLimit-Reset`, in words.
fn retry_hint(headers: &reqwest::header::HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| http::quote(v, 64))
    };
    if let Some(v) = get("retry-after") {
        if v.parse::<u64>().is_ok() {
            format!("Retry-After: {v} s")
        } else {
            format!("Retry-After: {v}")
        }
    } else if let Some(v) = get("ratelimit-reset") {
        format!("no Retry-After; RateLimit-Reset: {v}")
    } else {
        "no Retry-After given".to_string()
    }
}

/// A non-failing answer of a provider's API: its status and (bounded) body.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: String,
}

/// One provider's API: base URL, zone, token, client.
#[derive(Clone)]
pub(crate) struct Api {
    /// `hetzner`, `digitalocean`, `gandi`, `desec`: named first in every message.
    pub provider: &'static str,
    pub base: String,
    /// Normalised, with the trailing dot.
    pub zone: String,
    /// The whole `Authorization` header value (`Bearer …`, `Token …`).
    authorization: String,
    /// Where the token came from, for messages: `api_token_file (/etc/quorate/token)`.
    token_from: String,
    client: reqwest::Client,
    /// The provider's reason in an error body (its JSON shape differs per provider).
    detail: fn(&str) -> String,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("provider", &self.provider)
            .field("base", &self.base)
            .field("zone", &self.zone)
            .field("token_from", &self.token_from)
            .finish_non_exhaustive()
    }
}

/// What differs between providers in how Quorate talks to them.
#[derive(Clone, Copy)]
pub(crate) struct Spec {
    /// `hetzner`, `digitalocean`, `gandi`, `desec`.
    pub provider: &'static str,
    /// The public API's base URL, the default of `base_url`.
    pub default_url: &'static str,
    /// The `Authorization` scheme: `Bearer`, `Token`.
    pub scheme: &'static str,
    /// The provider's reason in an error body.
    pub detail: fn(&str) -> String,
}

impl Api {
    /// Checks `base_url` and `zone` and sets up the client. Errors name the key.
    pub fn new(
        spec: Spec,
        base_url: &str,
        zone: &str,
        timeout: Duration,
        token: &str,
        source: &SecretSource,
    ) -> Result<Api, SettingError> {
        if token.contains(['\r', '\n']) {
            return Err(SettingError::new(
                source.key(),
                format!(
                    "{} holds a line break; expected the API token alone",
                    source.describe()
                ),
            ));
        }
        Ok(Api {
            provider: spec.provider,
            base: self::base_url(base_url, spec.default_url)?,
            zone: zone_name(zone)?,
            authorization: format!("{} {token}", spec.scheme),
            token_from: source.describe(),
            client: http::client(timeout, &Trust::System)?,
            detail: spec.detail,
        })
    }

    /// The zone without its trailing dot, as providers spell it in URLs.
    pub fn domain(&self) -> &str {
        self.zone.trim_end_matches('.')
    }

    /// Sends one request to `base + path` (JSON body if any) about `record` (`www.example.com.
    /// A`, or `(zone)`); gives back any answer that is not 401/403/429/5xx.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        record: &str,
    ) -> Result<Reply, DnsError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .request(method.clone(), &url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let what = format!(
            "{} API ({method} {url}; zone {}, {record})",
            self.provider, self.zone
        );
        let resp = req.send().await.map_err(|e| http::send_error(&what, e))?;
        let status = resp.status();
        let hint = retry_hint(resp.headers());
        let retry_after = http::retry_after(resp.headers());
        let body = if status.is_success() {
            http::read_answer(resp, &what).await?
        } else {
            http::error_body(resp).await
        };
        let detail = if status.is_success() {
            String::new()
        } else {
            (self.detail)(&body)
        };
        let on = format!("zone {}, {record}", self.zone);
        match status.as_u16() {
            401 | 403 => Err(DnsError::Auth(format!(
                "{} refused the API token from {} (HTTP {status}; {on}): {detail}; give a token that may edit this zone's DNS",
                self.provider, self.token_from
            ))),
            // The DNS worker waits at least `Retry-After` before trying again.
            429 => Err(DnsError::Throttled {
                message: format!(
                    "{} is throttling requests (HTTP 429; {on}; {hint}): {detail}",
                    self.provider
                ),
                retry_after,
            }),
            s if s >= 500 => Err(DnsError::Transient(format!(
                "{} failed (HTTP {status}; {on}): {detail}",
                self.provider
            ))),
            _ => Ok(Reply { status, body }),
        }
    }

    /// A refusal the backend did not expect: `rejected`, naming what was being done.
    pub fn rejected(&self, reply: &Reply, record: &str, doing: &str) -> DnsError {
        DnsError::Rejected(format!(
            "{} refused to {doing} (HTTP {}; zone {}, {record}): {}",
            self.provider,
            reply.status,
            self.zone,
            (self.detail)(&reply.body)
        ))
    }

    /// The zone is not at this provider (or not in this account).
    pub fn unknown_zone(&self, reply: &Reply) -> DnsError {
        DnsError::Rejected(format!(
            "{} has no zone {} in this account (HTTP {}): {}; create it there, or fix dns.zone",
            self.provider,
            self.zone,
            reply.status,
            (self.detail)(&reply.body)
        ))
    }

    /// A successful answer's JSON.
    pub fn parse<T: DeserializeOwned>(&self, reply: &Reply, record: &str) -> Result<T, DnsError> {
        serde_json::from_str(&reply.body).map_err(|e| {
            DnsError::Transient(format!(
                "{} sent an unreadable answer (zone {}, {record}): {e}: {}",
                self.provider,
                self.zone,
                http::quote(&reply.body, BODY_KEEP)
            ))
        })
    }

    /// [`super::Change::validate`] and [`Api::same_zone`], refusals naming the provider and
    /// the zone.
    pub fn validate(&self, change: &super::Change) -> Result<(), DnsError> {
        self.same_zone(&change.zone)?;
        change.validate().map_err(|e| match e {
            DnsError::Rejected(t) => {
                DnsError::Rejected(format!("{}: zone {}: {t}", self.provider, self.zone))
            }
            other => other,
        })
    }

    /// Refuses a change or check for another zone than the configured one.
    pub fn same_zone(&self, zone: &str) -> Result<(), DnsError> {
        if normalize_name(zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "{}: asked about zone {zone} but this backend updates {} (dns.zone)",
                self.provider, self.zone
            )));
        }
        Ok(())
    }
}

/// `path` with characters that would change a URL's meaning percent-encoded (names here are
/// host names: letters, digits, `-`, `_`, `.`, `*`, `@`).
pub(crate) fn seg(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON error body's reason for providers that answer `{"message": …}` or `{"detail": …}`
/// (or anything else, quoted).
pub(crate) fn json_reason(body: &str) -> String {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let pick = |v: &serde_json::Value| -> Option<String> {
        for k in ["message", "detail"] {
            if let Some(s) = v.get(k).and_then(|m| m.as_str()) {
                return Some(s.to_string());
            }
        }
        None
    };
    v.as_ref()
        .and_then(|v| pick(v).or_else(|| v.get("error").and_then(pick)))
        .map(|s| http::quote(&s, BODY_KEEP))
        .unwrap_or_else(|| http::quote(body, BODY_KEEP))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_relative_to_the_zone() {
        assert_eq!(relative("www.example.com.", "example.com."), "www");
        assert_eq!(relative("Example.com", "example.com."), "");
        assert_eq!(relative("a.b.example.com.", "example.com"), "a.b");
    }

    #[test]
    fn base_urls() {
        assert!(base_url("https://api.example", "x").is_ok());
        assert!(base_url("http://127.0.0.1:8080/v1/", "x").is_ok());
        assert_eq!(
            base_url("http://127.0.0.1:8080/v1/", "x").unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        let e = base_url("http://api.example", "x").unwrap_err();
        assert_eq!(e.key, "base_url");
    }

    #[test]
    fn one_token_key() {
        let f = PathBuf::from("/t");
        let v = "V".to_string();
        assert!(token_source(Some(&f), None, None).is_ok());
        assert!(token_source(Some(&f), Some(&v), None).is_err());
        assert!(token_source(None, None, None).is_err());
    }

    #[test]
    fn reasons() {
        assert_eq!(json_reason(r#"{"error":{"message":"bad"}}"#), "bad");
        assert_eq!(
            json_reason(r#"{"detail":"Invalid token."}"#),
            "Invalid token."
        );
        assert_eq!(json_reason("plain"), "plain");
        assert_eq!(seg("www/x"), "www%2Fx");
    }
}
