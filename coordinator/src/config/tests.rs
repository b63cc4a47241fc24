//! Unit tests of the config's pieces that need no files: how backend errors become key paths,
//! named backends, the two refusals (a service outside its backend's zone, two services
//! switching one name), and `verify`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::dns::{RawDns, bind_services, push_setting_error, validate};
use super::service::{RawService, ServiceConfig};
use crate::dns::{SettingError, exec};
use shared::config::Diagnostics;

fn raw_service(name: &str, zone: &str, extra: &str) -> RawService {
    toml::from_str(&format!(
        r#"name = "{name}"
zone = "{zone}"
names = ["www"]
primary = {{ addresses = ["192.0.2.1"] }}
backup = {{ addresses = ["192.0.2.2"] }}
probe = {{ kind = "tcp", port = 80 }}
{extra}
"#
    ))
    .unwrap()
}

/// Services validated as `validate` does, before they meet the backends.
fn services(raw: &[RawService]) -> Vec<ServiceConfig> {
    let witnesses: Vec<super::witness::RawWitness> = vec![toml::from_str(
        "name = \"w\"\nurl = \"https://192.0.2.9:8443\"\npublic_key = \"ed25519:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"\n",
    )
    .unwrap()];
    let mut d = Diagnostics::new(Path::new("c.toml"));
    let out = super::service::validate_all(
        raw,
        &witnesses,
        Some(std::time::Duration::from_secs(5)),
        &mut d,
    );
    assert!(
        d.is_empty(),
        "{:?}",
        d.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    );
    out
}

/// `[dns]` as TOML → validated, and the lines of every error.
fn dns(text: &str) -> (Option<super::DnsConfig>, bool, Vec<String>) {
    let raw: RawDns = toml::from_str(text).unwrap();
    let mut d = Diagnostics::new(Path::new("c.toml"));
    // The folder of the config: the rfc2136 backend's secret file `s` is read from it.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let got = validate(&raw, dir.path(), &mut d);
    (got, raw.named, d.iter().map(|x| x.to_string()).collect())
}

/// The lines `bind_services` reports for `raw` services against `[dns]` as `text`.
fn bind(text: &str, raw: &[RawService]) -> (Vec<ServiceConfig>, Vec<String>) {
    let (dns, named, lines) = dns(text);
    assert!(lines.is_empty(), "{lines:?}");
    let mut svcs = services(raw);
    let mut d = Diagnostics::new(Path::new("c.toml"));
    bind_services(&dns.unwrap(), named, &mut svcs, &mut d);
    (svcs, d.iter().map(|x| x.to_string()).collect())
}

const RFC2136: &str = "type = \"rfc2136\"\nserver = \"192.0.2.53:53\"\nzone = \"Example.COM\"\ntsig_key_name = \"k\"\ntsig_secret_file = \"s\"\n";

#[test]
fn backend_errors_get_a_key_path_under_their_table() {
    let mut d = Diagnostics::new(Path::new("c.toml"));
    push_setting_error(
        &mut d,
        "dns",
        &SettingError::new(
            "url",
            "expected a URL like \"http://127.0.0.1:8081\", got \"x\"",
        ),
    );
    push_setting_error(
        &mut d,
        "dns.edge",
        &SettingError::new("records[2].value", "expected an IPv4 address"),
    );
    let empty: exec::Config = toml::from_str("command = []").unwrap();
    push_setting_error(&mut d, "dns", &exec::build(&empty).unwrap_err());
    let keys: Vec<&str> = d.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(
        keys,
        ["dns.url", "dns.edge.records[2].value", "dns.command"]
    );
    assert_eq!(
        d.iter().next().unwrap().to_string(),
        "c.toml: dns.url: expected a URL like \"http://127.0.0.1:8081\", got \"x\""
    );
}

#[test]
fn one_table_is_the_default_backend_and_named_tables_are_named_backends() {
    let (one, named, lines) = dns("type = \"dryrun\"\n");
    assert!(lines.is_empty() && !named, "{lines:?}");
    let one = one.unwrap();
    assert_eq!(one.backends.len(), 1);
    assert_eq!(one.backends[0].name, "default");
    assert_eq!(one.backends[0].label(), "dryrun");

    let (two, named, lines) = dns(
        "[edge]\ntype = \"dryrun\"\n[inside]\ntype = \"exec\"\ncommand = [\"/bin/true\"]\n[inside.verify]\nservers = [\"192.0.2.53:53\"]\n",
    );
    assert!(lines.is_empty() && named, "{lines:?}");
    let two = two.unwrap();
    let names: Vec<&str> = two.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["edge", "inside"]);
    assert_eq!(two.get("inside").unwrap().label(), "inside (exec)");
    assert_eq!(
        two.get("inside").unwrap().verify_servers(),
        ["192.0.2.53:53".parse().unwrap()]
    );
    assert!(two.get("edge").unwrap().verify_servers().is_empty());

    // A backend's own errors are keyed under its name.
    let (got, _, lines) = dns("[edge]\ntype = \"exec\"\ncommand = []\n");
    assert!(got.is_none());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("c.toml: dns.edge.command: "),
        "{}",
        lines[0]
    );
}

#[test]
fn malformed_dns_tables_are_named() {
    let err = |text: &str| toml::from_str::<RawDns>(text).unwrap_err().to_string();
    let e = err("");
    assert!(
        e.contains("dns: no backend") && e.contains("[dns.<name>]"),
        "{e}"
    );
    let e = err("[edge]\nzone = \"example.test\"\n");
    assert!(e.contains("dns.edge.type: missing"), "{e}");
    let e = err("[verify]\nservers = []\n[edge]\ntype = \"dryrun\"\n");
    assert!(e.contains("[dns.<name>.verify]"), "{e}");
    let e = err("[\"a b\"]\ntype = \"dryrun\"\n");
    assert!(e.contains("expected a backend name"), "{e}");
    let e = err("edge = 3\n");
    assert!(e.contains("dns.edge: expected a table"), "{e}");
}

#[test]
fn a_service_zone_outside_its_backends_zone_is_refused() {
    let raw = [
        raw_service("www", "example.com.", ""),
        raw_service("shop", "shop.example.com", ""),
    ];
    let (_, lines) = bind(RFC2136, &raw);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("c.toml: service \"shop\".zone: \"shop.example.com.\" is not the zone of the rfc2136 backend (\"example.com.\", dns.zone)"),
        "{}",
        lines[0]
    );
    // A backend without a zone of its own (exec, dryrun) takes any.
    let (_, lines) = bind("type = \"dryrun\"\n", &raw);
    assert!(lines.is_empty(), "{lines:?}");

    // Named: each service against the backend it names.
    let named = format!("[shop]\ntype = \"dryrun\"\n[main]\n{RFC2136}");
    let raw = [
        raw_service("www", "example.com.", "dns = \"main\""),
        raw_service("shop", "shop.example.com", "dns = \"shop\""),
        raw_service("blog", "blog.example.com", "dns = \"main\""),
    ];
    let (svcs, lines) = bind(&named, &raw);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("c.toml: service \"blog\".zone: \"blog.example.com.\" is not the zone of the main (rfc2136) backend (\"example.com.\", dns.main.zone)"),
        "{}",
        lines[0]
    );
    let dns: Vec<&str> = svcs.iter().map(|s| s.dns.as_str()).collect();
    assert_eq!(dns, ["main", "shop", "main"]);
}

#[test]
fn a_service_names_a_backend_that_exists() {
    let two = "[a]\ntype = \"dryrun\"\n[b]\ntype = \"dryrun\"\n";
    let (_, lines) = bind(two, &[raw_service("www", "example.com", "")]);
    assert_eq!(
        lines,
        [
            "c.toml: service \"www\".dns: missing; with several DNS backends each service names its own: expected one of \"a\", \"b\""
        ]
    );
    let (_, lines) = bind(two, &[raw_service("www", "example.com", "dns = \"c\"")]);
    assert_eq!(
        lines,
        ["c.toml: service \"www\".dns: no DNS backend named \"c\"; expected one of \"a\", \"b\""]
    );
    let (svcs, lines) = bind(
        "type = \"dryrun\"\n",
        &[raw_service("www", "example.com", "")],
    );
    assert!(lines.is_empty());
    assert_eq!(svcs[0].dns, "default");
    let (_, lines) = bind(
        "type = \"dryrun\"\n",
        &[raw_service("www", "example.com", "dns = \"edge\"")],
    );
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("the single [dns] table is named \"default\""),
        "{}",
        lines[0]
    );
}

#[test]
fn two_services_switching_one_name_are_refused() {
    let two = "[a]\ntype = \"dryrun\"\n[b]\ntype = \"dryrun\"\n";
    let raw = [
        raw_service("www", "example.com", "dns = \"a\""),
        raw_service("www2", "EXAMPLE.com.", "dns = \"b\""),
        raw_service("other", "example.org", "dns = \"a\""),
    ];
    let (_, lines) = bind(two, &raw);
    assert_eq!(
        lines,
        [
            "c.toml: service \"www2\".names[0]: \"www.example.com.\" is switched by service \"www\" too; two services must not switch the same name (each would undo the other's change): keep it in one of them"
        ]
    );
}

#[test]
fn builtin_backends_share_a_server_only_on_the_same_addresses() {
    let zone = |name: &str, listen: &str, zone: &str| {
        format!(
            "[{name}]\ntype = \"builtin\"\nlisten = [{listen}]\nzone = \"{zone}\"\nns = [\"ns1.{zone}\"]\nrecords = [{{ name = \"ns1\", type = \"A\", value = \"192.0.2.53\" }}]\n"
        )
    };
    let same =
        zone("a", "\"127.0.0.1:5300\"", "a.test.") + &zone("b", "\"127.0.0.1:5300\"", "b.test.");
    let (got, _, lines) = dns(&same);
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(got.unwrap().backends.len(), 2);
    let apart =
        zone("a", "\"127.0.0.1:5300\"", "a.test.") + &zone("b", "\"127.0.0.1:5301\"", "b.test.");
    assert!(dns(&apart).2.is_empty());
    let overlap = zone("a", "\"127.0.0.1:5300\"", "a.test.")
        + &zone("b", "\"127.0.0.1:5300\", \"127.0.0.1:5301\"", "b.test.");
    let lines = dns(&overlap).2;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("c.toml: dns.b.listen: shares addresses with the built-in backend \"a\""),
        "{}",
        lines[0]
    );
    let twice =
        zone("a", "\"127.0.0.1:5300\"", "a.test.") + &zone("b", "\"127.0.0.1:5300\"", "a.test.");
    let lines = dns(&twice).2;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "c.toml: dns.b.zone: \"a.test.\" is served already by the built-in backend \"a\""
        ),
        "{}",
        lines[0]
    );
}

#[test]
fn dns_verify_discovery_keys() {
    let check = |verify: &str| {
        let (got, _, lines) = dns(&format!("type = \"dryrun\"\n{verify}"));
        (
            got.map(|c| {
                (
                    c.backends[0].verify.discover_ns,
                    c.backends[0].verify.ns_port,
                )
            }),
            lines,
        )
    };
    assert_eq!(check(""), (Some((true, 53)), vec![]));
    assert_eq!(check("[verify]\n"), (Some((true, 53)), vec![]));
    assert_eq!(
        check("[verify]\ndiscover_ns = false\nns_port = 5353\n"),
        (Some((false, 5353)), vec![])
    );
    for bad in ["0", "70000", "-1"] {
        let (got, lines) = check(&format!("[verify]\nns_port = {bad}\n"));
        assert_eq!(got, None, "{bad}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0]
                .starts_with("c.toml: dns.verify.ns_port: expected a port number from 1 to 65535")
                && lines[0].contains(bad),
            "{}",
            lines[0]
        );
    }
    let err = toml::from_str::<RawDns>("type = \"dryrun\"\n[verify]\ndiscover_ns = \"yes\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("dns.verify") && err.contains("bool"), "{err}");
    // Named: the key says which backend.
    let (_, _, lines) = dns("[edge]\ntype = \"dryrun\"\n[edge.verify]\nns_port = 0\n");
    assert!(
        lines[0].starts_with("c.toml: dns.edge.verify.ns_port: "),
        "{lines:?}"
    );
}

#[test]
fn route53_secret_access_key_sources_are_checked_with_the_key_named() {
    const R53: &str =
        "[aws]\ntype = \"route53\"\nzone = \"example.com.\"\nhosted_zone_id = \"Z1\"\n";
    // A relative secret file is read from the config's folder (`s`, 0600).
    let (got, _, lines) = dns(&format!(
        "{R53}access_key_id = \"AKIAQUORATE\"\nsecret_access_key_file = \"s\"\n"
    ));
    assert!(lines.is_empty(), "{lines:?}");
    assert!(got.is_some());
    let cases = [
        (
            "secret_access_key_env = \"QUORATE_R53\"\n",
            "c.toml: dns.aws.access_key_id: missing; a secret_access_key_* key is set",
        ),
        (
            "access_key_id = \"AKIAQ\"\n",
            "c.toml: dns.aws.secret_access_key_file: missing; expected one of secret_access_key_file (a mode 0600 file), secret_access_key_env (an environment variable's name) or secret_access_key_credential (a systemd credential's name)",
        ),
        (
            "access_key_id = \"AKIAQ\"\nsecret_access_key_env = \"A\"\nsecret_access_key_credential = \"b\"\n",
            "c.toml: dns.aws.secret_access_key_file: give only one of secret_access_key_file, secret_access_key_env and secret_access_key_credential",
        ),
        (
            "access_key_id = \"AKIAQ\"\nsecret_access_key_file = \"s\"\ncredentials_file = \"s\"\n",
            "c.toml: dns.aws.credentials_file: give either credentials_file (and profile) or access_key_id",
        ),
        (
            "access_key_id = \"AKIAQ\"\nsecret_access_key_env = \"QUORATE_SURELY_UNSET_R53\"\n",
            "c.toml: dns.aws.secret_access_key_env: environment variable QUORATE_SURELY_UNSET_R53 is not set",
        ),
    ];
    for (extra, want) in cases {
        let (got, _, lines) = dns(&format!("{R53}{extra}"));
        assert!(got.is_none(), "{extra}");
        assert_eq!(lines.len(), 1, "{extra}: {lines:?}");
        assert!(lines[0].starts_with(want), "{extra}: {}", lines[0]);
    }
}
