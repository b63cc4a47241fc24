//! The `[coordinator]` and `[api]` tables: the signing key, the history file, the default
//! interval, retention, extra probe CAs, the API's address, its bearer tokens (admin,
//! read-only, and the optional one `/metrics` asks for; each a file or a systemd credential)
//! and its optional TLS certificate and key (HTTPS for the API and the dashboard).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde::Deserialize;
use shared::config::{Diagnostics, resolve};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCoordinator {
    /// The coordinator's ed25519 signing key (PKCS#8 PEM, mode 0600).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Instead of `key_file`: the name of a systemd credential holding the key
    /// (`LoadCredential=NAME:/etc/quorate/coordinator.key` → `$CREDENTIALS_DIRECTORY/NAME`).
    #[serde(default)]
    pub key_credential: Option<String>,
    /// The SQLite history file.
    pub database: PathBuf,
    /// Default probe interval for services ("1s").
    #[serde(default = "default_interval")]
    pub interval: String,
    /// How long rounds that changed nothing are kept ("90d").
    #[serde(default = "default_retention")]
    pub retention: String,
    /// Extra CA certificates (PEM) trusted by HTTPS probes of primary and backup.
    #[serde(default)]
    pub probe_ca_file: Option<PathBuf>,
    /// Public keys this coordinator signed with before a rotation: the requests and
    /// checkpoints they signed still verify (docs/history.md §7).
    #[serde(default)]
    pub retired_keys: Vec<super::witness::RawRetiredKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    pub listen: String,
    /// File holding the admin bearer token (mode 0600): everything, overrides and failback
    /// included. Or `token_credential`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Instead of `token_file`: the name of a systemd credential holding the admin token.
    #[serde(default)]
    pub token_credential: Option<String>,
    /// File holding a read-only bearer token (mode 0600): every `GET` of the API, no action.
    /// For `status` on another host, a dashboard viewer, a script.
    #[serde(default)]
    pub read_token_file: Option<PathBuf>,
    /// Instead of `read_token_file`: a systemd credential's name.
    #[serde(default)]
    pub read_token_credential: Option<String>,
    /// File holding a token that grants `/metrics` only (mode 0600), for a Prometheus
    /// scraper that must not hold the API token. Unset: `/metrics` is open, as before.
    #[serde(default)]
    pub metrics_token_file: Option<PathBuf>,
    /// Instead of `metrics_token_file`: a systemd credential's name.
    #[serde(default)]
    pub metrics_token_credential: Option<String>,
    /// The API's (and dashboard's) certificate chain, PEM: with `tls_key_file` (or
    /// `tls_key_credential`) the listener speaks HTTPS only.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key, PEM (mode 0600).
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Instead of `tls_key_file`: a systemd credential's name.
    #[serde(default)]
    pub tls_key_credential: Option<String>,
    /// For the CLI (`status`, `override`, ...): the CA that signed `tls_cert_file`, when the
    /// certificate is not self-signed. Unset: the CLI trusts `tls_cert_file` itself.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The API's HTTPS: the certificate and key as read, and the server config built from them.
#[derive(Clone)]
pub struct ApiTls {
    /// `api.tls_cert_file`, resolved.
    pub cert_file: PathBuf,
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// The leaf certificate's `notAfter`, if it could be read (`check` warns before it).
    pub not_after: Option<std::time::SystemTime>,
    /// SHA-256 of the certificate chain and key as read: what a reload compares.
    fingerprint: [u8; 32],
}

impl PartialEq for ApiTls {
    fn eq(&self, other: &Self) -> bool {
        self.cert_file == other.cert_file && self.fingerprint == other.fingerprint
    }
}

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ApiTls")
            .field("cert_file", &self.cert_file)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn default_interval() -> String {
    "1s".into()
}
fn default_retention() -> String {
    "90d".into()
}

/// The two tables validated; `None` where a value was wrong (and recorded).
pub(super) struct Top {
    pub signing_key: Option<SigningKey>,
    pub interval: Option<Duration>,
    pub retention: Option<Duration>,
    pub database: PathBuf,
    pub probe_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    pub api_listen: Option<SocketAddr>,
    pub api_token: Option<String>,
    /// `Some(None)`: no read-only token; `None`: its file was wrong (recorded).
    pub read_token: Option<Option<String>>,
    /// `Some(None)`: `/metrics` is open; `None`: the metrics token file was wrong (recorded).
    pub metrics_token: Option<Option<String>>,
    /// `Some(None)`: plain HTTP; `None`: the certificate or key was wrong (recorded).
    pub api_tls: Option<Option<ApiTls>>,
}

/// Minimum length of the API's bearer token.
const MIN_TOKEN_LEN: usize = 16;

pub(super) fn validate(c: &RawCoordinator, api: &RawApi, base: &Path, e: &mut Diagnostics) -> Top {
    validate_in(c, api, base, &|n| std::env::var(n).ok(), e)
}

/// [`validate`] with the process's environment as an argument (`CREDENTIALS_DIRECTORY`): the
/// tests give their own rather than change the real one, which other tests read at once.
fn validate_in(
    c: &RawCoordinator,
    api: &RawApi,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Diagnostics,
) -> Top {
    let signing_key = signing_key(c, base, env, e);
    let interval = e.duration("coordinator.interval", &c.interval);
    let retention = e.duration("coordinator.retention", &c.retention);
    let mut probe_roots = Vec::new();
    if let Some(ca) = &c.probe_ca_file {
        match shared::tls::read_cert_bundle(&resolve(base, ca)) {
            Ok(certs) => probe_roots = certs,
            Err(m) => e.push("coordinator.probe_ca_file", m),
        }
    }

    let api_listen = api.listen.parse::<SocketAddr>().ok();
    if api_listen.is_none() {
        e.expected(
            "api.listen",
            "an address like \"127.0.0.1:8080\"",
            &api.listen,
        );
    }
    let api_token = match secret_path(
        ("api.token_file", api.token_file.as_ref()),
        ("api.token_credential", api.token_credential.as_ref()),
        base,
        env,
        e,
    ) {
        Some(Some((key, path))) => read_token(&path, key, e),
        Some(None) => {
            e.push(
                "api.token_file",
                "missing; expected token_file (a mode 0600 file: quorate-coordinator init writes one) or token_credential (a systemd credential's name)",
            );
            None
        }
        None => None,
    };
    let optional_token = |file: (&'static str, Option<&PathBuf>),
                          credential: (&'static str, Option<&String>),
                          e: &mut Diagnostics| {
        match secret_path(file, credential, base, env, e) {
            Some(Some((key, path))) => read_token(&path, key, e).map(Some),
            Some(None) => Some(None),
            None => None,
        }
    };
    let read_only = optional_token(
        ("api.read_token_file", api.read_token_file.as_ref()),
        (
            "api.read_token_credential",
            api.read_token_credential.as_ref(),
        ),
        e,
    );
    if let (Some(admin), Some(Some(read))) = (&api_token, &read_only)
        && admin == read
    {
        e.push(
            "api.read_token_file",
            "holds the same token as api.token_file: a read-only token must differ from the admin token (head -c 32 /dev/urandom | base64 > read.token)",
        );
    }
    let metrics_token = optional_token(
        ("api.metrics_token_file", api.metrics_token_file.as_ref()),
        (
            "api.metrics_token_credential",
            api.metrics_token_credential.as_ref(),
        ),
        e,
    );
    let api_tls = api_tls(api, base, env, e);
    Top {
        signing_key,
        interval,
        retention,
        database: resolve(base, &c.database),
        probe_roots,
        api_listen,
        api_token,
        read_token: read_only,
        metrics_token,
        api_tls,
    }
}

/// [`api_tls`] for `tls_cert_file = cert`, `tls_key_file = key`.
#[cfg(test)]
pub(super) fn api_tls_for_tests(cert: &Path, key: &Path) -> Result<ApiTls, String> {
    let api = RawApi {
        listen: "127.0.0.1:0".into(),
        token_file: None,
        token_credential: None,
        read_token_file: None,
        read_token_credential: None,
        metrics_token_file: None,
        metrics_token_credential: None,
        tls_cert_file: Some(cert.to_owned()),
        tls_key_file: Some(key.to_owned()),
        tls_key_credential: None,
        ca_file: None,
    };
    let mut d = Diagnostics::new(Path::new("test.toml"));
    match api_tls(&api, Path::new("/"), &|_| None, &mut d) {
        Some(Some(t)) => Ok(t),
        _ => Err(d.to_string()),
    }
}

/// Where a secret given as `<x>_file` or `<x>_credential` is: `Some(Some((key, path)))` with
/// the key it was given by, `Some(None)` when neither is set, `None` when both are or the
/// credential cannot be found (recorded).
fn secret_path(
    (file_key, file): (&'static str, Option<&PathBuf>),
    (credential_key, credential): (&'static str, Option<&String>),
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Diagnostics,
) -> Option<Option<(&'static str, PathBuf)>> {
    match (file, credential) {
        (None, None) => Some(None),
        (Some(f), None) => Some(Some((file_key, resolve(base, f)))),
        (None, Some(name)) => {
            match crate::dns::secret::credential_path(credential_key, name, env) {
                Ok(p) => Some(Some((credential_key, p))),
                Err(err) => {
                    e.push(credential_key, err.message);
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            e.push(
                file_key,
                format!("give only one of {file_key} and {credential_key}"),
            );
            None
        }
    }
}

/// `[api] tls_cert_file` with `tls_key_file` or `tls_key_credential`: both or neither.
fn api_tls(
    api: &RawApi,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Diagnostics,
) -> Option<Option<ApiTls>> {
    let key = secret_path(
        ("api.tls_key_file", api.tls_key_file.as_ref()),
        ("api.tls_key_credential", api.tls_key_credential.as_ref()),
        base,
        env,
        e,
    );
    if api.ca_file.is_some() && api.tls_cert_file.is_none() {
        e.push(
            "api.ca_file",
            "is for the CLI talking HTTPS to the API: set tls_cert_file and tls_key_file too, or remove ca_file",
        );
    }
    let (cert_file, (key_name, key_path)) = match (&api.tls_cert_file, key?) {
        (None, None) => return Some(None),
        (Some(c), Some(k)) => (resolve(base, c), k),
        (Some(_), None) => {
            e.push(
                "api.tls_key_file",
                "missing: tls_cert_file is set, so the API's private key is needed too (tls_key_file, a mode 0600 PEM file, or tls_key_credential); or remove tls_cert_file for plain HTTP",
            );
            return None;
        }
        (None, Some((k, _))) => {
            e.push(
                "api.tls_cert_file",
                format!("missing: {k} is set, so the API's certificate (PEM) is needed too; or remove {k} for plain HTTP"),
            );
            return None;
        }
    };
    if let Some(ca) = &api.ca_file
        && let Err(err) = shared::tls::read_cert_bundle(&resolve(base, ca))
    {
        e.push("api.ca_file", err);
    }
    let cert_pem = match std::fs::read(&cert_file) {
        Ok(p) => p,
        Err(err) => {
            e.push(
                "api.tls_cert_file",
                format!("{}: {err}", cert_file.display()),
            );
            return None;
        }
    };
    let key_pem = match shared::keys::read_secret_file(&key_path) {
        Ok(k) => k,
        Err(err) => {
            e.push(key_name, err);
            return None;
        }
    };
    let server = match shared::tls::server_config(&cert_pem, key_pem.as_bytes(), &cert_file) {
        Ok(s) => s,
        Err(err) => {
            e.push("api.tls_cert_file", err);
            return None;
        }
    };
    let not_after = shared::tls::parse_cert_pem(&cert_pem, &cert_file)
        .ok()
        .and_then(|c| shared::tls::not_after(&c.der));
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(&cert_pem);
    h.update(key_pem.as_bytes());
    Some(Some(ApiTls {
        cert_file,
        server,
        not_after,
        fingerprint: h.finalize().into(),
    }))
}

/// The signing key from `key_file` or `key_credential` (exactly one); `env` is the process's
/// environment (`CREDENTIALS_DIRECTORY`), an argument for the tests.
fn signing_key(
    c: &RawCoordinator,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Diagnostics,
) -> Option<SigningKey> {
    let (key, path) = match (&c.key_file, &c.key_credential) {
        (Some(f), None) => ("coordinator.key_file", resolve(base, f)),
        (None, Some(name)) => {
            let key = "coordinator.key_credential";
            match crate::dns::secret::credential_path(key, name, env) {
                Ok(p) => (key, p),
                Err(err) => {
                    e.push(key, err.message);
                    return None;
                }
            }
        }
        (None, None) => {
            e.push(
                "coordinator.key_file",
                "missing; expected key_file (a mode 0600 file: quorate-coordinator init writes one) or key_credential (a systemd credential's name)",
            );
            return None;
        }
        (Some(_), Some(_)) => {
            e.push(
                "coordinator.key_file",
                "give only one of key_file and key_credential",
            );
            return None;
        }
    };
    match shared::keys::load_signing_key(&path) {
        Ok(k) => Some(k),
        Err(err) => {
            e.push(key, err);
            None
        }
    }
}

/// A bearer token from a secret file; `None` (recorded at `key`) unless it is long enough.
fn read_token(path: &Path, key: &str, e: &mut Diagnostics) -> Option<String> {
    match shared::keys::read_secret_file(path) {
        Ok(t) if t.len() >= MIN_TOKEN_LEN => Some(t),
        Ok(_) => {
            e.push(key, "the token must be at least 16 characters");
            None
        }
        Err(err) => {
            e.push(key, err);
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Validates `[api]` with the given extra line, in a folder with a key and an API token.
    fn api(extra: &str, files: &[(&str, &str)]) -> (Top, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        api_in(dir.path(), extra, files, &|_| None)
    }

    /// [`api`] in `dir`, with `env` as the environment; `[api]` has `token_file` unless
    /// `extra` gives `token_credential`.
    fn api_in(
        dir: &Path,
        extra: &str,
        files: &[(&str, &str)],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Top, Vec<String>) {
        if !dir.join("c.key").exists() {
            shared::keys::write_signing_key(&dir.join("c.key"), &shared::keys::generate()).unwrap();
        }
        for (name, text) in [("api.token", "api-token-0123456789")].iter().chain(files) {
            let _ = std::fs::remove_file(dir.join(name));
            shared::keys::write_private_file(&dir.join(name), text.as_bytes()).unwrap();
        }
        let c: RawCoordinator =
            toml::from_str("key_file = \"c.key\"\ndatabase = \"h.db\"\n").unwrap();
        let token = if extra.starts_with("token_credential") || extra.contains("\ntoken_credential")
        {
            ""
        } else {
            "token_file = \"api.token\"\n"
        };
        let a: RawApi =
            toml::from_str(&format!("listen = \"127.0.0.1:8080\"\n{token}{extra}")).unwrap();
        let mut d = Diagnostics::new(Path::new("c.toml"));
        let top = validate_in(&c, &a, dir, env, &mut d);
        (
            top,
            d.iter()
                .map(|x| format!("{}: {}", x.key, x.message))
                .collect(),
        )
    }

    #[test]
    fn the_signing_key_comes_from_a_file_or_a_credential() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let key = shared::keys::generate();
        shared::keys::write_signing_key(&creds.join("coordinator.key"), &key).unwrap();
        let raw = |text: &str| -> RawCoordinator {
            toml::from_str(&format!("database = \"h.db\"\n{text}")).unwrap()
        };
        let dir_env = creds.to_string_lossy().into_owned();
        let env = move |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| dir_env.clone());
        let load = |c: &RawCoordinator, env: &dyn Fn(&str) -> Option<String>| {
            let mut d = Diagnostics::new(Path::new("c.toml"));
            let k = signing_key(c, dir.path(), env, &mut d);
            let errors: Vec<String> = d
                .iter()
                .map(|x| format!("{}: {}", x.key, x.message))
                .collect();
            (k, errors)
        };
        let (k, errors) = load(&raw("key_credential = \"coordinator.key\""), &env);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(k.unwrap().verifying_key(), key.verifying_key());
        let (k, errors) = load(&raw("key_file = \"creds/coordinator.key\""), &env);
        assert!(k.is_some() && errors.is_empty(), "{errors:?}");
        let (_, errors) = load(&raw("key_credential = \"coordinator.key\""), &|_| None);
        assert!(
            errors[0].starts_with("coordinator.key_credential: credential \"coordinator.key\": $CREDENTIALS_DIRECTORY is not set"),
            "{errors:?}"
        );
        let (_, errors) = load(&raw(""), &env);
        assert!(
            errors[0].starts_with("coordinator.key_file: missing; expected key_file"),
            "{errors:?}"
        );
        let (_, errors) = load(
            &raw("key_file = \"k\"\nkey_credential = \"coordinator.key\""),
            &env,
        );
        assert_eq!(
            errors,
            ["coordinator.key_file: give only one of key_file and key_credential"]
        );
    }

    #[test]
    fn metrics_stay_open_unless_a_metrics_token_file_is_set() {
        let (top, errors) = api("", &[]);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(top.metrics_token, Some(None));
        let (top, errors) = api(
            "metrics_token_file = \"metrics.token\"\n",
            &[("metrics.token", "metrics-token-0123456789\n")],
        );
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(
            top.metrics_token,
            Some(Some("metrics-token-0123456789".into()))
        );
    }

    #[test]
    fn a_metrics_token_file_is_checked_like_the_api_token() {
        let (top, errors) = api(
            "metrics_token_file = \"metrics.token\"\n",
            &[("metrics.token", "short")],
        );
        assert_eq!(top.metrics_token, None);
        assert_eq!(
            errors,
            ["api.metrics_token_file: the token must be at least 16 characters"]
        );
        let (top, errors) = api("metrics_token_file = \"missing.token\"\n", &[]);
        assert_eq!(top.metrics_token, None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("api.metrics_token_file: ")
                && errors[0].contains("missing.token"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_read_only_token_is_optional_checked_and_not_the_admin_token() {
        let (top, errors) = api("", &[]);
        assert!(errors.is_empty());
        assert_eq!(top.read_token, Some(None));
        let (top, errors) = api(
            "read_token_file = \"read.token\"\n",
            &[("read.token", "read-token-0123456789\n")],
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(top.read_token, Some(Some("read-token-0123456789".into())));
        let (_, errors) = api(
            "read_token_file = \"read.token\"\n",
            &[("read.token", "short")],
        );
        assert_eq!(
            errors,
            ["api.read_token_file: the token must be at least 16 characters"]
        );
        let (_, errors) = api(
            "read_token_file = \"read.token\"\n",
            &[("read.token", "api-token-0123456789")],
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("api.read_token_file: holds the same token as api.token_file"),
            "{errors:?}"
        );
    }

    #[test]
    fn api_tls_takes_a_certificate_and_its_key_both_or_neither() {
        let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        let (_, other_key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        let files = [("api.crt", cert.as_str()), ("api.key", key.as_str())];
        let (top, errors) = api("", &files);
        assert_eq!(errors, Vec::<String>::new());
        assert!(matches!(top.api_tls, Some(None)), "plain HTTP by default");
        let (top, errors) = api(
            "tls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\n",
            &files,
        );
        assert_eq!(errors, Vec::<String>::new());
        let tls = top.api_tls.unwrap().unwrap();
        assert!(tls.cert_file.ends_with("api.crt"));
        assert!(tls.not_after.is_some());
        assert!(!format!("{tls:?}").contains("PRIVATE"), "{tls:?}");
        // (extra lines, the one error expected, as a prefix)
        let table: &[(&str, &str)] = &[
            (
                "tls_cert_file = \"api.crt\"\n",
                "api.tls_key_file: missing: tls_cert_file is set, so the API's private key is needed too",
            ),
            (
                "tls_key_file = \"api.key\"\n",
                "api.tls_cert_file: missing: api.tls_key_file is set, so the API's certificate (PEM) is needed too",
            ),
            (
                "tls_cert_file = \"api.crt\"\ntls_key_file = \"other.key\"\n",
                "api.tls_cert_file: ",
            ),
            (
                "tls_cert_file = \"missing.crt\"\ntls_key_file = \"api.key\"\n",
                "api.tls_cert_file: ",
            ),
            (
                "tls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\ntls_key_credential = \"k\"\n",
                "api.tls_key_file: give only one of api.tls_key_file and api.tls_key_credential",
            ),
            (
                "ca_file = \"api.crt\"\n",
                "api.ca_file: is for the CLI talking HTTPS to the API",
            ),
        ];
        let files = [
            ("api.crt", cert.as_str()),
            ("api.key", key.as_str()),
            ("other.key", other_key.as_str()),
        ];
        for (extra, want) in table {
            let (top, errors) = api(extra, &files);
            assert_eq!(errors.len(), 1, "{extra}: {errors:?}");
            assert!(errors[0].starts_with(want), "{extra}: {errors:?}");
            if !extra.starts_with("ca_file") {
                assert!(top.api_tls.is_none(), "{extra}");
            }
        }
        let (_, errors) = api(
            "tls_cert_file = \"api.crt\"\ntls_key_file = \"other.key\"\n",
            &files,
        );
        assert!(errors[0].contains("do not go together"), "{errors:?}");
    }

    #[test]
    fn the_api_key_must_not_be_readable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.path().join("api.crt"), &cert).unwrap();
        std::fs::write(dir.path().join("api.key"), &key).unwrap();
        std::fs::set_permissions(
            dir.path().join("api.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let (top, errors) = api_in(
            dir.path(),
            "tls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\n",
            &[],
            &|_| None,
        );
        assert!(top.api_tls.is_none());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("api.tls_key_file: ") && errors[0].contains("0644"),
            "{errors:?}"
        );
    }

    #[test]
    fn tokens_and_the_tls_key_come_from_systemd_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.path().join("api.crt"), &cert).unwrap();
        for (name, text) in [
            ("admin", "cred-admin-0123456789"),
            ("read", "cred-read-0123456789"),
            ("metrics", "cred-metrics-0123456789"),
            ("tls", key.as_str()),
        ] {
            shared::keys::write_private_file(&creds.join(name), text.as_bytes()).unwrap();
        }
        let creds_dir = creds.to_string_lossy().into_owned();
        let env = move |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| creds_dir.clone());
        let all = "token_credential = \"admin\"\nread_token_credential = \"read\"\nmetrics_token_credential = \"metrics\"\ntls_cert_file = \"api.crt\"\ntls_key_credential = \"tls\"\n";
        let (top, errors) = api_in(dir.path(), all, &[], &env);
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(top.api_token.as_deref(), Some("cred-admin-0123456789"));
        assert_eq!(top.read_token, Some(Some("cred-read-0123456789".into())));
        assert_eq!(
            top.metrics_token,
            Some(Some("cred-metrics-0123456789".into()))
        );
        assert!(matches!(top.api_tls, Some(Some(_))));

        // Not under systemd: every credential says so, by its key.
        let (_, errors) = api_in(dir.path(), all, &[], &|_| None);
        assert_eq!(errors.len(), 4, "{errors:?}");
        for (e, key) in errors.iter().zip([
            "api.token_credential",
            "api.read_token_credential",
            "api.metrics_token_credential",
            "api.tls_key_credential",
        ]) {
            assert!(
                e.starts_with(&format!("{key}: credential "))
                    && e.contains("$CREDENTIALS_DIRECTORY is not set"),
                "{errors:?}"
            );
        }
        // The unit does not load one of them.
        let (_, errors) = api_in(dir.path(), "token_credential = \"nope\"\n", &[], &env);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("api.token_credential: credential \"nope\": ")
                && errors[0]
                    .ends_with("does not exist; add LoadCredential=nope:<file> to the unit"),
            "{errors:?}"
        );
        // Both a file and a credential for one token.
        let (_, errors) = api_in(
            dir.path(),
            "read_token_file = \"r\"\nread_token_credential = \"read\"\n",
            &[],
            &env,
        );
        assert_eq!(
            errors,
            [
                "api.read_token_file: give only one of api.read_token_file and api.read_token_credential"
            ]
        );
    }
}
