//! `quorate-coordinator init --dir DIR`: a first-start directory — the signing key, the admin
//! and read-only API tokens, a TLS certificate and key for the API, a skeleton config that
//! `check` accepts — with the owners and modes the daemon insists on, and what to do next (the
//! public key each witness's `--coordinator` takes). Never overwrites anything: every target is
//! checked before the first file is written.
//!
//! The API certificate is self-signed, an end-entity certificate (no `CA:true`): the CLI
//! trusts the file itself as its trust anchor (rustls-webpki accepts a self-signed end-entity
//! certificate as an anchor, and refuses a CA certificate presented as the server's own), a
//! browser is shown its SHA-256 to compare. Its names: this host's name, `localhost`,
//! `127.0.0.1`, `::1`, `--api-listen`'s address if it is a specific one, and every `--api-name`.
//! Replace it with the operator's own by pointing `tls_cert_file`/`tls_key_file` elsewhere.
//!
//! Owners: secrets must be owned by the user the daemon runs as (or root) and mode 0600
//! (`shared::keys::check_private_mode`), so with `--owner quorate` (the packages' service
//! user; root only) the secrets go to that user and the config stays root's, mode 0640, group
//! that user's group: the daemon reads it but cannot change it. Without `--owner` everything is
//! the running user's; root is warned when the service user exists. Never a default owner:
//! root's own tests would then write keys that root refuses to load.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::rand::SecureRandom as _;

pub const KEY_FILE: &str = "coordinator.key";
pub const TOKEN_FILE: &str = "api.token";
pub const READ_TOKEN_FILE: &str = "read.token";
/// The API's certificate (PEM, mode 0644) and its private key (PEM, mode 0600).
pub const API_CERT_FILE: &str = "api.crt";
pub const API_KEY_FILE: &str = "api.key";
pub const CONFIG_FILE: &str = "coordinator.toml";
/// The service user the packages create (`deploy/systemd/quorate-coordinator.sysusers`).
pub const SERVICE_USER: &str = "quorate";
/// Where the packages keep the history (the unit's `StateDirectory=quorate`).
pub const DEFAULT_DATABASE: &str = "/var/lib/quorate/history.sqlite";
/// Bytes of randomness in each API token (base64: 44 characters).
const TOKEN_BYTES: usize = 32;
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
    #[error(
        "--owner {0}: no such user in {PASSWD} (install the quorate-coordinator package, which creates {SERVICE_USER}, or name an existing user)"
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
    #[error("--name {0:?}: expected 1..=64 characters, no quotes or control characters")]
    BadName(String),
    #[error("cannot draw random bytes for the API tokens")]
    Random,
    #[error("--api-name: {0}")]
    Certificate(shared::tls::TlsError),
    #[error(transparent)]
    Key(#[from] shared::keys::KeyError),
}

/// What `init` is asked to do.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// The name witnesses know this coordinator by (their `--coordinator NAME=...`).
    pub name: String,
    /// `[coordinator] database`.
    pub database: PathBuf,
    /// `[api] listen`.
    pub api_listen: SocketAddr,
    /// Names and addresses the API's certificate is valid for, besides the defaults
    /// ([`api_cert_names`]).
    pub api_names: Vec<String>,
    /// Who owns the secrets (`--owner`; the packages' unit runs as [`SERVICE_USER`]);
    /// `None`: the user running init.
    pub owner: Option<String>,
}

/// A user from the passwd database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// What `init` made.
#[derive(Clone, Debug)]
pub struct InitOutput {
    pub config_file: PathBuf,
    /// Each file written, with its mode, in the order written.
    pub files: Vec<(PathBuf, u32, &'static str)>,
    /// Who owns the secrets (`None`: the user who ran init, nothing was changed).
    pub owner: Option<User>,
    /// Root ran init without `--owner` where this service user exists: the daemon, run as
    /// it, could not read the secrets.
    pub unowned: Option<String>,
    pub name: String,
    pub public_key: String,
    pub key_id: String,
    pub api_listen: SocketAddr,
    /// The names in the API's certificate, and its SHA-256 (hex) for a browser's comparison.
    pub api_cert_names: Vec<String>,
    pub api_cert_sha256: String,
}

/// Looks `name` up in `passwd` text (`name:x:uid:gid:...`).
pub fn find_user(passwd: &str, name: &str) -> Option<User> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some(User {
            name: name.to_string(),
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
        })
    })
}

/// A fresh API token: [`TOKEN_BYTES`] random bytes, base64.
fn token() -> Result<String, InitError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| InitError::Random)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// This host's name, for `--name`'s default (`coordinator` when it cannot be read).
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| valid_name(h))
        .unwrap_or_else(|| "coordinator".into())
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && !name.chars().any(|c| c.is_control() || c == '"')
}

/// The names init's API certificate carries: this host's name (if it is a valid DNS name),
/// `localhost`, `127.0.0.1`, `::1`, the listen address if it is a specific one, then `extra`;
/// each once.
pub fn api_cert_names(host: Option<&str>, listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let host = host.filter(|h| shared::hostname::check_hostname(h).is_ok());
    let ip = (!listen.ip().is_unspecified()).then(|| listen.ip().to_string());
    for n in host
        .map(str::to_string)
        .into_iter()
        .chain(["localhost".into(), "127.0.0.1".into(), "::1".into()])
        .chain(ip)
        .chain(extra.iter().cloned())
    {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// This host's name as the kernel has it, if it can be read.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// Creates the key, the tokens and the config in `opts.dir`.
pub fn init(opts: &InitOptions) -> Result<InitOutput, InitError> {
    init_with(opts, PASSWD)
}

/// [`init`] with the passwd database at `passwd` (tests give their own).
pub fn init_with(opts: &InitOptions, passwd: &str) -> Result<InitOutput, InitError> {
    if !valid_name(&opts.name) {
        return Err(InitError::BadName(opts.name.clone()));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| InitError::Io { path, source }
    };
    std::fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
    let key_file = opts.dir.join(KEY_FILE);
    let token_file = opts.dir.join(TOKEN_FILE);
    let read_token_file = opts.dir.join(READ_TOKEN_FILE);
    let cert_file = opts.dir.join(API_CERT_FILE);
    let cert_key_file = opts.dir.join(API_KEY_FILE);
    let config_file = opts.dir.join(CONFIG_FILE);
    for p in [
        &key_file,
        &token_file,
        &read_token_file,
        &cert_file,
        &cert_key_file,
        &config_file,
    ] {
        if p.symlink_metadata().is_ok() {
            return Err(InitError::Exists(p.clone()));
        }
    }
    // An explicit --owner is looked up before anything is written.
    let explicit = match &opts.owner {
        Some(name) => {
            let text = std::fs::read_to_string(passwd).map_err(io(Path::new(passwd)))?;
            Some(find_user(&text, name).ok_or_else(|| InitError::NoSuchUser(name.clone()))?)
        }
        None => None,
    };

    let signing_key = shared::keys::generate();
    let vk = signing_key.verifying_key();
    let public_key = shared::keys::format_public_key(&vk);
    let key_id = shared::protocol::KeyId::of(&vk).0;
    let (admin, read) = (token()?, token()?);
    let api_cert_names = api_cert_names(host_name().as_deref(), opts.api_listen, &opts.api_names);
    let (cert_pem, cert_key_pem) =
        shared::tls::self_signed(&api_cert_names).map_err(InitError::Certificate)?;
    let api_cert_sha256 = shared::tls::parse_cert_pem(cert_pem.as_bytes(), &cert_file)
        .map_err(InitError::Certificate)?
        .sha256_hex;

    let mut files = Vec::new();
    shared::keys::write_signing_key(&key_file, &signing_key)?;
    // Who runs this: the owner of what it creates (`std` has no safe geteuid).
    let running_uid = std::fs::metadata(&key_file).map_err(io(&key_file))?.uid();
    let owner = explicit.filter(|u| u.uid != running_uid);
    // Root without --owner, where the packages' service user exists: say so, loudly.
    let unowned = (running_uid == 0 && opts.owner.is_none())
        .then(|| std::fs::read_to_string(passwd).ok())
        .flatten()
        .and_then(|t| find_user(&t, SERVICE_USER))
        .map(|u| u.name);
    files.push((key_file, 0o600, "the signing key (requests, checkpoints)"));
    shared::keys::write_private_file(&token_file, format!("{admin}\n").as_bytes())?;
    files.push((token_file, 0o600, "admin API token (override, failback)"));
    shared::keys::write_private_file(&read_token_file, format!("{read}\n").as_bytes())?;
    files.push((
        read_token_file,
        0o600,
        "read-only API token (status, history, viewers)",
    ));
    shared::keys::write_private_file(&cert_key_file, cert_key_pem.as_bytes())?;
    files.push((cert_key_file, 0o600, "the API certificate's private key"));
    write_new(&cert_file, cert_pem.as_bytes(), 0o644)?;
    files.push((
        cert_file,
        0o644,
        "the API's TLS certificate (self-signed; the CLI trusts it)",
    ));
    let text = config_text(opts, &public_key, &key_id);
    write_new(&config_file, text.as_bytes(), 0o640)?;
    files.push((
        config_file.clone(),
        0o640,
        "the config (a skeleton: edit it)",
    ));

    if let Some(user) = &owner {
        for (path, mode, _) in &files {
            // Secrets to the service user; the config stays root's, readable by its group.
            let (uid, gid) = if *mode == 0o600 {
                (Some(user.uid), Some(user.gid))
            } else {
                (None, Some(user.gid))
            };
            std::os::unix::fs::chown(path, uid, gid).map_err(|source| InitError::Chown {
                user: user.name.clone(),
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(InitOutput {
        config_file,
        files,
        owner,
        unowned,
        name: opts.name.clone(),
        public_key,
        key_id,
        api_listen: opts.api_listen,
        api_cert_names,
        api_cert_sha256,
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

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The skeleton config: valid as written (no witness, no service, the `dryrun` backend), every
/// part still to fill in marked `EDIT ME`.
fn config_text(opts: &InitOptions, public_key: &str, key_id: &str) -> String {
    format!(
        "# quorate-coordinator configuration, written by `quorate-coordinator init`.\n\
         # This coordinator is {name:?}; its public key (key id {key_id}):\n\
         #   {public_key}\n\
         # Each witness trusts it with:\n\
         #   quorate-witness init ... --coordinator {name}={public_key}\n\
         # Check with:  quorate-coordinator check --config <this file>   (then with --online)\n\
         # Every key is explained in `quorate-coordinator example-config`. Relative paths are\n\
         # relative to this file's folder. Unknown keys are errors.\n\n\
         [coordinator]\n\
         # ed25519 signing key, mode 0600, owned by the user the coordinator runs as.\n\
         key_file = \"{KEY_FILE}\"\n\
         # The history (SQLite); the unit's StateDirectory= is /var/lib/quorate.\n\
         database = {database}\n\
         interval = \"1s\"\n\
         retention = \"90d\"\n\n\
         [api]\n\
         # HTTPS with the self-signed certificate init wrote (the CLI trusts that file). To\n\
         # reach it from another host, listen on its address and give init --api-name, or\n\
         # point both lines at your own certificate and key (then ca_file = your CA).\n\
         listen = {listen}\n\
         tls_cert_file = \"{API_CERT_FILE}\"\n\
         tls_key_file = \"{API_KEY_FILE}\"\n\
         # Admin token (override, failback) and read-only token (status, history, viewers).\n\
         token_file = \"{TOKEN_FILE}\"\n\
         read_token_file = \"{READ_TOKEN_FILE}\"\n\n\
         # EDIT ME: paste here the [[witness]] block each `quorate-witness init` printed.\n\n\
         # EDIT ME: where the records live (docs/dns-backends.md). `dryrun` changes nothing\n\
         # anywhere: it only lets this skeleton validate.\n\
         [dns]\n\
         type = \"dryrun\"\n\n\
         # EDIT ME: one [[service]] per name to fail over (`quorate-coordinator example-config`\n\
         # shows every key). This placeholder names documentation addresses only.\n\
         [[service]]\n\
         name = \"www\"\n\
         zone = \"example.com\"\n\
         names = [\"www\"]\n\
         ttl = 60\n\
         primary = {{ addresses = [\"192.0.2.10\"] }}\n\
         backup = {{ addresses = [\"198.51.100.20\"] }}\n\
         probe = {{ kind = \"https\", port = 443, host = \"www.example.com\", path = \"/\", expect_status = [200], timeout = \"1s\" }}\n\
         # Valid \"down\" votes needed (default: a majority of the witnesses).\n\
         # quorum = 2\n",
        name = opts.name,
        database = quote(&opts.database.to_string_lossy()),
        listen = quote(&opts.api_listen.to_string()),
    )
}

impl InitOutput {
    /// What to tell the operator: what was written, the public key, the next steps in order.
    pub fn instructions(&self) -> String {
        let owner = match &self.owner {
            Some(u) => format!(
                " (secrets owned by {0}, the config by root with group {0})",
                u.name
            ),
            None => String::new(),
        };
        let mut s = format!("created{owner}:\n");
        for (path, mode, what) in &self.files {
            s.push_str(&format!("  {:04o}  {}  {what}\n", mode, path.display()));
        }
        if let Some(user) = &self.unowned {
            let secrets: Vec<String> = self
                .files
                .iter()
                .filter(|(_, mode, _)| *mode == 0o600)
                .map(|(p, _, _)| p.display().to_string())
                .collect();
            s.push_str(&format!(
                "\nwarning: these are root's; the packaged unit runs as {user} and cannot read them:\n\
                 \x20 chown {user}: {}\n\
                 \x20 chgrp {user} {}\n\
                 (next time: init --owner {user})\n",
                secrets.join(" "),
                self.config_file.display()
            ));
        }
        let config = self.config_file.display();
        s.push_str(&format!(
            "\nthis coordinator's public key (key id {}):\n  {}\n\n\
             next steps:\n\
             1. on each witness host (quorate-witness package):\n\
             \x20    quorate-witness init --dir /etc/quorate-witness --name <its address> \\\n\
             \x20        --allow <primary's IP>/32=80,443 --coordinator {}={}\n\
             \x20  it prints a [[witness]] block.\n\
             2. paste every [[witness]] block into {config}; set [dns] and add a [[service]]\n\
             \x20  (docs/dns-backends.md, `quorate-coordinator example-config`).\n\
             3. {sudo}quorate-coordinator check --online --config {config}\n\
             4. systemctl enable --now quorate-coordinator\n\
             \n\
             the API and the dashboard listen on https://{}/ with a self-signed certificate\n\
             \x20 for {}\n\
             \x20 (SHA-256 {}: compare it with what a browser shows);\n\
             \x20 `status` and `history` need only the read-only token.\n",
            self.key_id,
            self.public_key,
            self.name,
            self.public_key,
            self.api_listen,
            self.api_cert_names.join(", "),
            self.api_cert_sha256,
            sudo = self
                .owner
                .as_ref()
                .map(|u| format!("sudo -u {} ", u.name))
                .unwrap_or_default(),
        ));
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn opts(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_owned(),
            name: "backup-1".into(),
            database: dir.join("history.sqlite"),
            api_listen: "127.0.0.1:8080".parse().unwrap(),
            api_names: Vec::new(),
            owner: None,
        }
    }

    #[test]
    fn users_are_found_by_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nquorate:x:998:997::/var/lib/quorate:/usr/sbin/nologin\n";
        assert_eq!(
            find_user(passwd, "quorate"),
            Some(User {
                name: "quorate".into(),
                uid: 998,
                gid: 997
            })
        );
        assert_eq!(find_user(passwd, "quor"), None);
        assert_eq!(find_user("broken:x:y\n", "broken"), None);
    }

    #[test]
    fn writes_private_secrets_and_a_config_check_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let out = init_with(&opts(dir.path()), "/nonexistent").unwrap();
        for (path, mode, _) in &out.files {
            let meta = std::fs::metadata(path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, *mode, "{path:?}");
        }
        // As written, `check` names what is missing: the witnesses.
        let err = crate::config::load(&out.config_file)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a service needs at least one witness"),
            "{err}"
        );
        // With a witness block pasted (as `quorate-witness init` prints it), it validates.
        let witness_key = shared::keys::generate().verifying_key();
        let mut text = std::fs::read_to_string(&out.config_file).unwrap();
        text.push_str(&format!(
            "\n[[witness]]\nname = \"w1\"\nurl = \"https://198.51.100.7:8443\"\npublic_key = \"{}\"\n",
            shared::keys::format_public_key(&witness_key)
        ));
        std::fs::write(&out.config_file, text).unwrap();
        let cfg = crate::config::load(&out.config_file).unwrap();
        assert_eq!(cfg.key_id.0, out.key_id);
        assert_eq!((cfg.services.len(), cfg.witnesses.len()), (1, 1));
        assert_ne!(Some(&cfg.api_token), cfg.api_read_token.as_ref());
        // The API speaks HTTPS with init's certificate.
        let tls = cfg.api_tls.as_ref().unwrap();
        assert_eq!(tls.cert_file, dir.path().join(API_CERT_FILE));
        let cert = shared::tls::read_cert_file(&tls.cert_file).unwrap();
        assert_eq!(cert.sha256_hex, out.api_cert_sha256);
        for n in ["localhost", "127.0.0.1", "::1"] {
            assert!(out.api_cert_names.iter().any(|x| x == n), "{n}");
        }
        let text = out.instructions();
        assert!(
            text.contains(&format!("--coordinator backup-1={}", out.public_key)),
            "{text}"
        );
    }

    #[test]
    fn the_api_certificate_names_the_host_loopback_and_the_extra_names() {
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let one: SocketAddr = "192.0.2.5:8443".parse().unwrap();
        let extra = ["backup.example.net".to_string(), "localhost".to_string()];
        /// (host name, listen, extra names, the certificate's names)
        type Row<'a> = (Option<&'a str>, SocketAddr, &'a [String], &'a [&'a str]);
        let table: &[Row] = &[
            (
                Some("backup-1"),
                any,
                &[],
                &["backup-1", "localhost", "127.0.0.1", "::1"],
            ),
            (
                None,
                one,
                &[],
                &["localhost", "127.0.0.1", "::1", "192.0.2.5"],
            ),
            // A kernel host name that is no DNS name is left out; names appear once.
            (
                Some("bad_name!"),
                any,
                &extra,
                &["localhost", "127.0.0.1", "::1", "backup.example.net"],
            ),
        ];
        for (host, listen, extra, want) in table {
            assert_eq!(
                api_cert_names(*host, *listen, extra),
                *want,
                "{host:?} {listen}"
            );
        }
        // A bad --api-name is refused before anything is written.
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.api_names = vec!["not a name!".into()];
        let err = init_with(&o, "/nonexistent").unwrap_err().to_string();
        assert!(err.starts_with("--api-name: "), "{err}");
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn refuses_to_overwrite_anything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(READ_TOKEN_FILE), "keep me").unwrap();
        let err = init_with(&opts(dir.path()), "/nonexistent").unwrap_err();
        assert!(
            err.to_string().ends_with("read.token: already exists; init never overwrites (move it away or pick another --dir)"),
            "{err}"
        );
        // Nothing was written before the refusal.
        assert!(!dir.path().join(KEY_FILE).exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join(READ_TOKEN_FILE)).unwrap(),
            "keep me"
        );
        // A second init over a first one is refused too.
        let dir = tempfile::tempdir().unwrap();
        init_with(&opts(dir.path()), "/nonexistent").unwrap();
        assert!(matches!(
            init_with(&opts(dir.path()), "/nonexistent"),
            Err(InitError::Exists(_))
        ));
    }

    #[test]
    fn owner_gets_the_secrets_and_the_configs_group() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        let mut o = opts(&dir.path().join("etc"));
        o.owner = Some("nobody".into());
        let root = std::fs::metadata(&passwd).unwrap().uid() == 0;
        match init_with(&o, passwd.to_str().unwrap()) {
            Ok(out) => {
                assert!(root, "only root can give files away");
                for (path, mode, _) in &out.files {
                    let meta = std::fs::metadata(path).unwrap();
                    let want_uid = if *mode == 0o600 { 65534 } else { 0 };
                    assert_eq!((meta.uid(), meta.gid()), (want_uid, 65534), "{path:?}");
                }
                assert!(!out.instructions().contains("warning"));
            }
            Err(e) => {
                assert!(!root, "{e}");
                assert!(
                    e.to_string().starts_with("--owner nobody: cannot give"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_owner_or_a_bad_name_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\n").unwrap();
        let mut o = opts(&dir.path().join("etc"));
        o.owner = Some("nobody-here".into());
        let err = init_with(&o, passwd.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--owner nobody-here: no such user"),
            "{err}"
        );
        assert!(!dir.path().join("etc").join(KEY_FILE).exists());
        let mut o = opts(&dir.path().join("etc"));
        o.name = "a\"b".into();
        assert!(matches!(
            init_with(&o, passwd.to_str().unwrap()),
            Err(InitError::BadName(_))
        ));
    }
}
