//! Every example config in `deploy/examples/coordinator*.toml` parses into `RawConfig`, and
//! validation fails only on the files an example names that cannot exist on a test machine
//! (keys, tokens, secrets); copied next to such files, it validates completely. Also the
//! defaults of optional tables (a service without `[service.hooks]`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use coordinator::config::RawConfig;

/// The keys whose value is a file the config reads while validating.
const FILE_KEYS: [&str; 5] = [
    "key_file",
    "token_file",
    "tsig_secret_file",
    "url_file",
    "probe_ca_file",
];

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("coordinator") && name.ends_with(".toml")
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no coordinator*.toml in {}", dir.display());
    out
}

#[test]
fn every_example_parses_and_fails_only_on_missing_files() {
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        let raw: RawConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let base = path.parent().unwrap();
        let errors = match coordinator::config::validate(raw, &path, base) {
            Ok(_) => continue,
            Err(e) => e.0,
        };
        for line in &errors {
            assert!(
                line.starts_with(&path.display().to_string()),
                "error names the file: {line}"
            );
            let about_a_file = FILE_KEYS.iter().any(|k| line.contains(k));
            let missing = line.contains("No such file or directory");
            assert!(
                about_a_file && missing,
                "{}: a structural error, not a missing file:\n{line}",
                path.display()
            );
        }
    }
}

/// The example copied into a temp folder, its absolute paths pointed there, with every file
/// it names created (mode 0600 where secret): validation succeeds and reads what it says.
#[test]
fn every_example_validates_once_its_files_exist() {
    shared::install_crypto_provider();
    for path in examples() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        // Absolute paths of the deployment → the temp folder, same file name.
        for prefix in ["/etc/quorate/", "/var/lib/quorate/"] {
            text = text.replace(
                &format!("\"{prefix}"),
                &format!("\"{}/", dir.path().display()),
            );
        }
        let raw: RawConfig = toml::from_str(&text).unwrap();
        let mut files: Vec<PathBuf> =
            vec![raw.coordinator.key_file.clone(), raw.api.token_file.clone()];
        files.extend(raw.notify.webhook.iter().filter_map(|w| w.url_file.clone()));
        files.extend(raw.coordinator.probe_ca_file.clone());
        if let Some(toml::Value::String(s)) = raw.dns.rest.get("tsig_secret_file") {
            files.push(s.into());
        }
        for f in files {
            let f = if f.is_absolute() {
                f
            } else {
                dir.path().join(f)
            };
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".key") {
                shared::keys::write_signing_key(&f, &shared::keys::generate()).unwrap();
            } else if name.ends_with(".pem") {
                let (cert, _) = shared::tls::self_signed(&["site.example.test".into()]).unwrap();
                std::fs::write(&f, cert).unwrap();
            } else {
                let content = match name.rsplit('.').next() {
                    Some("secret") => "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg==",
                    Some("url") => "https://hooks.example.test/services/T000/B000/abcdef",
                    _ => "an-api-token-of-more-than-16-characters",
                };
                shared::keys::write_private_file(&f, content.as_bytes()).unwrap();
            }
        }
        let copy = dir.path().join("coordinator.toml");
        std::fs::write(&copy, &text).unwrap();
        let config = coordinator::config::load(&copy)
            .unwrap_or_else(|e| panic!("{} (copied): {e}", path.display()));
        assert!(!config.services.is_empty());
        assert!(!config.witnesses.is_empty());
        for s in &config.services {
            assert!(s.policy.validate().is_ok());
            assert!(s.witnesses.iter().all(|&i| i < config.witnesses.len()));
        }
    }
}

#[test]
fn the_printed_example_is_the_file() {
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/coordinator.toml"),
    )
    .unwrap();
    assert_eq!(coordinator::config::EXAMPLE, file);
}

/// Regression: a `[[service]]` without a `[service.hooks]` table used to fail validation
/// with "hooks.timeout: expected a duration" (the derived default left it empty).
#[test]
fn a_service_without_hooks_gets_the_default_hook_timeout() {
    let lab = common::Lab::new();
    let w = shared::keys::generate();
    let lo = "127.0.0.1".parse().unwrap();
    let opts = common::Opts::new(
        vec![common::witness_block(
            "w1",
            "https://127.0.0.1:9",
            &w.verifying_key(),
            None,
        )],
        lo,
        lo,
        80,
    );
    let mut opts = opts;
    opts.quorum = 1;
    let text = opts.toml();
    assert!(!text.contains("hooks"));
    let config = lab.config(&text);
    let hooks = &config.services[0].hooks;
    assert_eq!(hooks.timeout, Duration::from_secs(60));
    assert!(hooks.pre_failover.is_none() && hooks.pre_failback.is_none());
}

/// A witness's request timeout must leave it time to finish its own probe: by default it is
/// the service's probe timeout plus the margin; a shorter one is refused, naming the key.
#[test]
fn witness_timeout_defaults_above_the_probe_timeout_and_shorter_is_refused() {
    let lab = common::Lab::new();
    let w = shared::keys::generate();
    let lo = "127.0.0.1".parse().unwrap();
    let config_with = |timeout: Option<&str>| {
        let block = common::witness_block_with(
            "w1",
            "https://127.0.0.1:9",
            &w.verifying_key(),
            None,
            timeout,
        );
        let mut opts = common::Opts::new(vec![block], lo, lo, 80);
        opts.quorum = 1;
        opts.interval = "1s".into();
        opts.probe_timeout = "700ms".into();
        opts.toml()
    };
    let config = lab.config(&config_with(None));
    assert_eq!(
        config.witnesses[0].timeout,
        Duration::from_millis(700) + coordinator::config::WITNESS_TIMEOUT_MARGIN
    );
    let config = lab.config(&config_with(Some("1500ms")));
    assert_eq!(config.witnesses[0].timeout, Duration::from_millis(1500));

    for short in ["700ms", "500ms"] {
        let path = lab.write_config(&config_with(Some(short)));
        let err = coordinator::config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("witness[0].timeout") && err.contains("700ms") && err.contains("web"),
            "{err}"
        );
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }
}
