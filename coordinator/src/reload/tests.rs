//! The reload plan, one config change at a time: what is refused (needs a restart) and which
//! services and witnesses are added, changed or removed.

use super::*;

/// A folder with the coordinator's key, API token and three witness keys; `config(extra)`
/// writes and loads a config with a dry-run backend.
struct Files {
    dir: tempfile::TempDir,
    witness_keys: Vec<String>,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        shared::keys::write_signing_key(&dir.path().join("c.key"), &shared::keys::generate())
            .unwrap();
        shared::keys::write_private_file(&dir.path().join("api.token"), b"0123456789abcdef0")
            .unwrap();
        let witness_keys = (0..3)
            .map(|_| shared::keys::format_public_key(&shared::keys::generate().verifying_key()))
            .collect();
        Files { dir, witness_keys }
    }

    fn witness(&self, i: usize, url: &str) -> String {
        format!(
            "[[witness]]\nname = \"w{i}\"\nurl = \"{url}\"\npublic_key = \"{}\"\n",
            self.witness_keys[i]
        )
    }

    fn service(name: &str, primary: &str, witnesses: &str) -> String {
        format!(
            r#"[[service]]
name = "{name}"
zone = "example.test"
names = ["{name}"]
primary = {{ addresses = ["{primary}"] }}
backup = {{ addresses = ["192.0.2.2"] }}
probe = {{ kind = "tcp", port = 80 }}
witnesses = {witnesses}
"#
        )
    }

    fn config(&self, listen: &str, body: &str) -> Config {
        let text = format!(
            "[coordinator]\nkey_file = \"c.key\"\ndatabase = \"h.db\"\n\n[api]\nlisten = \"{listen}\"\ntoken_file = \"api.token\"\n\n[dns]\ntype = \"dryrun\"\n\n{body}"
        );
        let path = self.dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }
}

fn diff(added: &[&str], changed: &[&str], removed: &[&str]) -> Diff {
    let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    Diff {
        added: v(added),
        changed: v(changed),
        removed: v(removed),
    }
}

#[test]
fn services_and_witnesses_added_changed_and_removed() {
    let f = Files::new();
    let (w0, w1, w2) = (
        f.witness(0, "https://192.0.2.10:8443"),
        f.witness(1, "https://192.0.2.11:8443"),
        f.witness(2, "https://192.0.2.12:8443"),
    );
    let old = f.config(
        "127.0.0.1:8080",
        &format!(
            "{w0}{w1}{}{}{}",
            Files::service("a", "192.0.2.1", r#"["w0"]"#),
            Files::service("b", "192.0.2.1", r#"["w0", "w1"]"#),
            Files::service("c", "192.0.2.1", r#"["w0"]"#),
        ),
    );
    // Nothing changed: an empty plan.
    let same = f.config(
        "127.0.0.1:8080",
        &format!(
            "{w0}{w1}{}{}{}",
            Files::service("a", "192.0.2.1", r#"["w0"]"#),
            Files::service("b", "192.0.2.1", r#"["w0", "w1"]"#),
            Files::service("c", "192.0.2.1", r#"["w0"]"#),
        ),
    );
    assert_eq!(plan(&old, &same).unwrap(), Plan::default());

    // w1 removed and w2 added (before w0, so every index shifts); "a" untouched although its
    // witness's index moved; "b" asks other witnesses; "c" gets another address; "d" added;
    // nothing removed yet.
    let new = f.config(
        "127.0.0.1:8080",
        &format!(
            "{w2}{w0}{}{}{}{}",
            Files::service("a", "192.0.2.1", r#"["w0"]"#),
            Files::service("b", "192.0.2.1", r#"["w0", "w2"]"#),
            Files::service("c", "192.0.2.9", r#"["w0"]"#),
            Files::service("d", "192.0.2.1", r#"["w2"]"#),
        ),
    );
    assert_eq!(
        plan(&old, &new).unwrap(),
        Plan {
            services: diff(&["d"], &["b", "c"], &[]),
            witnesses: diff(&["w2"], &[], &["w1"]),
        }
    );

    // A witness's URL changes: every service asking it starts again; "c" is removed.
    let moved = f.witness(0, "https://192.0.2.20:8443");
    let newer = f.config(
        "127.0.0.1:8080",
        &format!(
            "{w2}{moved}{}{}{}",
            Files::service("a", "192.0.2.1", r#"["w0"]"#),
            Files::service("b", "192.0.2.1", r#"["w0", "w2"]"#),
            Files::service("d", "192.0.2.1", r#"["w2"]"#),
        ),
    );
    assert_eq!(
        plan(&new, &newer).unwrap(),
        Plan {
            services: diff(&[], &["a", "b"], &["c"]),
            witnesses: diff(&[], &["w0"], &[]),
        }
    );
}

#[test]
fn what_needs_a_restart_is_refused_and_a_key_rotation_starts_every_service_again() {
    let f = Files::new();
    let body = format!(
        "{}{}",
        f.witness(0, "https://192.0.2.10:8443"),
        Files::service("a", "192.0.2.1", r#"["w0"]"#)
    );
    let old = f.config("127.0.0.1:8080", &body);
    let new = f.config("127.0.0.1:8081", &body);
    let file = new.path.display().to_string();
    assert_eq!(
        plan(&old, &new).unwrap_err(),
        [format!("{file}: api.listen: changed: restart to apply")]
    );
    // Another backend: refused. A new signing key (a rotation): every service starts again.
    let mut other = f.config("127.0.0.1:8080", &body);
    other.dns.backends[0]
        .table
        .insert("zone".into(), "example.test".into());
    assert_eq!(
        plan(&old, &other).unwrap_err(),
        [format!("{file}: dns: changed: restart to apply")]
    );
    std::fs::remove_file(f.dir.path().join("c.key")).unwrap();
    shared::keys::write_signing_key(&f.dir.path().join("c.key"), &shared::keys::generate())
        .unwrap();
    let rotated = f.config("127.0.0.1:8080", &body);
    assert_eq!(
        plan(&old, &rotated).unwrap(),
        Plan {
            services: diff(&[], &["a"], &[]),
            witnesses: Diff::default(),
        }
    );
}

#[test]
fn a_new_api_certificate_is_refused_until_a_restart() {
    let f = Files::new();
    let body = format!(
        "{}{}",
        f.witness(0, "https://192.0.2.10:8443"),
        Files::service("a", "192.0.2.1", r#"["w0"]"#)
    );
    let write_pair = |f: &Files| {
        let (cert, key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        std::fs::write(f.dir.path().join("api.crt"), cert).unwrap();
        let k = f.dir.path().join("api.key");
        let _ = std::fs::remove_file(&k);
        shared::keys::write_private_file(&k, key.as_bytes()).unwrap();
    };
    // The config `Files::config` writes, with the TLS keys added to its `[api]`.
    let with_tls = |f: &Files| {
        f.config("127.0.0.1:8080", &body);
        let path = f.dir.path().join("c.toml");
        let t = std::fs::read_to_string(&path).unwrap().replace(
            "token_file = \"api.token\"\n",
            "token_file = \"api.token\"\ntls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\n",
        );
        std::fs::write(&path, t).unwrap();
        config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    };
    let plain = f.config("127.0.0.1:8080", &body);
    write_pair(&f);
    let first = with_tls(&f);
    let same = with_tls(&f);
    let file = first.path.display().to_string();
    let refused = [format!(
        "{file}: api.tls_cert_file / api.tls_key_file (the API's certificate): changed: restart to apply"
    )];
    assert_eq!(plan(&plain, &first).unwrap_err(), refused);
    assert!(plan(&first, &same).is_ok(), "the same files: nothing to do");
    // A renewed certificate at the same paths is a change too.
    write_pair(&f);
    let renewed = with_tls(&f);
    assert_eq!(plan(&first, &renewed).unwrap_err(), refused);
}
