//! Logging for both binaries: one filter variable (`QUORATE_LOG`, `tracing`'s `EnvFilter`
//! syntax, e.g. `QUORATE_LOG=debug` or `QUORATE_LOG=info,coordinator::dns=debug`), human or
//! JSON lines on stderr, and colour only on a terminal (never in journald or a file; never
//! with `NO_COLOR` set).

use std::io::IsTerminal as _;

/// The environment variable both binaries read their log filter from.
pub const LOG_ENV: &str = "QUORATE_LOG";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Human,
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "human" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            o => Err(format!("expected human or json, got {o:?}")),
        }
    }
}

/// Pure: whether to colour the output, given whether stderr is a terminal and `NO_COLOR`.
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    // https://no-color.org: set and not empty disables colour.
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the process's subscriber: the filter from [`LOG_ENV`] (else `default_filter`);
/// an unparsable [`LOG_ENV`] is an error naming it, not silently the default.
pub fn init(format: Format, default_filter: &str) -> Result<(), String> {
    let filter = match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| {
                format!(
                    "{LOG_ENV}={v:?}: {e}; expected e.g. \"info\" or \"info,coordinator=debug\""
                )
            })?
        }
        _ => tracing_subscriber::EnvFilter::new(default_filter),
    };
    let ansi = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        Format::Human => b.init(),
        Format::Json => b.json().init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some(OsStr::new(""))));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, None));
        assert!(!use_colour(false, Some(OsStr::new(""))));
    }

    #[test]
    fn formats_parse() {
        assert_eq!("human".parse::<Format>(), Ok(Format::Human));
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert!(
            "xml"
                .parse::<Format>()
                .expect_err("xml is no format")
                .contains("human or json")
        );
    }
}
