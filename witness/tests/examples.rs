//! Every witness example config in `deploy/examples/` parses and validates: unknown keys,
//! bad values and missing sections would fail here. The files an example names (keys,
//! certificates) are replaced by freshly made ones in a temporary directory.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("witness") && name.ends_with(".toml")
        })
        .collect();
    found.sort();
    found
}

/// Files for the example's path keys, made by `witness::init`.
fn key_material(dir: &Path) {
    witness::init::init(&witness::init::InitOptions {
        dir: dir.to_owned(),
        listen: "127.0.0.1:8443".parse().unwrap(),
        names: vec!["127.0.0.1".into()],
        allow: vec![],
        coordinators: vec![],
        owner: None,
    })
    .unwrap();
}

#[test]
fn every_witness_example_validates() {
    let files = examples();
    assert!(!files.is_empty(), "no deploy/examples/witness*.toml found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // First the file exactly as shipped: the raw shape (unknown keys are errors).
        let raw: witness::config::RawConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Then the full validation, with the named files pointing at real ones.
        let tmp = tempfile::tempdir().unwrap();
        key_material(tmp.path());
        let mut raw = raw;
        raw.key_file = Some(tmp.path().join("witness.key"));
        raw.tls_cert_file = tmp.path().join("tls.crt");
        raw.tls_key_file = Some(tmp.path().join("tls.key"));
        if raw.ca_file.is_some() {
            raw.ca_file = Some(tmp.path().join("tls.crt"));
        }
        let config = witness::config::validate(&file, raw)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!config.coordinators.is_empty() && !config.allow.0.is_empty());
    }
}

#[test]
fn bad_values_name_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    key_material(tmp.path());
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/witness.toml"),
    )
    .unwrap()
    .replace("/etc/quorate-witness/", "");
    let cases = [
        (
            "listen = \"0.0.0.0:8443\"",
            "listen = \"nowhere\"",
            "listen: expected an address",
        ),
        (
            "max_skew = \"30s\"",
            "max_skew = \"soon\"",
            "max_skew: expected a duration",
        ),
        (
            "max_skew = \"30s\"",
            "max_skew = \"1h\"",
            "max_skew: expected between",
        ),
        (
            "cidr = \"203.0.113.10/32\"",
            "cidr = \"primary.example\"",
            "allow[0].cidr",
        ),
        ("ports = [80, 443]", "ports = [0]", "allow[0].ports"),
        ("ports = [80, 443]", "ports = []", "allow[0].ports"),
        (
            "max_concurrent = 64",
            "max_concurrent = 0",
            "limits.max_concurrent",
        ),
        (
            "log_format = \"human\"",
            "log_format = \"xml\"",
            "log_format",
        ),
        (
            "public_key = \"ed25519:",
            "public_key = \"rsa:",
            "coordinator[0].public_key",
        ),
        (
            "[limits]",
            "[limits]\nfrobnicate = 1",
            "unknown field `frobnicate`",
        ),
    ];
    for (from, to, want) in cases {
        assert!(base.contains(from), "example lacks {from:?}");
        let path = tmp.path().join("witness.toml.test");
        std::fs::write(&path, base.replacen(from, to, 1)).unwrap();
        let err = witness::config::load(&path).unwrap_err().to_string();
        assert!(err.contains("witness.toml.test"), "{err}");
        assert!(err.contains(want), "{to:?}: {err}");
    }
    // And the unedited example with the tmp files loads.
    let path = tmp.path().join("witness.toml.ok");
    std::fs::write(&path, &base).unwrap();
    witness::config::load(&path).unwrap();
}
