//! The public keys an auditor needs, and nothing else: the coordinator's key(s) that sign
//! vote requests and checkpoints, and each witness's key(s) that sign votes. Read from a keys
//! file (`verify-history --keys`), or built from a coordinator config (the old form), or
//! printed from one (`quorate-coordinator keys --config`) to hand to an auditor.
//!
//! ```toml
//! [[coordinator]]
//! key = "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
//!
//! [[witness]]
//! name = "w1"
//! key = "ed25519:gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="
//! retired_at = "2026-12-01T00:00:00Z"   # optional: verifies older votes, counts no newer one
//!
//! [[witness]]
//! name = "w1"                            # the same witness, its new key
//! key = "ed25519:..."
//! ```

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use shared::config::Diagnostics;
use shared::protocol::KeyId;

/// One public key with its name and retirement.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicKey {
    /// The witness's name (`coordinator` for the coordinator's keys).
    pub name: String,
    pub key: VerifyingKey,
    pub key_id: KeyId,
    /// From this time (Unix ms) on, what the key signs no longer counts; what it signed
    /// before still verifies. `None`: in service.
    pub retired_at_ms: Option<u64>,
}

impl PublicKey {
    fn new(name: &str, key: VerifyingKey, retired_at_ms: Option<u64>) -> PublicKey {
        PublicKey {
            name: name.to_string(),
            key_id: KeyId::of(&key),
            key,
            retired_at_ms,
        }
    }

    /// Whether something this key signed at `at_ms` counts (it was not retired then).
    pub fn counts_at(&self, at_ms: u64) -> bool {
        self.retired_at_ms.is_none_or(|r| at_ms < r)
    }
}

/// The coordinator's and the witnesses' public keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeySet {
    pub coordinators: Vec<PublicKey>,
    pub witnesses: Vec<PublicKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default)]
    coordinator: Vec<RawKey>,
    #[serde(default)]
    witness: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    #[serde(default)]
    name: Option<String>,
    key: String,
    #[serde(default)]
    retired_at: Option<String>,
}

impl KeySet {
    /// Reads a keys file; every error names the file and the key (`witness[2].key`).
    pub fn load(path: &Path) -> Result<KeySet, Diagnostics> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Diagnostics::whole_file(path, format!("cannot read: {e}")))?;
        KeySet::parse(&text, path)
    }

    /// Parses the text of a keys file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<KeySet, Diagnostics> {
        let raw: RawKeys = toml::from_str(text).map_err(|e| Diagnostics::whole_file(path, e))?;
        let mut e = Diagnostics::new(path);
        let mut set = KeySet::default();
        let read = |table: &str, i: usize, k: &RawKey, e: &mut Diagnostics| {
            let at = format!("{table}[{i}]");
            let key = shared::keys::parse_public_key(&k.key)
                .map_err(|err| e.push(format!("{at}.key"), err))
                .ok();
            let retired = match &k.retired_at {
                None => Some(None),
                Some(t) => match humantime::parse_rfc3339_weak(t) {
                    Ok(t) => Some(Some(
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0),
                    )),
                    Err(err) => {
                        e.expected(
                            format!("{at}.retired_at"),
                            &format!("an RFC 3339 time like 2026-12-01T00:00:00Z ({err})"),
                            t,
                        );
                        None
                    }
                },
            };
            key.zip(retired)
        };
        if raw.coordinator.is_empty() {
            e.push(
                "coordinator",
                "expected at least one [[coordinator]] key: the vote requests and checkpoints are signed with it",
            );
        }
        for (i, k) in raw.coordinator.iter().enumerate() {
            if let Some((key, retired)) = read("coordinator", i, k, &mut e) {
                set.coordinators
                    .push(PublicKey::new("coordinator", key, retired));
            }
        }
        for (i, k) in raw.witness.iter().enumerate() {
            let Some(name) = k.name.as_deref().filter(|n| !n.is_empty()) else {
                e.push(format!("witness[{i}].name"), "expected the witness's name");
                continue;
            };
            if let Some((key, retired)) = read("witness", i, k, &mut e) {
                if let Some(other) = set.witnesses.iter().find(|w| w.key == key) {
                    e.push(
                        format!("witness[{i}].key"),
                        format!(
                            "the same key is already listed for witness {:?}",
                            other.name
                        ),
                    );
                }
                set.witnesses.push(PublicKey::new(name, key, retired));
            }
        }
        e.finish(|| Some(set))
    }

    /// The keys a coordinator config pins: its own (from its private key) and each
    /// configured witness's, in service, and the retired ones listed beside them.
    pub fn from_config(config: &crate::config::Config) -> KeySet {
        let retired = |name: &str, r: &[crate::config::RetiredKey]| {
            r.iter()
                .map(|k| PublicKey::new(name, k.key, Some(k.retired_at_ms)))
                .collect::<Vec<_>>()
        };
        let mut coordinators = vec![PublicKey::new(
            "coordinator",
            config.signing_key.verifying_key(),
            None,
        )];
        coordinators.extend(retired("coordinator", &config.retired_keys));
        let mut witnesses = Vec::new();
        for w in &config.witnesses {
            witnesses.push(PublicKey::new(&w.name, w.key, None));
            witnesses.extend(retired(&w.name, &w.retired));
        }
        KeySet {
            coordinators,
            witnesses,
        }
    }

    /// The keys file text for this set (what `quorate-coordinator keys` prints).
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Quorate public keys: enough to verify a history (verify-history --keys FILE).\n",
        );
        let retired = |k: &PublicKey| match k.retired_at_ms {
            Some(ms) => format!(
                "retired_at = \"{}\"\n",
                humantime::format_rfc3339_millis(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
                )
            ),
            None => String::new(),
        };
        for k in &self.coordinators {
            out.push_str(&format!(
                "\n[[coordinator]]\nkey = \"{}\"\n{}",
                shared::keys::format_public_key(&k.key),
                retired(k)
            ));
        }
        for k in &self.witnesses {
            out.push_str(&format!(
                "\n[[witness]]\nname = \"{}\"\nkey = \"{}\"\n{}",
                k.name,
                shared::keys::format_public_key(&k.key),
                retired(k)
            ));
        }
        out
    }

    /// The coordinator key with this id.
    pub fn coordinator(&self, id: &KeyId) -> Option<&PublicKey> {
        self.coordinators.iter().find(|k| &k.key_id == id)
    }

    /// The witness key with this id (as text, as stored with each vote).
    pub fn witness(&self, id: &str) -> Option<&PublicKey> {
        self.witnesses.iter().find(|k| k.key_id.0 == id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_file_round_trips_and_errors_name_the_key() {
        let (c, w1, w1old) = (
            shared::keys::generate(),
            shared::keys::generate(),
            shared::keys::generate(),
        );
        let set = KeySet {
            coordinators: vec![PublicKey::new("coordinator", c.verifying_key(), None)],
            witnesses: vec![
                PublicKey::new("w1", w1old.verifying_key(), Some(1_795_000_000_000)),
                PublicKey::new("w1", w1.verifying_key(), None),
            ],
        };
        let text = set.to_toml();
        let back = KeySet::parse(&text, Path::new("keys.toml")).unwrap();
        assert_eq!(back, set);
        assert!(!back.witnesses[0].counts_at(1_795_000_000_000));
        assert!(back.witnesses[0].counts_at(1_794_999_999_999));
        assert!(back.witnesses[1].counts_at(u64::MAX));

        let bad = "[[coordinator]]\nkey = \"ed25519:nope\"\n[[witness]]\nkey = \"x\"\n[[witness]]\nname = \"w\"\nkey = \"ed25519:gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=\"\nretired_at = \"soon\"\n";
        let err = KeySet::parse(bad, Path::new("keys.toml"))
            .unwrap_err()
            .to_string();
        for want in [
            "keys.toml: coordinator[0].key",
            "keys.toml: witness[0].name",
            "keys.toml: witness[1].retired_at",
        ] {
            assert!(err.contains(want), "{want} in {err}");
        }
        let none = KeySet::parse("", Path::new("k.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            none.contains("k.toml: coordinator: expected at least one"),
            "{none}"
        );
        let unknown = KeySet::parse("[[coordinator]]\nkey = \"a\"\nextra = 1\n", Path::new("k"))
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("extra"), "{unknown}");
    }
}
