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
}

#[derive(Clone, Debug, PartialEq)]
pub struct WitnessConfig {
    pub name: String,
    pub url: String,
    pub key: VerifyingKey,
    pub key_id: KeyId,
    pub cert_sha256: Option<[u8; 32]>,
    pub timeout: Duration,
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
        if let Some(pk) = pk {
            witnesses.push(WitnessConfig {
                name: w.name.clone(),
                url: w.url.trim_end_matches('/').to_string(),
                key_id: KeyId::of(&pk),
                key: pk,
                cert_sha256: pin,
                // Filled by `default_timeouts` once the services' probe timeouts are known.
                timeout: timeout.unwrap_or(Duration::ZERO),
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
}
