//! The witness's configuration: the raw TOML shape (`deny_unknown_fields`), validated once
//! into a typed [`Config`] (loaded keys, parsed networks, durations) before anything binds.
//! Every error names the file, the key and what was expected.
//!
//! Relative paths in the file are resolved against the directory that holds the file. Errors
//! are the config kit's [`shared::config::Diagnostics`], like the coordinator's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ipnet::IpNet;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use shared::config::{Diagnostics, Invalid, resolve};
use shared::protocol::KeyId;

/// Default accepted clock difference between coordinator and witness.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(30);
/// Default largest request body, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = shared::protocol::MAX_ENVELOPE_BYTES;
/// Default number of vote requests handled at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// Default sustained requests per second per coordinator.
pub const DEFAULT_RATE: u32 = 50;
/// Default time a client has to send its request head and body.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The raw file, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: String,
    /// The witness's ed25519 signing key (PKCS#8 PEM, mode 0600). Or `key_credential`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Instead of `key_file`: the name of a systemd credential holding the key
    /// (`LoadCredential=NAME:/etc/quorate-witness/witness.key` → `$CREDENTIALS_DIRECTORY/NAME`).
    #[serde(default)]
    pub key_credential: Option<String>,
    pub tls_cert_file: PathBuf,
    /// The TLS certificate's private key (PEM, mode 0600). Or `tls_key_credential`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Instead of `tls_key_file`: the name of a systemd credential holding the TLS key.
    #[serde(default)]
    pub tls_key_credential: Option<String>,
    #[serde(default)]
    pub max_skew: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub log_format: Option<String>,
    #[serde(default)]
    pub coordinator: Vec<RawCoordinator>,
    #[serde(default)]
    pub allow: Vec<RawAllow>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoordinator {
    pub name: String,
    pub public_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    pub cidr: String,
    pub ports: Vec<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub rate_per_coordinator: Option<u32>,
    pub burst: Option<u32>,
    pub read_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub max_connections_per_address: Option<u64>,
    pub idle_timeout: Option<String>,
    pub max_requests_per_connection: Option<u64>,
}

/// A coordinator this witness answers.
#[derive(Clone, Debug)]
pub struct TrustedCoordinator {
    pub name: String,
    pub key: VerifyingKey,
    pub id: KeyId,
}

impl TrustedCoordinator {
    pub fn new(name: impl Into<String>, key: VerifyingKey) -> TrustedCoordinator {
        TrustedCoordinator {
            name: name.into(),
            id: KeyId::of(&key),
            key,
        }
    }
}

/// One allowlist entry: a network and the ports a probe may use in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    pub net: IpNet,
    pub ports: Vec<u16>,
}

/// The targets this witness will probe; anything else is refused without a probe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowlist(pub Vec<AllowRule>);

impl Allowlist {
    /// True when some rule covers the address and port. IPv4-mapped IPv6 addresses are
    /// matched as the IPv4 address they reach.
    pub fn permits(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.0
            .iter()
            .any(|r| r.net.contains(&ip) && r.ports.contains(&addr.port()))
    }
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (one host).
pub fn parse_cidr(text: &str) -> Result<IpNet, Invalid> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| Invalid::new("a network like \"10.0.0.0/8\" or an IP address", text))
}

/// Resource bounds of the vote endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_concurrent: usize,
    /// Sustained vote requests per second per coordinator.
    pub rate_per_coordinator: u32,
    /// Requests a coordinator may send at once after a quiet spell.
    pub burst: u32,
    /// Time a client has for the TLS handshake, the request head and the body; the head of
    /// every request on a kept-alive connection, not only the first.
    pub read_timeout: Duration,
    /// Open connections: global and per-address caps, idle timeout, requests per
    /// connection (`shared::listener`). Its timeouts follow `read_timeout`.
    pub connections: shared::listener::Limits,
}

impl Limits {
    /// The listener's bounds, with the handshake and header-read timeouts set to
    /// `read_timeout`.
    pub fn listener(&self) -> shared::listener::Limits {
        shared::listener::Limits {
            handshake_timeout: self.read_timeout,
            header_read_timeout: self.read_timeout,
            ..self.connections.clone()
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            rate_per_coordinator: DEFAULT_RATE,
            burst: DEFAULT_RATE,
            read_timeout: DEFAULT_READ_TIMEOUT,
            connections: shared::listener::Limits::default(),
        }
    }
}

/// How the witness logs (the one type both binaries use).
pub use shared::logging::Format as LogFormat;

/// The TLS certificate and key the witness serves, as PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Hex SHA-256 of the certificate (what coordinators pin).
    pub cert_sha256: String,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_sha256", &self.cert_sha256)
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Checks both PEM texts parse; `origin` names them in errors.
    pub fn from_pem(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        origin: &Path,
    ) -> Result<TlsIdentity, shared::tls::TlsError> {
        let info = shared::tls::parse_cert_pem(&cert_pem, origin)?;
        shared::tls::check_private_key_pem(&key_pem, origin)?;
        Ok(TlsIdentity {
            cert_pem,
            key_pem,
            cert_sha256: info.sha256_hex,
        })
    }
}

/// Everything a witness needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file this came from (None when built in-process).
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub signing_key: SigningKey,
    pub tls: TlsIdentity,
    pub max_skew: Duration,
    pub coordinators: Vec<TrustedCoordinator>,
    pub allow: Allowlist,
    pub limits: Limits,
    /// Extra CA roots for HTTPS probes (beyond the webpki roots).
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub log_format: LogFormat,
}

impl Config {
    /// A config built without files, for in-process witnesses (tests, the demo): default
    /// limits and skew, no extra roots.
    pub fn from_parts(
        signing_key: SigningKey,
        coordinators: Vec<TrustedCoordinator>,
        allow: Allowlist,
        tls_cert_pem: String,
        tls_key_pem: String,
    ) -> Result<Config, shared::tls::TlsError> {
        let tls = TlsIdentity::from_pem(
            tls_cert_pem.into_bytes(),
            tls_key_pem.into_bytes(),
            Path::new("<in-process certificate>"),
        )?;
        Ok(Config {
            source: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            signing_key,
            tls,
            max_skew: DEFAULT_MAX_SKEW,
            coordinators,
            allow,
            limits: Limits::default(),
            extra_roots: Vec::new(),
            log_format: LogFormat::Human,
        })
    }

    /// The block a coordinator pastes into its config to trust this witness.
    pub fn identity_block(&self, name: &str, url: &str) -> String {
        format!(
            "[[witness]]\nname = \"{name}\"\nurl = \"{url}\"\npublic_key = \"{}\"\ncert_sha256 = \"{}\"\n",
            shared::keys::format_public_key(&self.signing_key.verifying_key()),
            self.tls.cert_sha256
        )
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostics::whole_file(path, format!("cannot read: {e}")))?;
    let raw: RawConfig = toml::from_str(&text).map_err(|e| Diagnostics::whole_file(path, e))?;
    validate(path, raw)
}

/// Turns the raw file into a typed config, loading the files it names.
pub fn validate(path: &Path, raw: RawConfig) -> Result<Config, Diagnostics> {
    validate_in(path, raw, &|n| std::env::var(n).ok())
}

/// [`validate`] with the process's environment as an argument (`CREDENTIALS_DIRECTORY`), so
/// the tests give their own instead of changing the real one.
fn validate_in(
    path: &Path,
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Diagnostics> {
    let invalid = |key: &str, message: String| {
        let mut d = Diagnostics::new(path);
        d.push(key, message);
        d
    };
    let base = shared::config::base_dir(path);
    let resolve = |p: &Path| -> PathBuf { resolve(base, p) };

    let listen: SocketAddr = raw.listen.parse().map_err(|_| {
        invalid(
            "listen",
            format!(
                "expected an address and port like \"0.0.0.0:8443\" or \"[::]:8443\", got {:?}",
                raw.listen
            ),
        )
    })?;

    let max_skew = match &raw.max_skew {
        None => DEFAULT_MAX_SKEW,
        Some(s) => s
            .parse::<shared::config::Duration>()
            .map_err(|m| invalid("max_skew", m.to_string()))?
            .get(),
    };
    if max_skew < Duration::from_secs(1) || max_skew > Duration::from_secs(600) {
        return Err(invalid(
            "max_skew",
            format!(
                "expected between 1s and 10m, got {}",
                humantime::format_duration(max_skew)
            ),
        ));
    }

    let log_format = match &raw.log_format {
        None => LogFormat::Human,
        Some(s) => s.parse().map_err(|m: String| invalid("log_format", m))?,
    };

    if raw.coordinator.is_empty() {
        return Err(invalid(
            "coordinator",
            "expected at least one [[coordinator]] entry with name and public_key (the coordinator prints its public key at init)".into(),
        ));
    }
    let mut coordinators: Vec<TrustedCoordinator> = Vec::new();
    for (i, c) in raw.coordinator.iter().enumerate() {
        let key_name = format!("coordinator[{i}]");
        if c.name.trim().is_empty() || c.name.len() > 64 {
            return Err(invalid(
                &format!("{key_name}.name"),
                "expected a name of 1..=64 characters".into(),
            ));
        }
        let key = shared::keys::parse_public_key(&c.public_key)
            .map_err(|m| invalid(&format!("{key_name}.public_key"), m.to_string()))?;
        let tc = TrustedCoordinator::new(c.name.clone(), key);
        if let Some(dup) = coordinators
            .iter()
            .find(|o| o.id == tc.id || o.name == tc.name)
        {
            return Err(invalid(
                &key_name,
                format!("duplicates coordinator {:?} (same name or key)", dup.name),
            ));
        }
        coordinators.push(tc);
    }

    if raw.allow.is_empty() {
        return Err(invalid(
            "allow",
            "expected at least one [[allow]] entry (cidr and ports): a witness probes only targets its allowlist permits".into(),
        ));
    }
    let mut rules = Vec::new();
    for (i, a) in raw.allow.iter().enumerate() {
        let net =
            parse_cidr(&a.cidr).map_err(|m| invalid(&format!("allow[{i}].cidr"), m.to_string()))?;
        if a.ports.is_empty() {
            return Err(invalid(
                &format!("allow[{i}].ports"),
                "expected a non-empty list of ports, e.g. [80, 443]".into(),
            ));
        }
        let mut ports = Vec::new();
        for p in &a.ports {
            let port = u16::try_from(*p).ok().filter(|p| *p != 0).ok_or_else(|| {
                invalid(
                    &format!("allow[{i}].ports"),
                    format!("expected ports 1..=65535, got {p}"),
                )
            })?;
            ports.push(port);
        }
        rules.push(AllowRule { net, ports });
    }

    let mut limit_problems = Diagnostics::new(path);
    let Some(limits) = validate_limits(&raw.limits, &mut limit_problems) else {
        return Err(limit_problems);
    };

    // `<x>_file` or `<x>_credential`: exactly one.
    let secret = |(file_key, file): (&str, &Option<PathBuf>),
                  (cred_key, cred): (&str, &Option<String>),
                  what: &str|
     -> Result<(String, PathBuf), Diagnostics> {
        match (file, cred) {
            (Some(f), None) => Ok((file_key.to_string(), resolve(f))),
            (None, Some(name)) => Ok((
                cred_key.to_string(),
                shared::keys::credential_path(name, env).map_err(|m| invalid(cred_key, m))?,
            )),
            (None, None) => Err(invalid(
                file_key,
                format!(
                    "missing; expected {file_key} ({what}, a mode 0600 file: quorate-witness init writes one) or {cred_key} (a systemd credential's name)"
                ),
            )),
            (Some(_), Some(_)) => Err(invalid(
                file_key,
                format!("give only one of {file_key} and {cred_key}"),
            )),
        }
    };
    let (key_name, key_path) = secret(
        ("key_file", &raw.key_file),
        ("key_credential", &raw.key_credential),
        "the signing key",
    )?;
    let signing_key =
        shared::keys::load_signing_key(&key_path).map_err(|e| invalid(&key_name, e.to_string()))?;

    let cert_path = resolve(&raw.tls_cert_file);
    let cert_pem = std::fs::read(&cert_path)
        .map_err(|e| invalid("tls_cert_file", format!("{}: {e}", cert_path.display())))?;
    let (tls_key_name, key_pem_path) = secret(
        ("tls_key_file", &raw.tls_key_file),
        ("tls_key_credential", &raw.tls_key_credential),
        "the TLS certificate's key",
    )?;
    let key_pem = shared::keys::read_secret_file(&key_pem_path)
        .map_err(|e| invalid(&tls_key_name, e.to_string()))?;
    let info = shared::tls::parse_cert_pem(&cert_pem, &cert_path)
        .map_err(|e| invalid("tls_cert_file", e.to_string()))?;
    shared::tls::check_private_key_pem(key_pem.as_bytes(), &key_pem_path)
        .map_err(|e| invalid(&tls_key_name, e.to_string()))?;
    let tls = TlsIdentity {
        cert_pem,
        key_pem: key_pem.into_bytes(),
        cert_sha256: info.sha256_hex,
    };

    let extra_roots = match &raw.ca_file {
        None => Vec::new(),
        Some(p) => shared::tls::read_cert_bundle(&resolve(p))
            .map_err(|e| invalid("ca_file", e.to_string()))?,
    };

    Ok(Config {
        source: Some(path.to_owned()),
        listen,
        signing_key,
        tls,
        max_skew,
        coordinators,
        allow: Allowlist(rules),
        limits,
        extra_roots,
        log_format,
    })
}

/// The `[limits]` table; problems are recorded under `limits.KEY`.
fn validate_limits(raw: &RawLimits, d: &mut Diagnostics) -> Option<Limits> {
    let before = d.len();
    let def = Limits::default();
    let max_body_bytes = match raw.max_body_bytes {
        None => def.max_body_bytes,
        Some(n) if (1024..=1024 * 1024).contains(&n) => n as usize,
        Some(n) => {
            d.push(
                "limits.max_body_bytes",
                format!("expected 1024..=1048576 bytes, got {n}"),
            );
            def.max_body_bytes
        }
    };
    let max_concurrent = match raw.max_concurrent {
        None => def.max_concurrent,
        Some(n) if (1..=10_000).contains(&n) => n as usize,
        Some(n) => {
            d.push(
                "limits.max_concurrent",
                format!("expected 1..=10000, got {n}"),
            );
            def.max_concurrent
        }
    };
    let rate_per_coordinator = match raw.rate_per_coordinator {
        None => def.rate_per_coordinator,
        Some(n) if (1..=10_000).contains(&n) => n,
        Some(n) => {
            d.push(
                "limits.rate_per_coordinator",
                format!("expected 1..=10000 requests per second, got {n}"),
            );
            def.rate_per_coordinator
        }
    };
    let burst = match raw.burst {
        None => rate_per_coordinator,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(n) => {
            d.push("limits.burst", format!("expected 1..=100000, got {n}"));
            rate_per_coordinator
        }
    };
    let read_timeout = match &raw.read_timeout {
        None => def.read_timeout,
        Some(s) => d.duration("limits.read_timeout", s)?,
    };
    if read_timeout < Duration::from_millis(100) || read_timeout > Duration::from_secs(300) {
        d.push("limits.read_timeout", "expected between 100ms and 5m");
    }
    let connections = validate_connections(raw, d);
    (d.len() == before).then_some(Limits {
        max_body_bytes,
        max_concurrent,
        rate_per_coordinator,
        burst,
        read_timeout,
        connections,
    })
}

/// The connection keys of `[limits]`; problems are recorded under `limits.KEY`.
fn validate_connections(raw: &RawLimits, d: &mut Diagnostics) -> shared::listener::Limits {
    use shared::listener::{Limits as Conn, reserve_for};
    let def = Conn::default();
    let max_connections = match raw.max_connections {
        None => def.max_connections,
        Some(n) if (16..=65_536).contains(&n) => n as usize,
        Some(n) => {
            d.push(
                "limits.max_connections",
                format!(
                    "expected 16..=65536 open connections (keep it below LimitNOFILE), got {n}"
                ),
            );
            def.max_connections
        }
    };
    let reserved = reserve_for(max_connections);
    let most_per_address = max_connections - reserved;
    let max_connections_per_address = match raw.max_connections_per_address {
        None => def.max_connections_per_address.min(most_per_address),
        Some(n) if n >= 1 && n <= most_per_address as u64 => n as usize,
        Some(n) => {
            d.push(
                "limits.max_connections_per_address",
                format!(
                    "expected 1..={most_per_address} (max_connections minus its reserve of {reserved}), got {n}"
                ),
            );
            def.max_connections_per_address
        }
    };
    let idle_timeout = match &raw.idle_timeout {
        None => def.idle_timeout,
        Some(s) => match d.duration("limits.idle_timeout", s) {
            Some(t) if (Duration::from_secs(1)..=Duration::from_secs(600)).contains(&t) => t,
            Some(_) => {
                d.push("limits.idle_timeout", "expected between 1s and 10m");
                def.idle_timeout
            }
            None => def.idle_timeout,
        },
    };
    let max_requests_per_connection = match raw.max_requests_per_connection {
        None => def.max_requests_per_connection,
        Some(n) if (1..=1_000_000).contains(&n) => n as u32,
        Some(n) => {
            d.push(
                "limits.max_requests_per_connection",
                format!("expected 1..=1000000, got {n}"),
            );
            def.max_requests_per_connection
        }
    };
    Conn {
        max_connections,
        max_connections_per_address,
        reserved,
        idle_timeout,
        max_requests_per_connection,
        ..def
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_matches_network_and_port_only() {
        let allow = Allowlist(vec![
            AllowRule {
                net: parse_cidr("10.0.0.0/8").unwrap(),
                ports: vec![80, 443],
            },
            AllowRule {
                net: parse_cidr("2001:db8::1").unwrap(),
                ports: vec![53],
            },
        ]);
        assert!(allow.permits("10.1.2.3:443".parse().unwrap()));
        assert!(!allow.permits("10.1.2.3:22".parse().unwrap()));
        assert!(!allow.permits("11.0.0.1:80".parse().unwrap()));
        assert!(allow.permits("[::ffff:10.0.0.1]:80".parse().unwrap()));
        assert!(allow.permits("[2001:db8::1]:53".parse().unwrap()));
        assert!(!allow.permits("[2001:db8::2]:53".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(
            parse_cidr("example.com")
                .unwrap_err()
                .to_string()
                .contains("10.0.0.0/8")
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod credential_tests {
    use super::*;

    /// A witness folder (TLS certificate and key) and its config text with `key` as the key
    /// line(s); the signing key itself is in `creds/witness.key`.
    fn setup(dir: &Path) -> ed25519_dalek::SigningKey {
        let (cert, tls_key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        shared::keys::write_private_file(&dir.join("tls.key"), tls_key.as_bytes()).unwrap();
        std::fs::create_dir(dir.join("creds")).unwrap();
        let key = shared::keys::generate();
        shared::keys::write_signing_key(&dir.join("creds/witness.key"), &key).unwrap();
        key
    }

    fn load(dir: &Path, key: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let coordinator =
            shared::keys::format_public_key(&shared::keys::generate().verifying_key());
        // The TLS key from its file, unless `key` says where it is.
        let tls_key = if key.contains("tls_key_") {
            ""
        } else {
            "tls_key_file = \"tls.key\"\n"
        };
        let text = format!(
            "listen = \"127.0.0.1:0\"\n{key}\ntls_cert_file = \"tls.crt\"\n{tls_key}\
             [[coordinator]]\nname = \"c\"\npublic_key = \"{coordinator}\"\n\
             [[allow]]\ncidr = \"192.0.2.0/24\"\nports = [443]\n"
        );
        let path = dir.join("witness.toml");
        let raw: RawConfig = toml::from_str(&text).unwrap();
        validate_in(&path, raw, env).map_err(|d| d.to_string())
    }

    #[test]
    fn the_key_comes_from_a_file_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let key = setup(dir.path());
        let creds = dir.path().join("creds").to_string_lossy().into_owned();
        let env = move |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
        let c = load(dir.path(), "key_credential = \"witness.key\"", &env).unwrap();
        assert_eq!(c.signing_key.verifying_key(), key.verifying_key());
        let c = load(dir.path(), "key_file = \"creds/witness.key\"", &|_| None).unwrap();
        assert_eq!(c.signing_key.verifying_key(), key.verifying_key());

        // Named, but not run by systemd: says so.
        let err = load(dir.path(), "key_credential = \"witness.key\"", &|_| None).unwrap_err();
        assert!(
            err.contains("key_credential: credential \"witness.key\": $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential=witness.key:<file>"),
            "{err}"
        );
        // Named, but the unit does not load it.
        let err = load(dir.path(), "key_credential = \"other.key\"", &env).unwrap_err();
        assert!(
            err.contains("key_credential: credential \"other.key\": ")
                && err.contains("does not exist; add LoadCredential=other.key:<file> to the unit"),
            "{err}"
        );
        let err = load(dir.path(), "", &env).unwrap_err();
        assert!(
            err.contains("key_file: missing; expected key_file"),
            "{err}"
        );
        // The TLS key too: a credential instead of tls_key_file.
        std::fs::copy(dir.path().join("tls.key"), dir.path().join("creds/tls.key")).unwrap();
        let both = "key_credential = \"witness.key\"\ntls_key_credential = \"tls.key\"";
        let c = load(dir.path(), both, &env).unwrap();
        assert_eq!(c.signing_key.verifying_key(), key.verifying_key());
        let err = load(dir.path(), both, &|_| None).unwrap_err();
        assert!(
            err.contains(
                "key_credential: credential \"witness.key\": $CREDENTIALS_DIRECTORY is not set"
            ),
            "{err}"
        );
        let err = load(
            dir.path(),
            "key_file = \"creds/witness.key\"\ntls_key_credential = \"tls.key\"",
            &|_| None,
        )
        .unwrap_err();
        assert!(
            err.contains(
                "tls_key_credential: credential \"tls.key\": $CREDENTIALS_DIRECTORY is not set"
            ),
            "{err}"
        );
        let err = load(
            dir.path(),
            "key_file = \"k\"\nkey_credential = \"witness.key\"",
            &env,
        )
        .unwrap_err();
        assert!(
            err.contains("key_file: give only one of key_file and key_credential"),
            "{err}"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod connection_limit_tests {
    use super::*;

    fn limits(toml_text: &str) -> Result<Limits, Diagnostics> {
        let raw: RawLimits = toml::from_str(toml_text)
            .map_err(|e| Diagnostics::whole_file(Path::new("witness.toml"), e.to_string()))?;
        let mut d = Diagnostics::new(Path::new("witness.toml"));
        validate_limits(&raw, &mut d).ok_or(d)
    }

    #[test]
    fn connection_limits_have_defaults_and_are_checked() {
        let def = limits("").unwrap();
        assert_eq!(def.connections, shared::listener::Limits::default());
        assert_eq!(def.listener().header_read_timeout, DEFAULT_READ_TIMEOUT);
        let set = limits(
            "max_connections = 256\nmax_connections_per_address = 8\nidle_timeout = \"5s\"\nmax_requests_per_connection = 10\nread_timeout = \"2s\"",
        )
        .unwrap();
        assert_eq!(set.connections.max_connections, 256);
        assert_eq!(set.connections.reserved, 16);
        assert_eq!(set.connections.max_connections_per_address, 8);
        assert_eq!(set.connections.idle_timeout, Duration::from_secs(5));
        assert_eq!(set.connections.max_requests_per_connection, 10);
        assert_eq!(set.listener().header_read_timeout, Duration::from_secs(2));
        assert_eq!(set.listener().handshake_timeout, Duration::from_secs(2));

        let bad = limits("max_connections = 64\nmax_connections_per_address = 64")
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains("witness.toml: limits.max_connections_per_address: expected 1..=60"),
            "{bad}"
        );
        let bad = limits("max_connections = 4").unwrap_err().to_string();
        assert!(
            bad.contains("limits.max_connections: expected 16..=65536"),
            "{bad}"
        );
        let bad = limits("idle_timeout = \"0s\"").unwrap_err().to_string();
        assert!(
            bad.contains("limits.idle_timeout: expected between 1s and 10m"),
            "{bad}"
        );
        let bad = limits("max_conections = 10").unwrap_err().to_string();
        assert!(bad.contains("unknown field"), "{bad}");
    }
}
