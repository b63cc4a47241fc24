//! Where a provider backend's secret comes from: a file (mode 0600), an environment variable, or
//! a systemd credential (`LoadCredential=` → `$CREDENTIALS_DIRECTORY/<name>`). Never the command
//! line, never a log line: errors name the key and the place, not the value.

use std::path::{Path, PathBuf};

use super::SettingError;

/// One source of a secret, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding only the secret (checked like every secret file: not readable by
    /// group or others).
    File(PathBuf),
    /// The name of an environment variable holding the secret.
    Env(String),
    /// The name of a systemd credential, read from `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

impl SecretSource {
    /// The one source among a backend's `<prefix>_file`, `<prefix>_env` and
    /// `<prefix>_credential` keys; errors name the keys when none or several are given.
    pub fn from_keys(
        prefix: &str,
        file: Option<&Path>,
        env: Option<&str>,
        credential: Option<&str>,
    ) -> Result<SecretSource, SettingError> {
        let given = [file.is_some(), env.is_some(), credential.is_some()];
        match given.iter().filter(|g| **g).count() {
            1 => {}
            0 => {
                return Err(SettingError::new(
                    format!("{prefix}_file"),
                    format!(
                        "missing; expected one of {prefix}_file (a 0600 file), {prefix}_env (an environment variable's name) or {prefix}_credential (a systemd credential's name)"
                    ),
                ));
            }
            _ => {
                return Err(SettingError::new(
                    format!("{prefix}_file"),
                    format!("give only one of {prefix}_file, {prefix}_env and {prefix}_credential"),
                ));
            }
        }
        if let Some(f) = file {
            return Ok(SecretSource::File(f.to_path_buf()));
        }
        if let Some(name) = env {
            return Ok(SecretSource::Env(name.to_string()));
        }
        match credential {
            Some(name) if !name.is_empty() && !name.contains('/') && name != ".." => {
                Ok(SecretSource::Credential(name.to_string()))
            }
            other => Err(SettingError::new(
                format!("{prefix}_credential"),
                format!(
                    "expected a credential name like \"cloudflare-token\" (no '/'), got {:?}",
                    other.unwrap_or_default()
                ),
            )),
        }
    }

    /// Reads the secret (trimmed); `key` names the setting in errors (`api_token_env`).
    pub fn read(&self, key: &str) -> Result<String, SettingError> {
        self.read_with(key, |name| std::env::var(name).ok())
    }

    /// [`SecretSource::read`] with the environment given (tests).
    pub fn read_with(
        &self,
        key: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<String, SettingError> {
        match self {
            SecretSource::File(path) => shared::keys::read_secret_file(path)
                .map_err(|e| SettingError::new(key, e.to_string())),
            SecretSource::Env(name) => match env(name).map(|v| v.trim().to_string()) {
                Some(v) if !v.is_empty() => Ok(v),
                Some(_) => Err(SettingError::new(
                    key,
                    format!("the environment variable {name} is empty"),
                )),
                None => Err(SettingError::new(
                    key,
                    format!("the environment variable {name} is not set (or not UTF-8)"),
                )),
            },
            SecretSource::Credential(name) => {
                let Some(dir) = env("CREDENTIALS_DIRECTORY") else {
                    return Err(SettingError::new(
                        key,
                        format!(
                            "CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential={name}:<file> (or SetCredentialEncrypted=)"
                        ),
                    ));
                };
                shared::keys::read_secret_file(&Path::new(&dir).join(name))
                    .map_err(|e| SettingError::new(key, format!("systemd credential {name}: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_source_exactly() {
        let e = SecretSource::from_keys("api_token", None, None, None).unwrap_err();
        assert_eq!(e.key, "api_token_file");
        assert!(e.message.contains("api_token_env"), "{e}");
        let e = SecretSource::from_keys("api_token", Some(Path::new("/t")), Some("T"), None)
            .unwrap_err();
        assert!(e.message.contains("only one"), "{e}");
        let e = SecretSource::from_keys("api_token", None, None, Some("../x")).unwrap_err();
        assert_eq!(e.key, "api_token_credential");
        assert_eq!(
            SecretSource::from_keys("api_token", None, Some("CF_TOKEN"), None).unwrap(),
            SecretSource::Env("CF_TOKEN".into())
        );
    }

    #[test]
    fn env_and_credential_and_file() {
        let dir = tempfile::tempdir().unwrap();
        shared::keys::write_private_file(&dir.path().join("cf"), b"tok-from-cred\n").unwrap();
        let d = dir.path().display().to_string();
        let env = |name: &str| match name {
            "CF_TOKEN" => Some(" tok-from-env ".to_string()),
            "EMPTY" => Some(String::new()),
            "CREDENTIALS_DIRECTORY" => Some(d.clone()),
            _ => None,
        };
        let read = |s: SecretSource| s.read_with("k", env);
        assert_eq!(
            read(SecretSource::Env("CF_TOKEN".into())).unwrap(),
            "tok-from-env"
        );
        let e = read(SecretSource::Env("NOPE".into())).unwrap_err();
        assert_eq!(e.key, "k");
        assert!(e.message.contains("NOPE is not set"), "{e}");
        assert!(read(SecretSource::Env("EMPTY".into())).is_err());
        assert_eq!(
            read(SecretSource::Credential("cf".into())).unwrap(),
            "tok-from-cred"
        );
        let e = read(SecretSource::Credential("other".into())).unwrap_err();
        assert!(e.message.contains("systemd credential other"), "{e}");
        let e = SecretSource::Credential("cf".into())
            .read_with("k", |_| None)
            .unwrap_err();
        assert!(e.message.contains("CREDENTIALS_DIRECTORY"), "{e}");
        assert_eq!(
            read(SecretSource::File(dir.path().join("cf"))).unwrap(),
            "tok-from-cred"
        );
    }
}
