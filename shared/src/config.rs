//! The config kit both binaries use: [`Diagnostics`] (every error names the file, the key
//! path and what was expected), one [`Duration`] parser ("500ms", "2s", "90d") and
//! [`resolve`], which makes a path in a config file relative to the file's folder.
//!
//! Validation collects every problem it finds rather than stopping at the first, so `check`
//! shows them all at once; a [`Diagnostics`] with no entries means the config is valid.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// One problem in a config file: where (file, key path such as `service "www".quorum`),
/// what was expected, and the message. Displays as `FILE: KEY: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// Dotted key path; empty for problems with the whole file (unreadable, not TOML).
    pub key: String,
    /// What a valid value looks like, when the message is of the "expected …, got …" kind.
    pub expected: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Every problem found in one config file, in the order found. Displays one per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    file: PathBuf,
    list: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.list.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostics {
    /// An empty collector for the file at `file`.
    pub fn new(file: &Path) -> Diagnostics {
        Diagnostics {
            file: file.to_owned(),
            list: Vec::new(),
        }
    }

    /// One problem with the whole file (`key` empty), e.g. it cannot be read or is not TOML.
    pub fn whole_file(file: &Path, message: impl fmt::Display) -> Diagnostics {
        let mut d = Diagnostics::new(file);
        d.push("", message.to_string().trim_end());
        d
    }

    /// The file the diagnostics are about.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Records a problem at `key`.
    pub fn push(&mut self, key: impl Into<String>, message: impl fmt::Display) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            key: key.into(),
            expected: None,
            message: message.to_string(),
        });
    }

    /// Records "expected `expected`, got `got`" at `key`.
    pub fn expected(&mut self, key: impl Into<String>, expected: &str, got: impl fmt::Debug) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            key: key.into(),
            expected: Some(expected.to_string()),
            message: format!("expected {expected}, got {got:?}"),
        });
    }

    /// Records an [`Invalid`] value at `key`.
    pub fn invalid(&mut self, key: impl Into<String>, invalid: Invalid) {
        self.list.push(Diagnostic {
            file: self.file.clone(),
            key: key.into(),
            message: invalid.to_string(),
            expected: Some(invalid.expected),
        });
    }

    /// Parses a duration at `key`, recording the problem when it is not one.
    pub fn duration(&mut self, key: impl Into<String>, text: &str) -> Option<std::time::Duration> {
        match text.parse::<Duration>() {
            Ok(d) => Some(d.get()),
            Err(e) => {
                self.list.push(Diagnostic {
                    file: self.file.clone(),
                    key: key.into(),
                    expected: Some(DURATION_EXPECTED.to_string()),
                    message: e.to_string(),
                });
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.list.iter()
    }

    /// `Ok(value)` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Diagnostics> {
        if !self.is_empty() {
            return Err(self);
        }
        match value() {
            Some(v) => Ok(v),
            None => {
                let mut d = self;
                d.push(
                    "",
                    "validation found no error but could not build the config (a bug: please report it)",
                );
                Err(d)
            }
        }
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

/// A value that is not what its key takes, for parsers that do not know the key (the caller
/// records it with [`Diagnostics::invalid`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, got {got:?}")]
pub struct Invalid {
    /// What a valid value looks like: `a network like "10.0.0.0/8"`.
    pub expected: String,
    pub got: String,
}

impl Invalid {
    pub fn new(expected: impl Into<String>, got: impl Into<String>) -> Invalid {
        Invalid {
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// What every duration in a config looks like.
const DURATION_EXPECTED: &str = "a duration like \"500ms\", \"2s\" or \"90d\"";

/// A duration written the way humans do ("500ms", "2s", "1h 30m", "90d"): the one parser of
/// every duration in Quorate's configs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// A text that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {DURATION_EXPECTED}, got {text:?} ({reason})")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> std::time::Duration {
        d.0
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(text: &str) -> Result<Duration, DurationError> {
        humantime::parse_duration(text.trim())
            .map(Duration)
            .map_err(|e| DurationError {
                text: text.to_string(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// For `#[serde(deserialize_with = "shared::config::positive_duration")]` on a
/// `std::time::Duration` field: the [`Duration`] syntax, and zero refused.
pub fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let dur = Duration::deserialize(d)?.get();
    if dur.is_zero() {
        return Err(serde::de::Error::custom("expected a duration above zero"));
    }
    Ok(dur)
}

/// The folder relative paths in the config file at `file` are resolved against.
pub fn base_dir(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` as written in a config file whose folder is `base_dir`: absolute paths stay as
/// they are, relative ones are relative to that folder (never to the working directory,
/// which under systemd is `/`).
pub fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse_one_way() {
        for (text, ms) in [
            ("500ms", 500),
            ("2s", 2000),
            ("90d", 90 * 86_400_000),
            (" 1m ", 60_000),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.get(), std::time::Duration::from_millis(ms), "{text}");
        }
        let err = "soon".parse::<Duration>().unwrap_err().to_string();
        assert!(err.starts_with("expected a duration like"), "{err}");
        assert!(err.contains("\"soon\""), "{err}");
    }

    #[test]
    fn diagnostics_render_file_key_message() {
        let mut d = Diagnostics::new(Path::new("/etc/q.toml"));
        assert!(d.duration("coordinator.interval", "1s").is_some());
        assert!(d.is_empty());
        d.expected("api.listen", "an address like \"127.0.0.1:8080\"", "x");
        d.duration("service \"www\".interval", "soon");
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "/etc/q.toml: api.listen: expected an address like \"127.0.0.1:8080\", got \"x\""
        );
        assert!(lines[1].starts_with("/etc/q.toml: service \"www\".interval: expected a duration"));
        assert_eq!(
            d.iter().next().unwrap().expected.as_deref(),
            Some("an address like \"127.0.0.1:8080\"")
        );
        assert_eq!(
            Diagnostics::whole_file(Path::new("q.toml"), "not TOML\n").to_string(),
            "q.toml: not TOML"
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let base = base_dir(Path::new("/etc/quorate/coordinator.toml"));
        assert_eq!(
            resolve(base, Path::new("tsig.secret")),
            Path::new("/etc/quorate/tsig.secret")
        );
        assert_eq!(resolve(base, Path::new("/abs/x")), Path::new("/abs/x"));
        assert_eq!(base_dir(Path::new("coordinator.toml")), Path::new("."));
    }
}
