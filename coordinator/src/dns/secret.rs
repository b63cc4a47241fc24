//! Where a secret comes from — a provider's API token, Route 53's secret access key, an SMTP
//! password, an ntfy token, a webhook's signing key: a file (mode 0600), an environment
//! variable, or a systemd credential (`LoadCredential=` → `$CREDENTIALS_DIRECTORY/<name>`).
//! Never from the command line, never inline in the config, never in a log line. Each secret
//! has its three keys ([`SecretKeys`]): `api_token_*` for the DNS providers, `password_*` for
//! SMTP, `token_*` for ntfy, `secret_*` for the webhook's HMAC key.

use std::path::PathBuf;

use super::SettingError;

/// The three config keys one secret can be given with, and what the secret is (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretKeys {
    pub file: &'static str,
    pub env: &'static str,
    pub credential: &'static str,
    /// `the API token`.
    pub what: &'static str,
}

/// The hosted providers' API token: `api_token_file`, `api_token_env`, `api_token_credential`.
pub const API_TOKEN: SecretKeys = SecretKeys {
    file: "api_token_file",
    env: "api_token_env",
    credential: "api_token_credential",
    what: "the API token",
};

/// An SMTP server's password: `password_file`, `password_env`, `password_credential`.
pub const SMTP_PASSWORD: SecretKeys = SecretKeys {
    file: "password_file",
    env: "password_env",
    credential: "password_credential",
    what: "the SMTP password",
};

/// An ntfy access token: `token_file`, `token_env`, `token_credential`.
pub const NTFY_TOKEN: SecretKeys = SecretKeys {
    file: "token_file",
    env: "token_env",
    credential: "token_credential",
    what: "the ntfy access token",
};

/// The webhook's HMAC signing key: `secret_file`, `secret_env`, `secret_credential`.
pub const WEBHOOK_SECRET: SecretKeys = SecretKeys {
    file: "secret_file",
    env: "secret_env",
    credential: "secret_credential",
    what: "the webhook's signing secret",
};

/// One of `<secret>_file`, `<secret>_env`, `<secret>_credential`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file readable by its owner only (`api_token_file`).
    File(PathBuf),
    /// The name of an environment variable of the coordinator's process (`api_token_env`).
    Env(String),
    /// The name of a systemd credential, read from `$CREDENTIALS_DIRECTORY/<name>`
    /// (`api_token_credential`).
    Credential(String),
}

impl SecretSource {
    /// Exactly one of the three keys of `keys`, or an error naming them.
    pub fn one_of(
        keys: SecretKeys,
        file: Option<&PathBuf>,
        env: Option<&String>,
        credential: Option<&String>,
    ) -> Result<SecretSource, SettingError> {
        let SecretKeys {
            file: f,
            env: e,
            credential: c,
            ..
        } = keys;
        match (file, env, credential) {
            (Some(p), None, None) => Ok(SecretSource::File(p.clone())),
            (None, Some(v), None) => Ok(SecretSource::Env(v.clone())),
            (None, None, Some(n)) => Ok(SecretSource::Credential(n.clone())),
            (None, None, None) => Err(SettingError::new(
                f,
                format!(
                    "missing; expected one of {f} (a mode 0600 file), {e} (an environment variable's name) or {c} (a systemd credential's name)"
                ),
            )),
            _ => Err(SettingError::new(
                f,
                format!("give only one of {f}, {e} and {c}"),
            )),
        }
    }

    /// Like [`SecretSource::one_of`] for a secret that may be left out: `Ok(None)` when none
    /// of the three keys is given.
    pub fn choose(
        keys: SecretKeys,
        file: Option<&PathBuf>,
        env: Option<&String>,
        credential: Option<&String>,
    ) -> Result<Option<SecretSource>, SettingError> {
        if file.is_none() && env.is_none() && credential.is_none() {
            return Ok(None);
        }
        SecretSource::one_of(keys, file, env, credential).map(Some)
    }

    /// The config key this source was given with, named in every error.
    pub fn key(&self) -> &'static str {
        self.key_in(API_TOKEN)
    }

    /// [`SecretSource::key`] among `keys`.
    pub fn key_in(&self, keys: SecretKeys) -> &'static str {
        match self {
            SecretSource::File(_) => keys.file,
            SecretSource::Env(_) => keys.env,
            SecretSource::Credential(_) => keys.credential,
        }
    }

    /// Where the token was read from, for messages (never the token itself):
    /// `api_token_file (/etc/quorate/token)`.
    pub fn describe(&self) -> String {
        self.describe_in(API_TOKEN)
    }

    /// [`SecretSource::describe`] among `keys`.
    pub fn describe_in(&self, keys: SecretKeys) -> String {
        let key = self.key_in(keys);
        match self {
            SecretSource::File(p) => format!("{key} ({})", p.display()),
            SecretSource::Env(v) => format!("{key} (${v})"),
            SecretSource::Credential(c) => format!("{key} ({c})"),
        }
    }

    /// Reads the API token, trimmed; empty is an error. Errors name the key.
    pub fn read(&self) -> Result<String, SettingError> {
        self.read_as(API_TOKEN, &|n| std::env::var(n).ok())
    }

    /// [`SecretSource::read_in`] with the process's credentials directory.
    #[cfg(test)]
    fn read_in(&self, credentials_dir: Option<std::ffi::OsString>) -> Result<String, SettingError> {
        let dir = credentials_dir.and_then(|d| d.into_string().ok());
        self.read_as(API_TOKEN, &|n| match n {
            "CREDENTIALS_DIRECTORY" => dir.clone(),
            _ => std::env::var(n).ok(),
        })
    }

    /// Reads the secret named by `keys`, trimmed; empty is an error. `env` is the process's
    /// environment (an argument so that tests can give one: `set_var` is unsafe, and unsafe
    /// code is forbidden): the variable of [`SecretSource::Env`], and `CREDENTIALS_DIRECTORY`.
    pub fn read_as(
        &self,
        keys: SecretKeys,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, SettingError> {
        let key = self.key_in(keys);
        let text = match self {
            SecretSource::File(path) => {
                return shared::keys::read_secret_file(path)
                    .map_err(|e| SettingError::new(key, e.to_string()));
            }
            SecretSource::Env(var) => env(var).ok_or_else(|| {
                SettingError::new(
                    key,
                    format!("environment variable {var} is not set (or not UTF-8); set it in the coordinator's environment (e.g. the unit's EnvironmentFile=)"),
                )
            })?,
            SecretSource::Credential(name) => {
                let path = credential_path(key, name, env)?;
                std::fs::read_to_string(&path).map_err(|e| {
                    SettingError::new(key, format!("credential {name:?} ({}): {e}", path.display()))
                })?
            }
        };
        let text = text.trim().to_string();
        if text.is_empty() {
            return Err(SettingError::new(
                key,
                format!(
                    "{} is empty; expected {}",
                    self.describe_in(keys),
                    keys.what
                ),
            ));
        }
        Ok(text)
    }
}

/// Where the systemd credential `name` is: `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=`),
/// or an error at `key` saying what is missing. Also used for the signing key
/// (`coordinator.key_credential`).
pub fn credential_path(
    key: &str,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, SettingError> {
    shared::keys::credential_path(name, env).map_err(|m| SettingError::new(key, m))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let e = SecretSource::Env("QUORATE_TEST_SURELY_UNSET_VARIABLE".into())
            .read()
            .unwrap_err();
        assert_eq!(e.key, "api_token_env");
        assert!(
            e.message.contains("QUORATE_TEST_SURELY_UNSET_VARIABLE"),
            "{e}"
        );
        let e = SecretSource::Credential("../x".into()).read().unwrap_err();
        assert_eq!(e.key, "api_token_credential");
        let e = SecretSource::File("/nonexistent/quorate-token".into())
            .read()
            .unwrap_err();
        assert_eq!(e.key, "api_token_file");
        let e = SecretSource::Credential("dns-token".into())
            .read_in(None)
            .unwrap_err();
        assert!(e.message.contains("CREDENTIALS_DIRECTORY"), "{e}");
    }

    #[test]
    fn each_source_reads_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dns-token"), "cred-token\n").unwrap();
        let got = SecretSource::Credential("dns-token".into())
            .read_in(Some(dir.path().as_os_str().to_owned()))
            .unwrap();
        assert_eq!(got, "cred-token");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let e = SecretSource::Credential("empty".into())
            .read_in(Some(dir.path().as_os_str().to_owned()))
            .unwrap_err();
        assert!(e.message.contains("is empty"), "{e}");
        // cargo sets CARGO_PKG_NAME for the tests it runs.
        assert_eq!(
            SecretSource::Env("CARGO_PKG_NAME".into()).read().unwrap(),
            "coordinator"
        );
        let file = dir.path().join("token");
        shared::keys::write_private_file(&file, b"file-token").unwrap();
        assert_eq!(SecretSource::File(file).read().unwrap(), "file-token");
    }
}
