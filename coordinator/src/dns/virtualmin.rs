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
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::{
    Change, DnsBackend, DnsError, Precheck, RecordSet, describe_sets, normalize_name, precheck,
    same_addresses,
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

/// Parses a SHA-256 fingerprint written as 64 hex digits, with or without colons.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hexed: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hexed).map_err(|e| format!("not hex ({e})"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes; expected 32", b.len()))
}

/// Accepts exactly one certificate, by its SHA-256, and checks the handshake signatures.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest as _;
        let got = sha2::Sha256::digest(end_entity.as_ref());
        if got.as_slice() == self.pin.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate sha256 {} does not match cert_sha256",
                hex::encode(got)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Reads `password_file` (as given: the caller resolves relative paths) and builds the backend.
pub fn build(config: &Config) -> Result<Virtualmin, String> {
    let password = shared::keys::read_secret_file(&config.password_file)
        .map_err(|e| format!("password_file: {e}"))?;
    build_with_secret(config, password)
}

/// Builds the backend from the password already read from `password_file` (the config's
/// validation reads it once) and checks the config.
pub fn build_with_secret(config: &Config, password: String) -> Result<Virtualmin, String> {
    shared::install_crypto_provider();
    let url = reqwest::Url::parse(&config.url).map_err(|e| {
        format!(
            "url: expected a URL like \"https://panel.example.com:10000\", got {:?} ({e})",
            config.url
        )
    })?;
    if url.scheme() != "https" {
        return Err(format!(
            "url: expected https:// (the password travels in every request), got {:?}",
            config.url
        ));
    }
    let zone = normalize_name(&config.zone);
    if zone == "." {
        return Err(format!(
            "zone: expected a domain like \"example.com\", got {:?}",
            config.zone
        ));
    }
    if config.user.is_empty() {
        return Err("user: expected the Virtualmin user name".into());
    }
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none());
    match (&config.ca_file, &config.cert_sha256) {
        (Some(_), Some(_)) => {
            return Err("cert_sha256: give either ca_file or cert_sha256, not both".into());
        }
        (Some(ca), None) => {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file: {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!("ca_file: {}: expected PEM certificates ({e})", ca.display())
            })?;
            if certs.is_empty() {
                return Err(format!(
                    "ca_file: {}: no certificate in the file",
                    ca.display()
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        (None, Some(fp)) => {
            let pin = parse_fingerprint(fp).map_err(|e| {
                format!("cert_sha256: expected 64 hex digits (colons allowed), got {fp:?}: {e}")
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = PinVerifier {
                pin,
                algs: provider.signature_verification_algorithms,
            };
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cert_sha256: cannot set up TLS ({e})"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            builder = builder.tls_backend_preconfigured(tls);
        }
        (None, None) => {}
    }
    let client = builder
        .build()
        .map_err(|e| format!("url: cannot set up an HTTPS client ({e})"))?;
    Ok(Virtualmin {
        endpoint: format!(
            "{}/virtual-server/remote.cgi",
            config.url.trim_end_matches('/')
        ),
        domain: zone.trim_end_matches('.').to_string(),
        zone,
        user: config.user.clone(),
        password,
        client,
        force: config.force,
    })
}

fn bounded(text: &str) -> String {
    let t = text.trim();
    if t.len() <= OUTPUT_KEEP {
        return t.to_string();
    }
    let mut end = OUTPUT_KEEP;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &t[..end])
}

/// Splits a remote.cgi answer into the program's output and its exit status.
pub fn parse_exit_status(body: &str) -> Result<(String, i32), String> {
    let trimmed = body.trim_end();
    let Some(pos) = trimmed.rfind("Exit status:") else {
        return Err(bounded(body));
    };
    let line_start = trimmed[..pos].rfind('\n').map_or(0, |i| i + 1);
    if !trimmed[line_start..pos].trim().is_empty() {
        return Err(bounded(body));
    }
    let status = trimmed[pos + "Exit status:".len()..]
        .trim()
        .parse::<i32>()
        .map_err(|_| bounded(body))?;
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
        let resp = self
            .client
            .get(&self.endpoint)
            .basic_auth(&self.user, Some(&self.password))
            .query(params)
            .send()
            .await
            .map_err(|e| super::http_error(&format!("virtualmin at {}", self.endpoint), e))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        match status.as_u16() {
            200 => {}
            401 | 403 => {
                return Err(DnsError::Auth(format!(
                    "virtualmin refused user '{}' (HTTP {status}; wrong password, or the user may not use the remote API)",
                    self.user
                )));
            }
            s if s >= 500 || s == 429 => {
                return Err(DnsError::Transient(format!(
                    "virtualmin failed (HTTP {status}): {}",
                    bounded(&body)
                )));
            }
            _ => {
                return Err(DnsError::Rejected(format!(
                    "virtualmin answered HTTP {status}: {}",
                    bounded(&body)
                )));
            }
        }
        if let Some(rest) = body.trim_start().strip_prefix("ERROR:") {
            return Err(DnsError::Rejected(format!("virtualmin: {}", bounded(rest))));
        }
        let (output, code) = parse_exit_status(&body).map_err(|b| {
            DnsError::Rejected(format!(
                "virtualmin answer has no \"Exit status\" line: {b}"
            ))
        })?;
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
        let output = self
            .call(&[
                ("program", "get-dns".into()),
                ("domain", self.domain.clone()),
                ("multiline", String::new()),
            ])
            .await?;
        let records = parse_multiline(&output);
        Ok(like
            .iter()
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
            .collect())
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
        if !self.force {
            let now = self.read_current(&change.from).await?;
            if precheck(change, &now, false)? == Precheck::AlreadyApplied {
                return Ok(());
            }
        }
        self.call(&self.modify_params(change)).await?;
        // modify-dns reports some refusals (e.g. a clashing record) in its output but still
        // exits 0: read back to be sure.
        let now = self.read_current(&change.to).await?;
        if !same_addresses(&change.to, &now) {
            return Err(DnsError::Rejected(format!(
                "virtualmin accepted the change but holds {}",
                describe_sets(&now)
            )));
        }
        Ok(())
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

    #[test]
    fn fingerprints() {
        assert!(parse_fingerprint(&"ab".repeat(32)).is_ok());
        assert!(parse_fingerprint(&vec!["AB"; 32].join(":")).is_ok());
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint("zz").is_err());
    }
}
