//! The Virtualmin backend: its remote API, `https://<host>:10000/virtual-server/remote.cgi`,
//! which runs Virtualmin's command-line programs (`modify-dns`, `get-dns`) with each CGI
//! parameter turned into `--name value` and answers in plain text ending in `Exit status: N`.
//!
//! Where the parameter format comes from: Virtualmin's "Remote API" page
//! (virtualmin.com/documentation/developer/http) and the source of `remote.cgi`,
//! `modify-dns.pl` and `get-dns.pl` in github.com/virtualmin/virtualmin-gpl:
//! - `--remove-record "name type"` deletes every record of that name and type;
//! - `--add-record-with-ttl "name type TTL value"` adds one record with its own TTL;
//! - one `modify-dns` run applies all removes, then all adds, then writes the zone file and
//!   reloads BIND once, whatever order the parameters came in.
//!
//! So one change is ONE request: a `remove-record` per RRset and an `add-record-with-ttl` per
//! new address, which replaces each RRset in a single zone write (no moment without an
//! answer) and sets the TTL on the records themselves, never the domain's default (`--ttl`).
//! `--update-record` is not used: it takes two values after one flag, which `remote.cgi`
//! cannot pass (a repeated parameter becomes `--update-record A --update-record B`), it
//! changes only the first matching record (an RRset can have several), and it keeps the old
//! TTL. The conflict check reads the records with `get-dns` first; like PowerDNS and unlike
//! RFC 2136 that read is not atomic with the write.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http::{self, Trust};
use super::{
    Change, Checked, DnsBackend, DnsError, RecordSet, SettingError, check_expected, normalize_name,
};

/// Bytes of the server's output quoted in messages.
const OUTPUT_KEEP: usize = 2048;

/// `[dns] type = "virtualmin"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Virtualmin (Webmin) base URL, e.g. `"https://panel.example.com:10000"`. Must be https.
    pub url: String,
    /// The virtual server's domain, which is the zone, e.g. `"example.com"`.
    pub zone: String,
    /// A Virtualmin user allowed to use the remote API.
    pub user: String,
    /// File (mode 0600) holding that user's password.
    pub password_file: PathBuf,
    /// Trust only the CA certificate(s) in this PEM file (e.g. Webmin's self-signed cert).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Or: accept exactly the server certificate with this SHA-256 fingerprint (hex, colons
    /// allowed), like an ssh host key; name and expiry are then not checked.
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// Time allowed per request, e.g. `"30s"` (default; Virtualmin reloads BIND in the request).
    #[serde(
        default = "default_timeout",
        deserialize_with = "shared::config::positive_duration"
    )]
    pub timeout: Duration,
    /// Skip the conflict check and overwrite whatever is there (default false).
    #[serde(default)]
    pub force: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("zone", &self.zone)
            .field("user", &self.user)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("cert_sha256", &self.cert_sha256)
            .field("timeout", &self.timeout)
            .field("force", &self.force)
            .finish()
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Clone)]
pub struct Virtualmin {
    endpoint: String,
    zone: String,
    domain: String,
    user: String,
    password: String,
    /// `password_file` as configured, named in messages (never its content).
    password_file: PathBuf,
    client: reqwest::Client,
    force: bool,
}

impl fmt::Debug for Virtualmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Virtualmin")
            .field("endpoint", &self.endpoint)
            .field("zone", &self.zone)
            .field("user", &self.user)
            .field("force", &self.force)
            .finish_non_exhaustive()
    }
}

/// Reads `password_file` (as given: the caller resolves relative paths) and builds the backend.
pub fn build(config: &Config) -> Result<Virtualmin, SettingError> {
    let password = shared::keys::read_secret_file(&config.password_file)
        .map_err(|e| SettingError::new("password_file", e.to_string()))?;
    build_with_secret(config, password)
}

/// Builds the backend from the password already read from `password_file` (the config's
/// validation reads it once) and checks the config.
pub fn build_with_secret(config: &Config, password: String) -> Result<Virtualmin, SettingError> {
    shared::install_crypto_provider();
    let url = reqwest::Url::parse(&config.url).map_err(|e| {
        SettingError::new(
            "url",
            format!(
                "expected a URL like \"https://panel.example.com:10000\", got {:?} ({e})",
                config.url
            ),
        )
    })?;
    if url.scheme() != "https" {
        return Err(SettingError::new(
            "url",
            format!(
                "expected https:// (the password travels in every request), got {:?}",
                config.url
            ),
        ));
    }
    let zone = normalize_name(&config.zone);
    if zone == "." {
        return Err(SettingError::new(
            "zone",
            format!(
                "expected a domain like \"example.com\", got {:?}",
                config.zone
            ),
        ));
    }
    if config.user.is_empty() {
        return Err(SettingError::new(
            "user",
            "expected the Virtualmin user name",
        ));
    }
    let trust = Trust::from_keys(config.ca_file.as_deref(), config.cert_sha256.as_deref())?;
    let client = http::client(config.timeout, &trust)?;
    Ok(Virtualmin {
        endpoint: format!(
            "{}/virtual-server/remote.cgi",
            config.url.trim_end_matches('/')
        ),
        domain: zone.trim_end_matches('.').to_string(),
        zone,
        user: config.user.clone(),
        password,
        password_file: config.password_file.clone(),
        client,
        force: config.force,
    })
}

fn bounded(text: &str) -> String {
    http::quote(text, OUTPUT_KEEP)
}

/// A remote.cgi answer without the `Exit status: N` trailer; `body` is the answer, bounded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("virtualmin answer has no \"Exit status\" line: {body}")]
pub struct NoExitStatus {
    pub body: String,
}

/// Splits a remote.cgi answer into the program's output and its exit status.
pub fn parse_exit_status(body: &str) -> Result<(String, i32), NoExitStatus> {
    let missing = || NoExitStatus {
        body: bounded(body),
    };
    let trimmed = body.trim_end();
    let Some(pos) = trimmed.rfind("Exit status:") else {
        return Err(missing());
    };
    let line_start = trimmed[..pos].rfind('\n').map_or(0, |i| i + 1);
    if !trimmed[line_start..pos].trim().is_empty() {
        return Err(missing());
    }
    let status = trimmed[pos + "Exit status:".len()..]
        .trim()
        .parse::<i32>()
        .map_err(|_| missing())?;
    Ok((trimmed[..line_start].trim().to_string(), status))
}

/// Records in `get-dns --multiline` output: `(name, type, ttl, values)`.
pub fn parse_multiline(output: &str) -> Vec<(String, String, Option<u32>, Vec<String>)> {
    let mut out: Vec<(String, String, Option<u32>, Vec<String>)> = Vec::new();
    for line in output.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            out.push((line.trim().to_string(), String::new(), None, Vec::new()));
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Type" => cur.1 = v.to_string(),
            "TTL" => cur.2 = v.parse().ok(),
            "Value" => cur.3.push(v.to_string()),
            _ => {}
        }
    }
    out
}

impl Virtualmin {
    async fn call(&self, params: &[(&str, String)]) -> Result<String, DnsError> {
        let what = format!("virtualmin at {}", self.endpoint);
        let resp = self
            .client
            .get(&self.endpoint)
            .basic_auth(&self.user, Some(&self.password))
            .query(params)
            .send()
            .await
            .map_err(|e| http::send_error(&what, e))?;
        let status = resp.status();
        if status.as_u16() != 200 {
            let body = http::error_body(resp).await;
            return Err(http::status_error(
                "virtualmin",
                status,
                &format!(
                    "virtualmin refused user '{}' (HTTP {status}; the password in password_file ({}) is wrong, or the user may not use the remote API)",
                    self.user,
                    self.password_file.display()
                ),
                &bounded(&body),
            ));
        }
        let body = http::read_answer(resp, &what).await?;
        if let Some(rest) = body.trim_start().strip_prefix("ERROR:") {
            return Err(DnsError::Rejected(format!("virtualmin: {}", bounded(rest))));
        }
        let (output, code) =
            parse_exit_status(&body).map_err(|e| DnsError::Rejected(e.to_string()))?;
        if code != 0 {
            return Err(DnsError::Rejected(format!(
                "virtualmin {} exited with status {code}: {}",
                params.first().map(|p| p.1.as_str()).unwrap_or("program"),
                bounded(&output)
            )));
        }
        Ok(output)
    }

    async fn read_current(&self, like: &[RecordSet]) -> Result<Vec<RecordSet>, DnsError> {
        let output = self.get_dns().await?;
        Ok(Self::sets_of(&output, like))
    }

    /// `get-dns --domain <zone> --multiline`: Virtualmin's read-only program that lists a
    /// virtual server's records (there is no `list-records`).
    async fn get_dns(&self) -> Result<String, DnsError> {
        self.call(&[
            ("program", "get-dns".into()),
            ("domain", self.domain.clone()),
            ("multiline", String::new()),
        ])
        .await
    }

    /// The readiness check: `get-dns` proves the user, the password and that the virtual
    /// server exists there. Virtualmin has no dry-run write, so the permission to change DNS
    /// is not tried.
    async fn check_zone(&self, zone: &str, expected: &[RecordSet]) -> Result<String, DnsError> {
        if normalize_name(zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "check is for zone {zone} but this backend updates {} (dns.zone)",
                self.zone
            )));
        }
        let output = match self.get_dns().await {
            // get-dns exits 1 with "Virtual server X does not exist".
            Err(DnsError::Rejected(text)) if text.contains("does not exist") => {
                return Err(DnsError::Rejected(format!(
                    "the zone {} is not a virtual server on that virtualmin ({}): {text}; create it there, or fix dns.zone",
                    self.domain, self.endpoint
                )));
            }
            other => other?,
        };
        check_expected(expected, &Self::sets_of(&output, expected))?;
        Ok(format!(
            "virtualmin: user '{}' accepted at {}, virtual server {} there (get-dns); {} record set(s) are as expected",
            self.user,
            self.endpoint,
            self.domain,
            expected.len()
        ))
    }

    fn sets_of(output: &str, like: &[RecordSet]) -> Vec<RecordSet> {
        let records = parse_multiline(output);
        like.iter()
            .map(|l| {
                let want = normalize_name(&l.name);
                let mut ttl: Option<u32> = None;
                let mut addrs: Vec<IpAddr> = Vec::new();
                for (name, rtype, rttl, values) in &records {
                    if normalize_name(name) != want
                        || !rtype.eq_ignore_ascii_case(&l.rtype.to_string())
                    {
                        continue;
                    }
                    for v in values {
                        if let Ok(a) = v.parse::<IpAddr>() {
                            addrs.push(a);
                        }
                    }
                    if let Some(t) = rttl {
                        ttl = Some(ttl.map_or(*t, |x| x.min(*t)));
                    }
                }
                let ttl = if addrs.is_empty() {
                    0
                } else {
                    ttl.unwrap_or(0)
                };
                RecordSet::new(want, l.rtype, ttl, addrs)
            })
            .collect()
    }

    /// The query parameters of one `modify-dns` run replacing every RRset of the change.
    pub fn modify_params(&self, change: &Change) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("program", "modify-dns".to_string()),
            ("domain", self.domain.clone()),
        ];
        for set in &change.to {
            let name = normalize_name(&set.name);
            params.push(("remove-record", format!("{name} {}", set.rtype)));
            for a in &set.addrs {
                params.push((
                    "add-record-with-ttl",
                    format!("{name} {} {} {a}", set.rtype, set.ttl),
                ));
            }
        }
        params
    }

    async fn apply_change(&self, change: &Change) -> Result<(), DnsError> {
        change.validate()?;
        if normalize_name(&change.zone) != self.zone {
            return Err(DnsError::Rejected(format!(
                "change is for zone {} but this backend updates {}",
                change.zone, self.zone
            )));
        }
        // modify-dns reports some refusals (e.g. a clashing record) in its output but still
        // exits 0: the read-back makes sure.
        let steps = Checked {
            check_first: !self.force,
            read_back: true,
        };
        let write = async {
            self.call(&self.modify_params(change)).await?;
            Ok(())
        };
        steps.apply(self, change, write).await
    }
}

impl DnsBackend for Virtualmin {
    fn kind(&self) -> &'static str {
        "virtualmin"
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exit_status_trailer() {
        assert_eq!(
            parse_exit_status("Updating ..\n.. done\n\nExit status: 0\n").unwrap(),
            ("Updating ..\n.. done".to_string(), 0)
        );
        assert_eq!(
            parse_exit_status("Domain x does not exist\n\nExit status: 1")
                .unwrap()
                .1,
            1
        );
        assert!(parse_exit_status("no trailer").is_err());
        assert!(parse_exit_status("Exit status: x").is_err());
    }

    #[test]
    fn multiline_records() {
        let out = "www.example.test.\n    Type: A\n    Class: IN\n    TTL: 60\n    Value: 192.0.2.1\nexample.test.\n    Type: NS\n    Value: ns1.example.test.\n";
        let recs = parse_multiline(out);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0],
            (
                "www.example.test.".into(),
                "A".into(),
                Some(60),
                vec!["192.0.2.1".into()]
            )
        );
        assert_eq!(recs[1].2, None);
    }
}
