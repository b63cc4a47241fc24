//! Scheduled maintenance announcements: the rules an announcement must meet before it is
//! stored (`POST /v1/maintenance`, `quorate-coordinator maintenance add`), as one pure
//! function with a table test. Storage is `store::maintenance`; the public status page shows
//! them (`dashboard::status`).
//!
//! | rule | why |
//! |---|---|
//! | the service is configured | an announcement for nothing would never show |
//! | title 1–120 characters, no control characters | a heading on a public page |
//! | details at most 2,000 characters, no control characters but line breaks | a paragraph, within the API's 4 KiB body |
//! | end after start, at most 30 days apart | a window, not a state; longer is an outage to say otherwise |
//! | start at most 1 h ago | announcing a window that just began is fine, rewriting the past is not |
//! | start at most 365 days ahead | a typo in the year is refused rather than shown for a year |
//! | end in the future | an announcement that is already over would never show |
//! | at most [`MAX_OPEN`] not-ended announcements per service | the table and the status page stay small |

use std::time::Duration;

/// Longest title, in characters.
pub const MAX_TITLE: usize = 120;
/// Longest details text, in characters.
pub const MAX_DETAILS: usize = 2_000;
/// Longest window.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// How far in the past a window may start.
pub const MAX_PAST_START: Duration = Duration::from_secs(3_600);
/// How far ahead a window may start.
pub const MAX_AHEAD: Duration = Duration::from_secs(365 * 86_400);
/// Announcements not yet ended, per service.
pub const MAX_OPEN: u32 = 50;

/// An announcement as asked for, its times already read as Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked<'a> {
    pub service: &'a str,
    pub start_ms: u64,
    pub end_ms: u64,
    pub title: &'a str,
    pub details: Option<&'a str>,
}

/// An announcement that meets every rule: title trimmed, details trimmed (empty for none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub service: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub title: String,
    pub details: String,
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Checks `a` against the rules of the module's table at `now_ms`; `known` says whether a
/// service is configured. The error names the field, what was expected and what was given.
pub fn check(a: &Asked<'_>, now_ms: u64, known: impl Fn(&str) -> bool) -> Result<Checked, String> {
    if !known(a.service) {
        return Err(format!("service: no service is named {:?}", a.service));
    }
    let title = a.title.trim();
    let chars = title.chars().count();
    if chars == 0 || chars > MAX_TITLE {
        return Err(format!(
            "title: expected 1 to {MAX_TITLE} characters, got {chars}"
        ));
    }
    if title.chars().any(char::is_control) {
        return Err("title: expected one line without control characters".into());
    }
    let details = a.details.unwrap_or("").trim();
    let chars = details.chars().count();
    if chars > MAX_DETAILS {
        return Err(format!(
            "details: expected at most {MAX_DETAILS} characters, got {chars}"
        ));
    }
    if details.chars().any(|c| c.is_control() && c != '\n') {
        return Err(
            "details: expected text without control characters (line breaks are fine)".into(),
        );
    }
    if a.end_ms <= a.start_ms {
        return Err(format!(
            "end: expected a time after start ({}), got {}",
            rfc3339(a.start_ms),
            rfc3339(a.end_ms)
        ));
    }
    let window = a.end_ms - a.start_ms;
    if window > MAX_WINDOW.as_millis() as u64 {
        return Err(format!(
            "end: expected at most 30 days after start, got {}",
            humantime::format_duration(Duration::from_secs(window / 1000))
        ));
    }
    if a.start_ms < now_ms.saturating_sub(MAX_PAST_START.as_millis() as u64) {
        return Err(format!(
            "start: expected at most 1 hour ago (now is {}), got {}",
            rfc3339(now_ms),
            rfc3339(a.start_ms)
        ));
    }
    if a.start_ms > now_ms.saturating_add(MAX_AHEAD.as_millis() as u64) {
        return Err(format!(
            "start: expected within 365 days from now ({}), got {}",
            rfc3339(now_ms),
            rfc3339(a.start_ms)
        ));
    }
    if a.end_ms <= now_ms {
        return Err(format!(
            "end: expected a time in the future (now is {}), got {}",
            rfc3339(now_ms),
            rfc3339(a.end_ms)
        ));
    }
    Ok(Checked {
        service: a.service.to_string(),
        start_ms: a.start_ms,
        end_ms: a.end_ms,
        title: title.to_string(),
        details: details.to_string(),
    })
}

/// Where a window stands at `now_ms`, for the status page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Upcoming,
    Now,
    Over,
}

pub fn phase(start_ms: u64, end_ms: u64, now_ms: u64) -> Phase {
    if now_ms >= end_ms {
        Phase::Over
    } else if now_ms >= start_ms {
        Phase::Now
    } else {
        Phase::Upcoming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const H: u64 = 3_600_000;

    fn asked<'a>(
        start_ms: u64,
        end_ms: u64,
        title: &'a str,
        details: Option<&'a str>,
    ) -> Asked<'a> {
        Asked {
            service: "web",
            start_ms,
            end_ms,
            title,
            details,
        }
    }

    #[test]
    fn every_rule_refuses_with_the_field_named() {
        let long_title = "t".repeat(MAX_TITLE + 1);
        let long_details = "d".repeat(MAX_DETAILS + 1);
        let ok_title = "é".repeat(MAX_TITLE); // characters, not bytes
        let cases: Vec<(Asked<'_>, Result<(), &str>)> = vec![
            (asked(NOW + H, NOW + 2 * H, "Upgrade", None), Ok(())),
            (
                asked(NOW - H, NOW + H, "Began an hour ago", Some("a\nb")),
                Ok(()),
            ),
            (
                asked(NOW + H, NOW + H + 30 * 24 * H, &ok_title, None),
                Ok(()),
            ),
            (
                Asked {
                    service: "mail",
                    ..asked(NOW + H, NOW + 2 * H, "x", None)
                },
                Err("service: no service is named \"mail\""),
            ),
            (
                asked(NOW + H, NOW + 2 * H, "  ", None),
                Err("title: expected 1 to 120 characters, got 0"),
            ),
            (
                asked(NOW + H, NOW + 2 * H, &long_title, None),
                Err("title: expected 1 to 120 characters, got 121"),
            ),
            (
                asked(NOW + H, NOW + 2 * H, "a\nb", None),
                Err("title: expected one line"),
            ),
            (
                asked(NOW + H, NOW + 2 * H, "x", Some(&long_details)),
                Err("details: expected at most 2000 characters, got 2001"),
            ),
            (
                asked(NOW + H, NOW + 2 * H, "x", Some("bell\u{7}")),
                Err("details: expected text without control characters"),
            ),
            (
                asked(NOW + 2 * H, NOW + 2 * H, "x", None),
                Err("end: expected a time after start"),
            ),
            (
                asked(NOW + 2 * H, NOW + H, "x", None),
                Err("end: expected a time after start"),
            ),
            (
                asked(NOW + H, NOW + H + 30 * 24 * H + 1000, "x", None),
                Err("end: expected at most 30 days after start, got 30days 1s"),
            ),
            (
                asked(NOW - H - 1000, NOW + H, "x", None),
                Err("start: expected at most 1 hour ago"),
            ),
            (
                asked(NOW + 366 * 24 * H, NOW + 367 * 24 * H, "x", None),
                Err("start: expected within 365 days"),
            ),
            (
                asked(NOW - H, NOW, "x", None),
                Err("end: expected a time in the future"),
            ),
        ];
        for (a, want) in cases {
            let got = check(&a, NOW, |s| s == "web");
            match (want, got) {
                (Ok(()), Ok(c)) => {
                    assert_eq!((c.start_ms, c.end_ms), (a.start_ms, a.end_ms));
                    assert_eq!(c.title, a.title.trim());
                }
                (Err(w), Err(e)) => assert!(e.starts_with(w), "{a:?}: {e}"),
                (w, g) => panic!("{a:?}: expected {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn phases() {
        assert_eq!(phase(10, 20, 5), Phase::Upcoming);
        assert_eq!(phase(10, 20, 10), Phase::Now);
        assert_eq!(phase(10, 20, 19), Phase::Now);
        assert_eq!(phase(10, 20, 20), Phase::Over);
    }
}
