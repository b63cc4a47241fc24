//! Unit tests of the config's pieces that need no files: how backend errors become key paths,
//! the service-zone check against the backend's zone, and `[dns.verify]`.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::dns::{RawDns, check_zones, push_setting_error, validate};
use super::service::RawService;
use crate::dns::{BackendConfig, SettingError, exec};
use shared::config::Diagnostics;

fn service(name: &str, zone: &str) -> RawService {
    toml::from_str(&format!(
        r#"name = "{name}"
zone = "{zone}"
names = ["www"]
primary = {{ addresses = ["192.0.2.1"] }}
backup = {{ addresses = ["192.0.2.2"] }}
probe = {{ kind = "tcp", port = 80 }}
"#
    ))
    .unwrap()
}

#[test]
fn backend_errors_get_a_key_path_under_dns() {
    let mut d = Diagnostics::new(Path::new("c.toml"));
    push_setting_error(
        &mut d,
        &SettingError::new(
            "url",
            "expected a URL like \"http://127.0.0.1:8081\", got \"x\"",
        ),
    );
    push_setting_error(
        &mut d,
        &SettingError::new("records[2].value", "expected an IPv4 address"),
    );
    let empty: exec::Config = toml::from_str("command = []").unwrap();
    push_setting_error(&mut d, &exec::build(&empty).unwrap_err());
    let keys: Vec<&str> = d.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(keys, ["dns.url", "dns.records[2].value", "dns.command"]);
    assert_eq!(
        d.iter().next().unwrap().to_string(),
        "c.toml: dns.url: expected a URL like \"http://127.0.0.1:8081\", got \"x\""
    );
}

#[test]
fn service_zones_must_be_the_backends_zone() {
    let rfc2136: BackendConfig = toml::from_str(
        "type = \"rfc2136\"\nserver = \"192.0.2.53:53\"\nzone = \"Example.COM\"\ntsig_key_name = \"k\"\ntsig_secret_file = \"s\"\n",
    )
    .unwrap();
    let services = [
        service("www", "example.com."),
        service("shop", "shop.example.com"),
    ];
    let mut d = Diagnostics::new(Path::new("c.toml"));
    check_zones(&rfc2136, &services, &mut d);
    let lines: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("c.toml: service \"shop\".zone: \"shop.example.com.\" is not the zone of the rfc2136 backend (\"example.com.\""),
        "{}",
        lines[0]
    );
    // A backend without a zone of its own (exec, dryrun) takes any.
    let exec: BackendConfig = toml::from_str("type = \"dryrun\"\n").unwrap();
    let mut d = Diagnostics::new(Path::new("c.toml"));
    check_zones(&exec, &services, &mut d);
    assert!(d.is_empty());
}

#[test]
fn dns_verify_discovery_keys() {
    let check = |verify: &str| {
        let raw: RawDns = toml::from_str(&format!("type = \"dryrun\"\n{verify}")).unwrap();
        let mut d = Diagnostics::new(Path::new("c.toml"));
        let got = validate(&raw, Path::new("/"), &mut d);
        let lines: Vec<String> = d.iter().map(|x| x.to_string()).collect();
        (got.map(|c| (c.discover_ns, c.ns_port)), lines)
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
}
