//! `quorate-witness init`: a first-start directory with a signing key (PKCS#8 v1 PEM, as
//! OpenSSL writes it: `openssl pkey` and Python's `cryptography` read it), a self-signed TLS
//! certificate and a commented config, and the identity block a coordinator pastes into its
//! own config, named after the first `--name`. Never overwrites anything. With `--owner USER`
//! (root only; the package's unit runs as `quorate-witness`) the two private keys go to that
//! user and the config and certificate stay root's: the daemon reads them but cannot change
//! them.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use shared::config::Invalid;

use crate::config::{AllowRule, parse_cidr};

pub const KEY_FILE: &str = "witness.key";
pub const CERT_FILE: &str = "tls.crt";
pub const TLS_KEY_FILE: &str = "tls.key";
pub const CONFIG_FILE: &str = "witness.toml";
/// The service user the package creates (`deploy/systemd/quorate-witness.sysusers`).
pub const SERVICE_USER: &str = "quorate-witness";
/// The user database `--owner` is looked up in (system users live here: sysusers writes it).
const PASSWD: &str = "/etc/passwd";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}: already exists; init never overwrites (move it away or pick another --dir)")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--{flag} {value:?}: {message}")]
    BadFlag {
        flag: &'static str,
        value: String,
        message: FlagError,
    },
    #[error(
        "--owner {0}: no such user in {PASSWD} (install the quorate-witness package, which creates {SERVICE_USER}, or name an existing user)"
    )]
    NoSuchUser(String),
    #[error(
        "--owner {user}: cannot give {path} to it: {source} (run init as root, or leave --owner out)"
    )]
    Chown {
        user: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] shared::keys::KeyError),
    #[error(transparent)]
    Tls(#[from] shared::tls::TlsError),
}

/// An `--allow` or `--coordinator` value that is not what the flag takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("expected CIDR=PORTS, e.g. 203.0.113.10/32=80,443")]
    AllowShape,
    #[error(transparent)]
    Network(#[from] Invalid),
    #[error("expected ports 1..=65535 separated by commas, got {0:?}")]
    Port(String),
    #[error("expected NAME=ed25519:KEY")]
    CoordinatorShape,
    #[error("expected a name of 1..=64 characters before '='")]
    CoordinatorName,
    #[error(transparent)]
    Key(#[from] shared::keys::PublicKeyError),
}

/// What `init` is asked to do.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Host names and IP addresses for the certificate's SANs.
    pub names: Vec<String>,
    /// `CIDR=PORT,PORT`, e.g. `203.0.113.10/32=80,443`.
    pub allow: Vec<String>,
    /// `NAME=ed25519:KEY`.
    pub coordinators: Vec<String>,
    /// Who owns the private keys (`--owner`); `None`: the user running init.
    pub owner: Option<String>,
}

/// What `init` made.
#[derive(Clone, Debug)]
pub struct InitOutput {
    pub config_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    pub public_key: String,
    pub key_id: String,
    pub cert_sha256: String,
    pub cert_names: Vec<String>,
    pub listen: SocketAddr,
    /// False when the config still lacks a coordinator or an allow entry.
    pub complete: bool,
    /// Whether `--coordinator` named at least one coordinator (already in the config).
    pub has_coordinator: bool,
    /// The first `--name`, which names the coordinator's `[[witness]]` block.
    pub first_name: Option<String>,
    /// `--owner`, when the keys were given to it: its name.
    pub owner: Option<String>,
}

/// The uid and gid of `name` in `passwd` text (`name:x:uid:gid:...`).
pub fn find_user(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// Parses `CIDR=PORT,PORT`.
pub fn parse_allow_flag(text: &str) -> Result<AllowRule, FlagError> {
    let (cidr, ports) = text.split_once('=').ok_or(FlagError::AllowShape)?;
    let net = parse_cidr(cidr)?;
    let ports = ports
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| FlagError::Port(p.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AllowRule { net, ports })
}

/// Parses `NAME=ed25519:KEY`.
fn parse_coordinator_flag(text: &str) -> Result<(String, String), FlagError> {
    let (name, key) = text.split_once('=').ok_or(FlagError::CoordinatorShape)?;
    if name.trim().is_empty() || name.len() > 64 {
        return Err(FlagError::CoordinatorName);
    }
    let key = shared::keys::parse_public_key(key)?;
    Ok((
        name.trim().to_string(),
        shared::keys::format_public_key(&key),
    ))
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Creates the key, certificate and config in `opts.dir`.
pub fn init(opts: &InitOptions) -> Result<InitOutput, InitError> {
    init_with(opts, PASSWD)
}

/// [`init`] with the passwd database at `passwd` (tests give their own).
pub fn init_with(opts: &InitOptions, passwd: &str) -> Result<InitOutput, InitError> {
    // Everything that can be wrong with the flags is checked before a file is written.
    let owner = match &opts.owner {
        Some(name) => {
            let text = std::fs::read_to_string(passwd).map_err(|source| InitError::Io {
                path: passwd.into(),
                source,
            })?;
            Some(find_user(&text, name).ok_or_else(|| InitError::NoSuchUser(name.clone()))?)
        }
        None => None,
    };
    let mut allow = Vec::new();
    for a in &opts.allow {
        let rule = parse_allow_flag(a).map_err(|message| InitError::BadFlag {
            flag: "allow",
            value: a.clone(),
            message,
        })?;
        allow.push(rule);
    }
    let mut coordinators = Vec::new();
    for c in &opts.coordinators {
        coordinators.push(
            parse_coordinator_flag(c).map_err(|message| InitError::BadFlag {
                flag: "coordinator",
                value: c.clone(),
                message,
            })?,
        );
    }
    let mut names = opts.names.clone();
    if !opts.listen.ip().is_unspecified() && !names.contains(&opts.listen.ip().to_string()) {
        names.push(opts.listen.ip().to_string());
    }
    if names.is_empty() {
        names.push("localhost".into());
    }

    std::fs::create_dir_all(&opts.dir).map_err(|source| InitError::Io {
        path: opts.dir.clone(),
        source,
    })?;
    let key_file = opts.dir.join(KEY_FILE);
    let cert_file = opts.dir.join(CERT_FILE);
    let tls_key_file = opts.dir.join(TLS_KEY_FILE);
    let config_file = opts.dir.join(CONFIG_FILE);
    for p in [&key_file, &cert_file, &tls_key_file, &config_file] {
        if p.exists() {
            return Err(InitError::Exists(p.clone()));
        }
    }

    let (cert_pem, tls_key_pem) = shared::tls::self_signed(&names)?;
    let cert_info = shared::tls::parse_cert_pem(cert_pem.as_bytes(), &cert_file)?;
    let signing_key = shared::keys::generate();
    let public_key = shared::keys::format_public_key(&signing_key.verifying_key());
    let key_id = shared::protocol::KeyId::of(&signing_key.verifying_key()).0;

    shared::keys::write_signing_key(&key_file, &signing_key)?;
    shared::keys::write_private_file(&tls_key_file, tls_key_pem.as_bytes())?;
    write_new(&cert_file, cert_pem.as_bytes(), 0o644)?;
    let text = config_text(opts.listen, &coordinators, &allow, &public_key, &key_id);
    write_new(&config_file, text.as_bytes(), 0o644)?;
    if let (Some((uid, gid)), Some(user)) = (owner, &opts.owner) {
        let running = std::fs::metadata(&key_file)
            .map_err(|source| InitError::Io {
                path: key_file.clone(),
                source,
            })?
            .uid();
        if uid != running {
            for path in [&key_file, &tls_key_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| {
                    InitError::Chown {
                        user: user.clone(),
                        path: path.clone(),
                        source,
                    }
                })?;
            }
        }
    }

    Ok(InitOutput {
        complete: !coordinators.is_empty() && !allow.is_empty(),
        has_coordinator: !coordinators.is_empty(),
        first_name: opts.names.first().cloned(),
        owner: opts.owner.clone(),
        config_file,
        key_file,
        cert_file,
        tls_key_file,
        public_key,
        key_id,
        cert_sha256: cert_info.sha256_hex,
        cert_names: names,
        listen: opts.listen,
    })
}

/// [`shared::keys::write_new_file`], with an existing file named as init names it.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), InitError> {
    shared::keys::write_new_file(path, contents, mode).map_err(|e| match e {
        shared::keys::KeyError::Exists { path } => InitError::Exists(path),
        shared::keys::KeyError::Io { path, source } => InitError::Io { path, source },
        other => InitError::Key(other),
    })
}

fn config_text(
    listen: SocketAddr,
    coordinators: &[(String, String)],
    allow: &[AllowRule],
    public_key: &str,
    key_id: &str,
) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "# quorate-witness configuration, written by `quorate-witness init`.\n\
         # This witness's public key: {public_key} (key id {key_id}).\n\
         # Check it with: quorate-witness check --config <this file>\n\
         # Relative paths are resolved against the directory of this file.\n\n\
         # Address and port the HTTPS API listens on.\n\
         listen = {}\n\n\
         # ed25519 signing key (PKCS#8 PEM as OpenSSL writes it, mode 0600, owned by the user the\n\
         # witness runs as or root). Votes are signed with it.\n\
         key_file = \"{KEY_FILE}\"\n\n\
         # TLS certificate and key (key mode 0600). Coordinators pin the certificate's SHA-256.\n\
         tls_cert_file = \"{CERT_FILE}\"\n\
         tls_key_file = \"{TLS_KEY_FILE}\"\n\n\
         # Largest accepted clock difference with a coordinator; nonces are remembered for twice this.\n\
         max_skew = \"30s\"\n\n\
         # Extra CA certificates (PEM) trusted for HTTPS probes, besides the public web roots.\n\
         # ca_file = \"/etc/quorate-witness/extra-ca.pem\"\n\n\
         # \"human\" (default) or \"json\".\n\
         # log_format = \"human\"\n\n",
        quote(&listen.to_string())
    ));
    t.push_str(
        "# Coordinators this witness answers: one [[coordinator]] per trusted key.\n\
         # `quorate-coordinator init` (or `quorate-coordinator keygen`) prints its public key;\n\
         # `quorate-witness init --coordinator NAME=KEY` writes the block for you.\n\
         # At least one is required.\n",
    );
    if coordinators.is_empty() {
        t.push_str(
            "# EDIT ME: add the coordinator(s) you trust, then run\n\
             # `quorate-witness check --config <this file>`.\n\
             # [[coordinator]]\n\
             # name = \"backup-1\"\n\
             # public_key = \"ed25519:...\"\n\n",
        );
    }
    for (name, key) in coordinators {
        t.push_str(&format!(
            "[[coordinator]]\nname = {}\npublic_key = {}\n\n",
            quote(name),
            quote(key)
        ));
    }
    t.push_str(
        "# What this witness may probe: a target's address must be inside one `cidr` and its port\n\
         # in that entry's `ports`, whatever a request asks. Keep it as narrow as your primaries\n\
         # (for a DNS probe, the DNS server's address and port 53). At least one is required.\n",
    );
    if allow.is_empty() {
        t.push_str(
            "# EDIT ME: list your primary servers, then run\n\
             # `quorate-witness check --config <this file>`.\n\
             # [[allow]]\n\
             # cidr = \"203.0.113.10/32\"\n\
             # ports = [80, 443]\n\n",
        );
    }
    for rule in allow {
        let ports: Vec<String> = rule.ports.iter().map(u16::to_string).collect();
        t.push_str(&format!(
            "[[allow]]\ncidr = {}\nports = [{}]\n\n",
            quote(&rule.net.to_string()),
            ports.join(", ")
        ));
    }
    t.push_str(
        "# Bounds on the work a vote request may cause (defaults shown).\n\
         [limits]\n\
         # max_body_bytes = 16384\n\
         # max_concurrent = 64\n\
         # A coordinator asks once per service per interval: keep this above\n\
         # (its services / interval in seconds), or it gets 429s and its rounds miss this vote.\n\
         # rate_per_coordinator = 50   # requests per second, per coordinator key\n\
         # burst = 50\n\
         # read_timeout = \"10s\"      # TLS handshake, request head and body\n",
    );
    t
}

impl InitOutput {
    /// A name for the coordinator's `[[witness]]` entry: the first `--name` (a host name or
    /// an address), else `witness-` and the start of the key id.
    pub fn suggested_name(&self) -> String {
        self.first_name
            .clone()
            .unwrap_or_else(|| format!("witness-{}", &self.key_id[..8.min(self.key_id.len())]))
    }

    /// What to tell the operator: the identity block for coordinators and next steps.
    pub fn instructions(&self) -> String {
        let host = self
            .cert_names
            .first()
            .cloned()
            .unwrap_or_else(|| "localhost".into());
        let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{host}]")
        } else {
            host
        };
        let url = format!("https://{host}:{}", self.listen.port());
        let mut s = format!(
            "created:\n  {}\n  {}\n  {}\n  {}\n\n\
             paste this into each coordinator's config (adjust the url to how it reaches this host):\n\n\
             [[witness]]\nname = \"{}\"\nurl = \"{url}\"\npublic_key = \"{}\"\ncert_sha256 = \"{}\"\n\n",
            self.config_file.display(),
            self.key_file.display(),
            self.cert_file.display(),
            self.tls_key_file.display(),
            self.suggested_name(),
            self.public_key,
            self.cert_sha256,
        );
        if !self.has_coordinator {
            s.push_str(&format!(
                "to trust a coordinator, add to {} (`quorate-coordinator init` printed its key):\n\n\
                 [[coordinator]]\nname = \"backup-1\"\npublic_key = \"ed25519:<the coordinator's public key>\"\n\n",
                self.config_file.display()
            ));
        }
        if let Some(owner) = &self.owner {
            s.push_str(&format!(
                "{} and {} are owned by {owner} (mode 0600); the rest by you.\n\n",
                self.key_file.display(),
                self.tls_key_file.display()
            ));
        }
        if !self.complete {
            s.push_str(
                "the config is not complete yet: it needs at least one [[coordinator]] and one \
                 [[allow]] entry (or use --coordinator and --allow); then run:\n",
            );
        } else {
            s.push_str("then run:\n");
        }
        s.push_str(&format!(
            "  {1}quorate-witness check --config {0}\n\
             \x20 systemctl enable --now quorate-witness   (the package's unit; by hand: quorate-witness run --config {0})\n",
            self.config_file.display(),
            self.owner
                .as_ref()
                .map(|u| format!("sudo -u {u} "))
                .unwrap_or_default(),
        ));
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts(dir: &Path, names: &[&str], coordinators: Vec<String>) -> InitOptions {
        InitOptions {
            dir: dir.to_owned(),
            listen: "0.0.0.0:8443".parse().unwrap(),
            names: names.iter().map(|n| n.to_string()).collect(),
            allow: vec!["203.0.113.10/32=80,443".into()],
            coordinators,
            owner: None,
        }
    }

    #[test]
    fn the_block_is_named_after_the_first_name_and_nothing_is_asked_twice() {
        let key = shared::keys::format_public_key(&shared::keys::generate().verifying_key());
        let dir = tempfile::tempdir().unwrap();
        let out = init(&opts(
            dir.path(),
            &["198.51.100.7", "w1.example.net"],
            vec![format!("backup-1={key}")],
        ))
        .unwrap();
        let text = out.instructions();
        assert!(
            text.contains("[[witness]]\nname = \"198.51.100.7\"\n"),
            "{text}"
        );
        // --coordinator already wrote the [[coordinator]] block: no request to add one.
        assert!(!text.contains("[[coordinator]]"), "{text}");
        assert!(
            text.contains("systemctl enable --now quorate-witness"),
            "{text}"
        );
        let config = std::fs::read_to_string(&out.config_file).unwrap();
        assert!(config.contains(&format!(
            "[[coordinator]]\nname = \"backup-1\"\npublic_key = \"{key}\""
        )));
        assert!(config.contains("`quorate-coordinator init`"), "{config}");

        // Without --coordinator: the block to add, and where its key comes from.
        let dir = tempfile::tempdir().unwrap();
        let text = init(&opts(dir.path(), &[], vec![])).unwrap().instructions();
        assert!(
            text.contains("[[coordinator]]") && text.contains("quorate-coordinator init"),
            "{text}"
        );
        assert!(text.contains("name = \"witness-"), "{text}");
    }

    #[test]
    fn owner_gets_the_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        let mut o = opts(&dir.path().join("etc"), &["w1"], vec![]);
        o.owner = Some("nobody".into());
        let root = std::fs::metadata(&passwd).unwrap().uid() == 0;
        match init_with(&o, passwd.to_str().unwrap()) {
            Ok(out) => {
                assert!(root, "only root can give files away");
                for path in [&out.key_file, &out.tls_key_file] {
                    assert_eq!(std::fs::metadata(path).unwrap().uid(), 65534, "{path:?}");
                }
                assert_eq!(std::fs::metadata(&out.config_file).unwrap().uid(), 0);
            }
            Err(e) => {
                assert!(!root, "{e}");
                assert!(
                    e.to_string().starts_with("--owner nobody: cannot give"),
                    "{e}"
                );
            }
        }
        o.owner = Some("nobody-here".into());
        o.dir = dir.path().join("etc2");
        let err = init_with(&o, passwd.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, InitError::NoSuchUser(_)), "{err}");
        assert!(!o.dir.exists(), "nothing is written before the refusal");
    }

    #[test]
    fn flag_errors_say_what_was_expected() {
        let allow = |text: &str| parse_allow_flag(text).unwrap_err().to_string();
        assert_eq!(
            allow("10.0.0.0/8"),
            "expected CIDR=PORTS, e.g. 203.0.113.10/32=80,443"
        );
        assert_eq!(
            allow("10.0.0.0/8=80,http"),
            "expected ports 1..=65535 separated by commas, got \"http\""
        );
        assert_eq!(
            allow("10.0.0.0/8=0"),
            "expected ports 1..=65535 separated by commas, got \"0\""
        );
        assert!(allow("nowhere=80").contains("a network like"));
        let rule = parse_allow_flag("10.1.2.3/8=80, 443").unwrap();
        assert_eq!(rule.ports, [80, 443]);

        let coordinator = |text: &str| parse_coordinator_flag(text).unwrap_err().to_string();
        assert_eq!(coordinator("backup"), "expected NAME=ed25519:KEY");
        assert_eq!(
            coordinator(" =ed25519:AAAA"),
            "expected a name of 1..=64 characters before '='"
        );
        assert!(coordinator("backup=AAAA").contains("ed25519:"));
        let key = shared::keys::format_public_key(&shared::keys::generate().verifying_key());
        let (name, text) = parse_coordinator_flag(&format!("backup={key}")).unwrap();
        assert_eq!((name.as_str(), text), ("backup", key));
    }
}
