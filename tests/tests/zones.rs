//! Two zones at two different kinds of DNS server, guarded by one coordinator: the rig's
//! `www.example.test.` on BIND, changed over RFC 2136 with TSIG (backend `office`), and
//! `shop.other.test.` on PowerDNS, changed through its HTTP API (backend `edge`). Real
//! binaries, real witnesses over HTTPS, real BIND and PowerDNS. Each service has its own
//! primary and fails over on its own: a stopped primary moves only its own zone, on its own
//! server, and each comes back after its hold-down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use tests::lab::poll_until;
use tests::net::{free_port, random_secret};
use tests::pdns::Pdns;
use tests::rig::{BACKUP, PRIMARY, Rig, RigOptions, SERVICE, Site, WebSite};

const WAIT: Duration = Duration::from_secs(30);

/// What `server` serves for `name` A (`dig`, no recursion).
fn dig_a(server: SocketAddr, name: &str) -> Vec<IpAddr> {
    let out = Command::new("dig")
        .args(["+short", "+norecurse", "+time=1", "+tries=1", "-p"])
        .arg(server.port().to_string())
        .arg(format!("@{}", server.ip()))
        .args([name, "A"])
        .output()
        .expect("dig (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until `server` serves exactly `want` for `name`.
fn wait_served(rig: &Rig, server: SocketAddr, name: &str, want: IpAddr, why: &str) {
    poll_until(why, WAIT, Duration::from_millis(100), |last| {
        let got = dig_a(server, name);
        *last = format!("{name} A at {server}: {got:?}");
        (got == [want]).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n--- coordinator log ---\n{}", rig.coordinator_log()));
}

/// The DNS changes of `service`, oldest first.
fn changes(rig: &Rig, service: &str) -> Vec<serde_json::Value> {
    let v = rig.api_get(&format!("/v1/dns-changes?service={service}"));
    let mut list = v["items"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

#[test]
fn two_zones_on_bind_and_powerdns_fail_over_each_on_its_own() {
    let api_key = random_secret(24);
    let pdns = Pdns::start("other.test", &[("shop", "A", 60, "127.0.0.2")], &api_key);
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("pdns.key");
    std::fs::write(&key_file, format!("{api_key}\n")).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // The second service's own primary and backup, on a port of their own.
    let port = free_port();
    let mut shop_primary = WebSite::start(SocketAddr::from((PRIMARY, port)), "shop primary");
    let _shop_backup = WebSite::start(SocketAddr::from((BACKUP, port)), "shop backup");

    let (pdns_dns, pdns_url) = (pdns.dns_addr(), pdns.api_url());
    let key_path = key_file.display().to_string();
    let opts = RigOptions {
        witnesses: 2,
        ..RigOptions::default()
    }
    .with_witness(move |_, w| {
        w.allow.push((format!("{PRIMARY}/32"), vec![port]));
        w.allow.push((format!("{BACKUP}/32"), vec![port]));
    })
    .with_config(move |c| {
        // The rig's single [dns] table becomes the backend "office"; PowerDNS is "edge".
        let office = std::mem::take(&mut c.dns);
        let office_verify = std::mem::take(&mut c.dns_verify);
        c.dns = format!(
            "\n[dns.office]\n{office}\n[dns.office.verify]\n{office_verify}\n\
             [dns.edge]\ntype = \"powerdns\"\nurl = \"{pdns_url}\"\nzone = \"other.test.\"\n\
             api_key_file = \"{key_path}\"\ntimeout = \"2s\"\n\
             [dns.edge.verify]\nservers = [\"{pdns_dns}\"]\nns_port = {ns_port}\ntimeout = \"5s\"\n",
            ns_port = pdns_dns.port(),
        );
        c.services[0] = c.services[0].replacen("[[service]]\n", "[[service]]\ndns = \"office\"\n", 1);
        c.services.push(format!(
            "[[service]]\nname = \"shop\"\nzone = \"other.test\"\ndns = \"edge\"\nnames = [\"shop\"]\nttl = 30\n\
             primary = {{ addresses = [\"{PRIMARY}\"] }}\nbackup = {{ addresses = [\"{BACKUP}\"] }}\n\
             probe = {{ kind = \"http\", port = {port}, path = \"/\", expect_status = [200], timeout = \"400ms\" }}\n\
             fail_after = 2\nrecover_after = 3\n"
        ));
    });
    let mut rig = Rig::start(opts);
    let bind = rig.bind().addr();
    let (p, b) = (IpAddr::from(PRIMARY), IpAddr::from(BACKUP));

    // `check` accepts the two backends, and both services run on their primaries.
    let out = rig.coordinator_cli(&["check"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    rig.wait_round(2, WAIT);
    assert_eq!(dig_a(bind, "www.example.test."), [p]);
    assert_eq!(dig_a(pdns_dns, "shop.other.test."), [p]);

    // The rig's primary stops: www moves on BIND; shop stays on its primary at PowerDNS.
    rig.stop_site(Site::Primary);
    wait_served(
        &rig,
        bind,
        "www.example.test.",
        b,
        "www to move to the backup on BIND",
    );
    // Two more rounds of shop on its healthy primary, and it has not moved.
    let ticks = |rig: &Rig| {
        rig.api_get("/v1/services/shop")["last_tick_ms"]
            .as_u64()
            .unwrap_or(0)
    };
    let seen = ticks(&rig);
    poll_until(
        "two more rounds of shop",
        WAIT,
        Duration::from_millis(50),
        |_| (ticks(&rig) > seen + 1000).then_some(()),
    )
    .unwrap();
    assert_eq!(
        dig_a(pdns_dns, "shop.other.test."),
        [p],
        "shop moved with www"
    );
    assert!(changes(&rig, "shop").is_empty());

    // shop's primary stops too: shop moves on PowerDNS, through its API.
    shop_primary.stop();
    wait_served(
        &rig,
        pdns_dns,
        "shop.other.test.",
        b,
        "shop to move to the backup on PowerDNS",
    );
    assert_eq!(dig_a(bind, "www.example.test."), [b]);

    // Each comes back on its own: www's primary first (shop stays on the backup), then shop's.
    rig.start_site(Site::Primary);
    wait_served(
        &rig,
        bind,
        "www.example.test.",
        p,
        "www to come back to the primary on BIND",
    );
    assert_eq!(dig_a(pdns_dns, "shop.other.test."), [b]);
    shop_primary.start_again();
    wait_served(
        &rig,
        pdns_dns,
        "shop.other.test.",
        p,
        "shop to come back on PowerDNS",
    );

    // The history: two applied changes each, made by its own backend and verified on its own
    // server.
    for (service, backend, server) in [
        (SERVICE, "office (rfc2136)", bind),
        ("shop", "edge (powerdns)", pdns_dns),
    ] {
        let list = changes(&rig, service);
        assert_eq!(list.len(), 2, "{service}: {list:#?}");
        for c in &list {
            assert_eq!(c["status"], "applied", "{service}: {c:#}");
            let text = c.to_string();
            assert!(text.contains(backend), "{service} not by {backend}: {c:#}");
            assert!(
                text.contains(&server.to_string()),
                "{service} not verified on {server}: {c:#}"
            );
        }
    }
    drop(pdns);
}
