//! Key files: ed25519 signing keys (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519`
//! writes them), public keys as `ed25519:<base64>` strings, and secret files (TSIG keys, API
//! tokens) that must not be readable by group or others, like ssh refuses such keys.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
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

/// Refuses a secret file that group or others can read or write.
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
    Ok(())
}

/// Writes `contents` to a new file with mode 0600; never overwrites.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
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

/// Writes a signing key as PKCS#8 PEM, mode 0600.
pub fn write_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| KeyError::BadPrivateKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    write_private_file(path, pem.as_bytes())
}

/// Loads a signing key, refusing a file that group or others can read.
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
