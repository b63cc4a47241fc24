//! Key files: ed25519 signing keys (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519`
//! writes them), public keys as `ed25519:<base64>` strings, and secret files (TSIG keys, API
//! tokens) that must not be readable by group or others nor owned by another user, like ssh
//! refuses such keys.
//!
//! A signing key is written in the PKCS#8 v1 form of RFC 8410 (`PrivateKeyInfo` with the
//! 32-byte seed and no public key: 48 bytes of DER), the form OpenSSL writes and every
//! library reads. Reading also accepts the v2 form (`OneAsymmetricKey` with the public key)
//! that earlier versions wrote; its public key must match the seed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};

pub use crate::protocol::KeyId;

/// Prefix of a public key written as text.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: permissions {mode:04o} are too open; a secret must not be readable by group or others (run: chmod 600 {path})"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "{path}: owned by uid {owner}; a secret must be owned by the user this runs as (uid {euid}) or by root, or another user could change it (run: chown {euid} {path})"
    )]
    WrongOwner {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("{path}: not an ed25519 private key in PKCS#8 PEM form ({reason})")]
    BadPrivateKey { path: PathBuf, reason: String },
    #[error("{path}: file is empty; expected a secret")]
    EmptySecret { path: PathBuf },
    #[error("{path}: already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
}

/// A fresh signing key from the operating system's random source.
pub fn generate() -> SigningKey {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .expect("the OS random source is available");
    SigningKey::from_bytes(&seed)
}

/// Refuses a secret file that group or others can read or write, or that is owned by a user
/// other than the one this process runs as (its effective uid) and root.
pub fn check_private_mode(path: &Path) -> Result<(), KeyError> {
    let meta = fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let owner = meta.uid();
    if owner != 0 {
        let euid = effective_uid()?;
        if owner != euid {
            return Err(KeyError::WrongOwner {
                path: path.to_owned(),
                owner,
                euid,
            });
        }
    }
    Ok(())
}

/// Where the process's uids are read: `std` has no safe `geteuid`, and `unsafe` is forbidden.
const PROC_STATUS: &str = "/proc/self/status";

/// The effective uid of this process: the second field of the `Uid:` line of
/// `/proc/self/status` (real, effective, saved, filesystem).
fn effective_uid() -> Result<u32, KeyError> {
    let io = |source| KeyError::Io {
        path: PathBuf::from(PROC_STATUS),
        source,
    };
    let status = fs::read_to_string(PROC_STATUS).map_err(io)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "expected a line \"Uid:\tREAL\tEFFECTIVE\tSAVED\tFS\"",
            ))
        })
}

/// Writes `contents` to a new file with mode 0600; never overwrites.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    write_new_file(path, contents, 0o600)
}

/// Writes `contents` to a new file with `mode`, synced to disk; never overwrites (an existing
/// file is [`KeyError::Exists`]).
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists {
                    path: path.to_owned(),
                }
            } else {
                KeyError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Writes a signing key as PKCS#8 v1 PEM (RFC 8410, the form OpenSSL writes), mode 0600.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let pem = signing_key_v1(key)
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| KeyError::BadPrivateKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    write_private_file(path, pem.as_bytes())
}

/// The key as PKCS#8 v1: the seed alone, without the optional public key of v2, which
/// OpenSSL 3.0 and Python's `cryptography` refuse.
fn signing_key_v1(key: &SigningKey) -> KeypairBytes {
    KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
}

/// Loads a signing key (PKCS#8 v1 or v2 PEM), refusing a file that group or others can read
/// or that another user owns.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let text = read_secret_file(path)?;
    SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::BadPrivateKey {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Reads a secret (token, password, TSIG secret) from a file with safe permissions,
/// trimming surrounding white space.
pub fn read_secret_file(path: &Path) -> Result<String, KeyError> {
    check_private_mode(path)?;
    let text = fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(KeyError::EmptySecret {
            path: path.to_owned(),
        });
    }
    Ok(text)
}

/// Where the systemd credential `name` is (`LoadCredential=NAME:FILE` puts it at
/// `$CREDENTIALS_DIRECTORY/NAME`), or a message saying what is missing: a bad name, the
/// variable (not run by systemd, or no `LoadCredential=` in the unit), or the file. `env` is
/// the process's environment, an argument so tests need not change the real one (`set_var`
/// is unsafe, and racy between tests).
pub fn credential_path(
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!(
            "expected a credential name like \"dns-token\" (no '/'), got {name:?}"
        ));
    }
    let dir = env("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        format!("credential {name:?}: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential={name}:<file>")
    })?;
    let path = PathBuf::from(dir).join(name);
    if path.symlink_metadata().is_err() {
        return Err(format!(
            "credential {name:?}: {} does not exist; add LoadCredential={name}:<file> to the unit",
            path.display()
        ));
    }
    Ok(path)
}

/// `ed25519:<base64 of the 32 key bytes>`.
pub fn format_public_key(key: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", B64.encode(key.as_bytes()))
}

/// A public-key text that is not `ed25519:<base64 of 32 bytes>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    #[error("expected a public key of the form \"{PUBLIC_KEY_PREFIX}<base64>\"")]
    Prefix,
    #[error("public key is not valid base64: {0}")]
    Base64(base64::DecodeError),
    #[error("public key is {0} bytes, expected 32")]
    Length(usize),
    #[error("public key is not a valid ed25519 point")]
    Point,
}

/// Parses `ed25519:<base64>`; the error says what was expected.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, PublicKeyError> {
    let b64 = text
        .trim()
        .strip_prefix(PUBLIC_KEY_PREFIX)
        .ok_or(PublicKeyError::Prefix)?;
    let bytes = B64.decode(b64).map_err(PublicKeyError::Base64)?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| PublicKeyError::Length(b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::Point)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate();
        write_signing_key(&path, &key).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_signing_key(&path, &key),
            Err(KeyError::Exists { .. })
        ));
    }

    /// The RFC 8410 v1 `PrivateKeyInfo` header OpenSSL writes before the 32-byte seed.
    const V1_PREFIX: &str = "302e020100300506032b657004220420";

    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        B64.decode(body).unwrap()
    }

    #[test]
    fn signing_key_is_written_in_the_v1_form_openssl_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = SigningKey::from_bytes(&[7u8; 32]);
        write_signing_key(&path, &key).unwrap();
        let pem = fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        assert_eq!(
            hex::encode(pem_der(&pem)),
            format!("{V1_PREFIX}{}", hex::encode([7u8; 32]))
        );
    }

    #[test]
    fn a_v2_key_file_written_by_earlier_versions_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate();
        // What `write_signing_key` wrote before: v2, with the public key.
        let v2 = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let der = pem_der(&v2);
        assert_eq!(der[4], 1, "version 1 means v2 (OneAsymmetricKey)");
        assert_eq!(der.len(), 83, "v2 carries the public key");
        write_private_file(&path, v2.as_bytes()).unwrap();
        assert_eq!(load_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn a_secret_owned_by_another_user_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_signing_key(&path, &generate()).unwrap();
        // Tests run as root (tests/run.sh): the file is root's, which is accepted.
        load_signing_key(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(12345), None).unwrap();
        let err = load_signing_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::WrongOwner { owner: 12345, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}: owned by uid 12345;", path.display()))
                && text.contains(&format!(
                    "(run: chown {} {})",
                    effective_uid().unwrap(),
                    path.display()
                )),
            "{text}"
        );
        // The same holds for any secret, not only keys.
        assert!(matches!(
            read_secret_file(&path),
            Err(KeyError::WrongOwner { .. })
        ));
    }

    #[test]
    fn effective_uid_owns_the_files_this_process_creates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_private_file(&path, b"x").unwrap();
        assert_eq!(effective_uid().unwrap(), fs::metadata(&path).unwrap().uid());
    }

    #[test]
    fn group_readable_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_signing_key(&path, &generate()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_signing_key(&path).unwrap_err().to_string();
        assert!(err.contains("0640") && err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn public_key_text_round_trip_and_errors() {
        let key = generate().verifying_key();
        let text = format_public_key(&key);
        assert_eq!(parse_public_key(&text).unwrap(), key);
        let error = |text: &str| parse_public_key(text).unwrap_err().to_string();
        assert!(error("AAAA").contains("ed25519:"));
        assert!(error("ed25519:AAAA").contains("expected 32"));
        assert!(error("ed25519:!!").contains("base64"));
    }

    #[test]
    fn empty_secret_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write_private_file(&path, b"  \n").unwrap();
        assert!(matches!(
            read_secret_file(&path),
            Err(KeyError::EmptySecret { .. })
        ));
    }
}
