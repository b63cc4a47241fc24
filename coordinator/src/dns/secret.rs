//! Where a secret comes from — a provider's API token, an SMTP password, a webhook's signing
//! key: a file (mode 0600), an environment variable, or a systemd credential
//! (`LoadCredential=` → `$CREDENTIALS_DIRECTORY/<name>`). Never from the command line, never
//! inline in the config, never in a log line. The keys are `<prefix>_file`, `<prefix>_env`
//! and `<prefix>_credential`: `api_token_*` for the DNS providers, `password_*` for SMTP.

use std::path::PathBuf;

use super::SettingError;

/// One of `api_token_file`, `api_token_env`, `api_token_credential`.
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
    /// The config key this source was given with, named in every error.
    pub fn key(&self) -> &'static str {
        match self {
            SecretSource::File(_) => "api_token_file",
            SecretSource::Env(_) => "api_token_env",
            SecretSource::Credential(_) => "api_token_credential",
        }
    }

    /// The key with another prefix: `password_file` for `prefix = "password"`.
    pub fn key_named(&self, prefix: &str) -> String {
        let suffix = match self {
            SecretSource::File(_) => "file",
            SecretSource::Env(_) => "env",
            SecretSource::Credential(_) => "credential",
        };
        format!("{prefix}_{suffix}")
    }

    /// Picks the source from the three optional keys `<prefix>_file`, `<prefix>_env`,
    /// `<prefix>_credential`: `Ok(None)` when none is set, an error when more than one is.
    pub fn choose(
        prefix: &str,
        file: Option<PathBuf>,
        env: Option<String>,
        credential: Option<String>,
    ) -> Result<Option<SecretSource>, SettingError> {
        match (file, env, credential) {
            (None, None, None) => Ok(None),
            (Some(f), None, None) => Ok(Some(SecretSource::File(f))),
            (None, Some(e), None) => Ok(Some(SecretSource::Env(e))),
            (None, None, Some(c)) => Ok(Some(SecretSource::Credential(c))),
            _ => Err(SettingError::new(
                prefix,
                format!("set only one of {prefix}_file, {prefix}_env and {prefix}_credential"),
            )),
        }
    }

    /// Where the token was read from, for messages (never the token itself):
    /// `api_token_file (/etc/quorate/token)`.
    pub fn describe(&self) -> String {
        self.describe_named("api_token")
    }

    fn describe_named(&self, prefix: &str) -> String {
        let key = self.key_named(prefix);
        match self {
            SecretSource::File(p) => format!("{key} ({})", p.display()),
            SecretSource::Env(v) => format!("{key} (${v})"),
            SecretSource::Credential(c) => format!("{key} ({c})"),
        }
    }

    /// Reads the secret, trimmed; empty is an error. Errors name the key.
    pub fn read(&self) -> Result<String, SettingError> {
        self.read_in("api_token", std::env::var_os("CREDENTIALS_DIRECTORY"))
    }

    /// [`SecretSource::read`] for a secret whose keys start with `prefix` (`password`).
    pub fn read_named(&self, prefix: &str) -> Result<String, SettingError> {
        self.read_in(prefix, std::env::var_os("CREDENTIALS_DIRECTORY"))
    }

    /// [`SecretSource::read`] with the credentials directory given (tests cannot set the
    /// process's environment: `set_var` is unsafe, and unsafe code is forbidden).
    fn read_in(
        &self,
        prefix: &str,
        credentials_dir: Option<std::ffi::OsString>,
    ) -> Result<String, SettingError> {
        let key = self.key_named(prefix);
        let key = key.as_str();
        let text = match self {
            SecretSource::File(path) => {
                return shared::keys::read_secret_file(path)
                    .map_err(|e| SettingError::new(key, e.to_string()));
            }
            SecretSource::Env(var) => std::env::var(var).map_err(|e| {
                SettingError::new(
                    key,
                    format!("environment variable {var}: {e}; set it in the coordinator's environment (e.g. the unit's EnvironmentFile=)"),
                )
            })?,
            SecretSource::Credential(name) => {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(SettingError::new(
                        key,
                        format!("expected a credential name like \"dns-token\" (no '/'), got {name:?}"),
                    ));
                }
                let dir = credentials_dir.ok_or_else(|| {
                    SettingError::new(
                        key,
                        format!("credential {name:?}: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:<file>"),
                    )
                })?;
                let path = PathBuf::from(dir).join(name);
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
                    "{} is empty; expected the secret",
                    self.describe_named(prefix)
                ),
            ));
        }
        Ok(text)
    }
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
            .read_in("api_token", None)
            .unwrap_err();
        assert!(e.message.contains("CREDENTIALS_DIRECTORY"), "{e}");
    }

    #[test]
    fn each_source_reads_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dns-token"), "cred-token\n").unwrap();
        let got = SecretSource::Credential("dns-token".into())
            .read_in("api_token", Some(dir.path().as_os_str().to_owned()))
            .unwrap();
        assert_eq!(got, "cred-token");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let e = SecretSource::Credential("empty".into())
            .read_in("api_token", Some(dir.path().as_os_str().to_owned()))
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
