//! The `[[witness]]` tables: each witness's URL, public key, optional certificate pin and
//! per-request timeout (by default the longest probe timeout of the services that ask it,
//! plus [`WITNESS_TIMEOUT_MARGIN`]).

use std::collections::BTreeSet;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use shared::config::Diagnostics;
use shared::protocol::KeyId;

use super::ServiceConfig;

/// Time a witness gets beyond its own probe's timeout to answer: the round trip, TLS and
/// signing.
pub const WITNESS_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWitness {
    pub name: String,
    /// `https://host:port` of the witness.
    pub url: String,
    /// `ed25519:<base64>`, as printed by `quorate-witness init`.
    pub public_key: String,
    /// Optional pin of the witness's TLS certificate (hex SHA-256 of its DER).
    #[serde(default)]
    pub cert_sha256: Option<String>,
    /// Per-request timeout ("2s"); must exceed the probe timeout of every service that asks
    /// this witness; defaults to the longest such probe timeout plus
    /// [`WITNESS_TIMEOUT_MARGIN`].
    #[serde(default)]
    pub timeout: Option<String>,
    /// Keys this witness signed with before (a rotation): their old votes still verify in
    /// `verify-history`, no new vote counts (docs/history.md §7).
    #[serde(default)]
    pub retired_keys: Vec<RawRetiredKey>,
}

/// A key that was replaced: `{ public_key = "ed25519:…", retired_at = "2026-12-01T00:00:00Z" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetiredKey {
    pub public_key: String,
    /// When it stopped counting (RFC 3339): what it signed before still verifies.
    pub retired_at: String,
}

/// A replaced key, kept so that what it signed before `retired_at_ms` still verifies.
#[derive(Clone, Debug, PartialEq)]
pub struct RetiredKey {
    pub key: VerifyingKey,
    pub key_id: KeyId,
    pub retired_at_ms: u64,
}

/// How far ahead of this host's clock a `retired_at` may be: a rotation is recorded once it
/// happened, and a time far ahead is a typo that would keep an old key counting.
const RETIRED_AT_SLACK_MS: u64 = 10 * 60 * 1000;

/// Validates `retired_keys` at `key` (`witness[0].retired_keys`); `current` is the key in
/// service, which a retired key must differ from.
pub(super) fn retired_keys(
    raw: &[RawRetiredKey],
    key: &str,
    current: Option<&VerifyingKey>,
    e: &mut Diagnostics,
) -> Vec<RetiredKey> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut out: Vec<RetiredKey> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let pk = shared::keys::parse_public_key(&r.public_key)
            .map_err(|m| e.push(format!("{at}.public_key"), m))
            .ok();
        let when = match humantime::parse_rfc3339_weak(&r.retired_at) {
            Ok(t) => {
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                if ms > now_ms + RETIRED_AT_SLACK_MS {
                    e.push(
                        format!("{at}.retired_at"),
                        format!(
                            "{:?} is in the future: a retired key keeps counting until then; expected the time the new key took over (now is {})",
                            r.retired_at,
                            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        ),
                    );
                    None
                } else {
                    Some(ms)
                }
            }
            Err(err) => {
                e.expected(
                    format!("{at}.retired_at"),
                    &format!("an RFC 3339 time like 2026-12-01T00:00:00Z ({err})"),
                    &r.retired_at,
                );
                None
            }
        };
        let Some(pk) = pk else { continue };
        if current == Some(&pk) {
            e.push(
                format!("{at}.public_key"),
                "is the key in service (public_key): a retired key is the one it replaced",
            );
            continue;
        }
        if out.iter().any(|o| o.key == pk) {
            e.push(format!("{at}.public_key"), "listed twice");
            continue;
        }
        if let Some(ms) = when {
            out.push(RetiredKey {
                key_id: KeyId::of(&pk),
                key: pk,
                retired_at_ms: ms,
            });
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct WitnessConfig {
    pub name: String,
    pub url: String,
    pub key: VerifyingKey,
    pub key_id: KeyId,
    pub cert_sha256: Option<[u8; 32]>,
    pub timeout: Duration,
    /// Keys it signed with before; they verify old votes only.
    pub retired: Vec<RetiredKey>,
}

/// The witnesses whose key parsed; a zero `timeout` means "not set" until
/// [`default_timeouts`] fills it in.
pub(super) fn validate(raw: &[RawWitness], e: &mut Diagnostics) -> Vec<WitnessConfig> {
    let mut witnesses = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, w) in raw.iter().enumerate() {
        let key = format!("witness[{i}]");
        if !seen.insert(w.name.clone()) {
            e.push(
                format!("{key}.name"),
                format!("duplicate witness name {:?}", w.name),
            );
        }
        if let Some(rest) = w.url.strip_prefix("http://") {
            // SPEC §4.4: votes travel over HTTPS only, and a witness serves nothing else.
            e.push(
                format!("{key}.url"),
                format!(
                    "witness {:?}: {:?} is plain HTTP; witnesses are asked over HTTPS only (SPEC §4.4); expected an https:// URL (use \"https://{rest}\")",
                    w.name, w.url
                ),
            );
        } else if !w.url.starts_with("https://") {
            e.expected(format!("{key}.url"), "an https:// URL", &w.url);
        }
        let pk = shared::keys::parse_public_key(&w.public_key)
            .map_err(|m| e.push(format!("{key}.public_key"), m))
            .ok();
        let pin = match &w.cert_sha256 {
            None => None,
            Some(h) => match hex::decode(h.trim().replace(':', "")) {
                Ok(b) if b.len() == 32 => b.try_into().ok(),
                _ => {
                    e.push(
                        format!("{key}.cert_sha256"),
                        "expected 64 hex digits (SHA-256 of the certificate)",
                    );
                    None
                }
            },
        };
        let timeout = match &w.timeout {
            Some(t) => e.duration(format!("{key}.timeout"), t),
            None => None,
        };
        let retired = retired_keys(
            &w.retired_keys,
            &format!("{key}.retired_keys"),
            pk.as_ref(),
            e,
        );
        if let Some(pk) = pk {
            witnesses.push(WitnessConfig {
                name: w.name.clone(),
                url: w.url.trim_end_matches('/').to_string(),
                key_id: KeyId::of(&pk),
                key: pk,
                cert_sha256: pin,
                // Filled by `default_timeouts` once the services' probe timeouts are known.
                timeout: timeout.unwrap_or(Duration::ZERO),
                retired,
            });
        }
    }
    witnesses
}

/// A witness answers "down" on a dead primary only once its own probe has timed out, so the
/// coordinator must wait for it longer than the longest probe timeout of the services that
/// ask it; otherwise a primary that hangs (rather than refuses) gets no votes at all and
/// every round is `coordinator-isolated`. Default: that probe timeout plus
/// [`WITNESS_TIMEOUT_MARGIN`] for the round trip, TLS and signing.
pub(super) fn default_timeouts(
    witnesses: &mut [WitnessConfig],
    raw: &[RawWitness],
    services: &[ServiceConfig],
    e: &mut Diagnostics,
) {
    for w in witnesses {
        let Some(raw_i) = raw.iter().position(|r| r.name == w.name) else {
            continue;
        };
        let longest = services
            .iter()
            .filter(|s| s.witnesses.contains(&raw_i))
            .map(|s| {
                let ms = s
                    .primary_probe
                    .timeout_ms()
                    .max(s.backup_probe.timeout_ms());
                (Duration::from_millis(u64::from(ms)), s.name.as_str())
            })
            .max();
        match longest {
            None if w.timeout.is_zero() => w.timeout = WITNESS_TIMEOUT_MARGIN,
            None => {}
            Some((probe, _)) if w.timeout.is_zero() => w.timeout = probe + WITNESS_TIMEOUT_MARGIN,
            Some((probe, svc)) if w.timeout <= probe => e.push(
                format!("witness[{raw_i}].timeout"),
                format!(
                    "{:?} leaves the witness no time to answer: service {svc:?} probes with a timeout of {probe:?}, and a witness can vote \"down\" on a primary that hangs only after that; expected more than {probe:?} (default: {:?})",
                    w.timeout,
                    probe + WITNESS_TIMEOUT_MARGIN
                ),
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::Path;

    use super::*;

    const KEY: &str = "ed25519:gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=";

    fn urls(url: &str) -> Vec<String> {
        let raw: RawWitness = toml::from_str(&format!(
            "name = \"w1\"\nurl = \"{url}\"\npublic_key = \"{KEY}\"\n"
        ))
        .unwrap();
        let mut d = Diagnostics::new(Path::new("c.toml"));
        validate(&[raw], &mut d);
        d.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_plain_http_witness_url_is_refused_naming_the_witness_and_the_fix() {
        assert_eq!(
            urls("http://192.0.2.7:8443"),
            [
                "c.toml: witness[0].url: witness \"w1\": \"http://192.0.2.7:8443\" is plain HTTP; witnesses are asked over HTTPS only (SPEC §4.4); expected an https:// URL (use \"https://192.0.2.7:8443\")"
            ]
        );
    }

    #[test]
    fn an_https_witness_url_is_accepted_and_anything_else_expected_to_be_one() {
        assert_eq!(urls("https://192.0.2.7:8443"), Vec::<String>::new());
        assert_eq!(
            urls("192.0.2.7:8443"),
            ["c.toml: witness[0].url: expected an https:// URL, got \"192.0.2.7:8443\""]
        );
    }

    const OLD: &str = "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

    fn retired(entries: &str) -> (Vec<WitnessConfig>, Vec<String>) {
        let raw: RawWitness = toml::from_str(&format!(
            "name = \"w1\"\nurl = \"https://192.0.2.7:8443\"\npublic_key = \"{KEY}\"\nretired_keys = [{entries}]\n"
        ))
        .unwrap();
        let mut d = Diagnostics::new(Path::new("c.toml"));
        let w = validate(&[raw], &mut d);
        (w, d.iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn a_retired_key_is_kept_with_its_time() {
        let (w, errors) = retired(&format!(
            "{{ public_key = \"{OLD}\", retired_at = \"2026-12-01T00:00:00Z\" }}"
        ));
        assert_eq!(errors, Vec::<String>::new());
        let r = &w[0].retired[0];
        assert_eq!(shared::keys::format_public_key(&r.key), OLD);
        assert_eq!(r.retired_at_ms, 1_796_083_200_000);
    }

    #[test]
    fn a_wrong_retired_key_is_named_with_the_fix() {
        let cases = [
            (
                format!("{{ public_key = \"{KEY}\", retired_at = \"2026-12-01T00:00:00Z\" }}"),
                "c.toml: witness[0].retired_keys[0].public_key: is the key in service (public_key): a retired key is the one it replaced",
            ),
            (
                format!("{{ public_key = \"{OLD}\", retired_at = \"yesterday\" }}"),
                "c.toml: witness[0].retired_keys[0].retired_at: expected an RFC 3339 time like 2026-12-01T00:00:00Z",
            ),
            (
                format!("{{ public_key = \"{OLD}\", retired_at = \"2999-01-01T00:00:00Z\" }}"),
                "c.toml: witness[0].retired_keys[0].retired_at: \"2999-01-01T00:00:00Z\" is in the future: a retired key keeps counting until then",
            ),
            (
                format!(
                    "{{ public_key = \"{OLD}\", retired_at = \"2026-12-01T00:00:00Z\" }}, {{ public_key = \"{OLD}\", retired_at = \"2026-12-02T00:00:00Z\" }}"
                ),
                "c.toml: witness[0].retired_keys[1].public_key: listed twice",
            ),
        ];
        for (entries, want) in cases {
            let (w, errors) = retired(&entries);
            assert!(
                errors.len() == 1 && errors[0].starts_with(want),
                "{entries}: {errors:?}"
            );
            assert!(w.iter().all(|w| w.retired.len() <= 1), "{entries}");
        }
    }
}
