//! Every example config in `deploy/examples/coordinator*.toml` parses into `RawConfig`, and
//! validation fails only on the files an example names that cannot exist on a test machine
//! (keys, tokens, secrets); copied next to such files, it validates completely. Also the
//! defaults of optional tables (a service without `[service.hooks]`), and what `check`
//! refuses: relative backend paths resolve against the config's folder, a service zone that
//! is not the backend's, a probe key of another kind; and the backend's secret is read once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use coordinator::config::RawConfig;

/// The keys whose value is a file the config reads while validating.
const FILE_KEYS: [&str; 7] = [
    "key_file",
    "token_file",
    "api_token_file",
    "tsig_secret_file",
    "url_file",
    "probe_ca_file",
    "secret_file",
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
            Err(e) => e.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
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
        let mut files: Vec<PathBuf> = raw.api.token_file.iter().cloned().collect();
        files.extend(raw.coordinator.key_file.clone());
        files.extend(raw.notify.webhook.iter().filter_map(|w| w.url_file.clone()));
        files.extend(
            raw.notify
                .webhook
                .iter()
                .filter_map(|w| w.secret_file.clone()),
        );
        files.extend(raw.notify.ntfy.iter().filter_map(|n| n.token_file.clone()));
        files.extend(
            raw.notify
                .email
                .iter()
                .filter_map(|m| m.password_file.clone()),
        );
        files.extend(raw.coordinator.probe_ca_file.clone());
        for b in &raw.dns.backends {
            for key in ["tsig_secret_file", "api_token_file"] {
                if let Some(toml::Value::String(s)) = b.rest.get(key) {
                    files.push(s.into());
                }
            }
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

/// The one-service test config with `dns` as the body of its `[dns]` table.
fn config_with_dns(dns: &str) -> String {
    let w = shared::keys::generate();
    let lo = "127.0.0.1".parse().unwrap();
    let block = common::witness_block("w1", "https://127.0.0.1:9", &w.verifying_key(), None);
    let mut opts = common::Opts::new(vec![block], lo, lo, 80);
    opts.quorum = 1;
    opts.dns = dns.to_string();
    opts.toml()
}

/// A TSIG secret (32 bytes, base64) written mode 0600 at `path`.
fn write_tsig_secret(path: &Path) {
    shared::keys::write_private_file(path, b"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYg==")
        .unwrap();
}

/// Regression: relative `tsig_secret_file`, `api_key_file`, `password_file`, `ca_file` and an
/// exec `command` path were opened relative to the working directory (`/` under systemd),
/// not the config file's folder as the example's header promises. The tests run in the
/// crate's folder, where none of these files exist.
#[test]
fn relative_backend_paths_resolve_against_the_config_folder() {
    use coordinator::dns::BackendConfig;
    let lab = common::Lab::new();
    let dir = lab.path();
    write_tsig_secret(&dir.join("tsig.secret"));
    shared::keys::write_private_file(&dir.join("pdns.key"), b"an-api-key").unwrap();
    shared::keys::write_private_file(&dir.join("vm.password"), b"s3cret").unwrap();
    let (cert, _) = shared::tls::self_signed(&["dns.example.test".into()]).unwrap();
    std::fs::write(dir.join("ca.pem"), cert).unwrap();
    std::fs::create_dir(dir.join("bin")).unwrap();
    for script in ["update-dns", "read-dns"] {
        let path = dir.join("bin").join(script);
        std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(!Path::new("tsig.secret").exists() && !Path::new("bin/update-dns").exists());

    let rfc2136 = lab.config(&config_with_dns(
        "type = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nzone = \"example.test.\"\ntsig_key_name = \"quorate\"\ntsig_secret_file = \"tsig.secret\"\n",
    ));
    match &rfc2136.dns.backends[0].config {
        BackendConfig::Rfc2136(c) => assert_eq!(c.tsig_secret_file, dir.join("tsig.secret")),
        other => panic!("{other:?}"),
    }
    let powerdns = lab.config(&config_with_dns(
        "type = \"powerdns\"\nurl = \"https://127.0.0.1:8081\"\nzone = \"example.test.\"\napi_key_file = \"pdns.key\"\nca_file = \"ca.pem\"\n",
    ));
    match &powerdns.dns.backends[0].config {
        BackendConfig::Powerdns(c) => {
            assert_eq!(c.api_key_file, dir.join("pdns.key"));
            assert_eq!(c.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        }
        other => panic!("{other:?}"),
    }
    let virtualmin = lab.config(&config_with_dns(
        "type = \"virtualmin\"\nurl = \"https://127.0.0.1:10000\"\nzone = \"example.test\"\nuser = \"quorate\"\npassword_file = \"vm.password\"\nca_file = \"ca.pem\"\n",
    ));
    match &virtualmin.dns.backends[0].config {
        BackendConfig::Virtualmin(c) => {
            assert_eq!(c.password_file, dir.join("vm.password"));
            assert_eq!(c.ca_file.as_deref(), Some(dir.join("ca.pem").as_path()));
        }
        other => panic!("{other:?}"),
    }
    let exec = lab.config(&config_with_dns(
        "type = \"exec\"\ncommand = [\"./bin/update-dns\", \"--zone\", \"example.test\"]\ncurrent_command = [\"bin/read-dns\"]\n",
    ));
    match &exec.dns.backends[0].config {
        BackendConfig::Exec(c) => {
            let abs = std::path::absolute(dir).unwrap();
            assert_eq!(Path::new(&c.command[0]), abs.join("./bin/update-dns"));
            assert_eq!(c.command[1..], ["--zone", "example.test"]);
            let current = c.current_command.as_ref().unwrap();
            assert_eq!(Path::new(&current[0]), abs.join("bin/read-dns"));
        }
        other => panic!("{other:?}"),
    }
    // A bare command name is not a path: still refused (no $PATH lookup).
    let path = lab.write_config(&config_with_dns(
        "type = \"exec\"\ncommand = [\"update-dns\"]\n",
    ));
    let err = coordinator::config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("dns.command") && err.contains("absolute path"),
        "{err}"
    );
}

/// Regression: a service whose zone is not the backend's validated, and every failover then
/// failed with a permanent error that blocked switching. `check` refuses it, naming both.
#[test]
fn a_service_zone_outside_the_backend_zone_fails_check() {
    let lab = common::Lab::new();
    write_tsig_secret(&lab.path().join("tsig.secret"));
    let path = lab.write_config(&config_with_dns(
        "type = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nzone = \"other.test.\"\ntsig_key_name = \"quorate\"\ntsig_secret_file = \"tsig.secret\"\n",
    ));
    let err = coordinator::config::load(&path).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("service \"web\".zone"), "{err}");
    assert!(
        err.contains("\"example.test.\"") && err.contains("\"other.test.\""),
        "{err}"
    );
    // The same zone written differently (case, trailing dot) is the same zone.
    let ok = config_with_dns(
        "type = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nzone = \"Example.Test\"\ntsig_key_name = \"quorate\"\ntsig_secret_file = \"tsig.secret\"\n",
    );
    assert_eq!(lab.config(&ok).services[0].zone, "example.test.");
}

/// Regression: a probe key that does not belong to the probe's kind (`query_name` on an
/// http probe, `expect_status` on a tcp probe) was silently ignored; now it is refused, by name.
#[test]
fn a_probe_key_of_another_kind_fails_check() {
    let lab = common::Lab::new();
    let text = config_with_dns("type = \"dryrun\"\n");
    let cases = [
        (
            "path = \"/health\"",
            "path = \"/health\", query_name = \"www.example.test\"",
            "query_name",
        ),
        ("kind = \"http\"", "kind = \"tcp\"", "expect_status"),
        ("kind = \"http\"", "kind = \"ftp\"", "ftp"),
    ];
    for (from, to, key) in cases {
        assert!(text.contains(from), "{from}");
        let path = lab.write_config(&text.replacen(from, to, 1));
        let err = coordinator::config::load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&path.display().to_string()), "{err}");
        assert!(err.contains(&format!("`{key}`")), "{to}: {err}");
    }
    // Each kind still takes its own keys.
    let tcp = text.replacen(
        "kind = \"http\", port = 80, path = \"/health\", expect_status = [200],",
        "kind = \"tcp\", port = 80,",
        1,
    );
    assert!(tcp.contains("kind = \"tcp\""), "{tcp}");
    let config = lab.config(&tcp);
    assert!(matches!(
        config.services[0].primary_probe,
        shared::probe::ProbeSpec::Tcp(_)
    ));
}

/// Errors about a service name it by name, not by its position in the file.
#[test]
fn service_errors_name_the_service() {
    let lab = common::Lab::new();
    let text = config_with_dns("type = \"dryrun\"\n").replacen("quorum = 1", "quorum = 3", 1);
    let path = lab.write_config(&text);
    let err = coordinator::config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("service \"web\".quorum: expected between 1"),
        "{err}"
    );
}

/// Regression: the backend's secret file was read twice (validation built the backend, then
/// start built it again). Now validation reads it once and the composition root starts the
/// backend built from it: removing the file after `load` changes nothing.
#[tokio::test]
async fn the_backend_secret_is_read_once() {
    let lab = common::Lab::new();
    let secret = lab.path().join("tsig.secret");
    write_tsig_secret(&secret);
    let config = lab.config(&config_with_dns(
        "type = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nzone = \"example.test.\"\ntsig_key_name = \"quorate\"\ntsig_secret_file = \"tsig.secret\"\n",
    ));
    std::fs::remove_file(&secret).unwrap();
    let store = coordinator::store::Store::open(&config.database).unwrap();
    let sup = coordinator::supervise::Supervisor::new(
        tokio_util::task::TaskTracker::new(),
        std::sync::Arc::new(coordinator::metrics::Metrics::new()),
        tokio_util::sync::CancellationToken::new(),
    );
    let started = coordinator::compose::start(&config, &store, &sup)
        .await
        .unwrap();
    assert_eq!(started.backends["default"].kind(), "rfc2136");
}
