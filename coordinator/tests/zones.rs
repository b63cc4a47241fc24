//! Several zones, several backends, one coordinator, in one process: three services in three
//! zones, each at its own named backend — `left` (a built-in server for `a.test`) and `right`
//! and `right2` (one built-in server on other addresses, serving `b.test` and `c.test`) —
//! three real witnesses over HTTPS, stand-in web servers on loopback. Each service fails over
//! on its own: a primary that stops moves only its own zone's records, on its own server, and
//! each change is verified on the name servers the zone's NS records name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Lab, Site, TestWitness, eventually, free_port, two_sites_port};
use coordinator::dns::RecordType;
use coordinator::dns::served::query_rrset;
use coordinator::store::ListFilter;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

/// The `[dns.<name>]` table of a built-in backend serving `zone` on 127.0.0.1 and 127.0.0.4
/// (`port`), its name servers `ns1.<zone>` and `ns2.<zone>` at those addresses. Only the first
/// is listed for verification: the second is found by its NS record.
fn builtin(name: &str, zone: &str, port: u16) -> String {
    format!(
        r#"[dns.{name}]
type = "builtin"
listen = ["127.0.0.1:{port}", "127.0.0.4:{port}"]
zone = "{zone}."
ns = ["ns1.{zone}.", "ns2.{zone}."]
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}, {{ name = "ns2", type = "A", value = "127.0.0.4" }}]
[dns.{name}.verify]
servers = ["127.0.0.1:{port}"]
ns_port = {port}
timeout = "5s"
"#
    )
}

fn service(name: &str, zone: &str, backend: &str, sites: (SocketAddr, SocketAddr)) -> String {
    format!(
        r#"[[service]]
name = "{name}"
zone = "{zone}"
dns = "{backend}"
names = ["www"]
ttl = 30
primary = {{ addresses = ["{p}"] }}
backup = {{ addresses = ["{b}"] }}
probe = {{ kind = "http", port = {port}, path = "/health", expect_status = [200], timeout = "250ms" }}
fail_after = 2
recover_after = 5
quorum = 2
"#,
        p = sites.0.ip(),
        b = sites.1.ip(),
        port = sites.0.port(),
    )
}

/// What `server` serves for `www.<zone>` A.
async fn served(server: SocketAddr, zone: &str) -> Vec<std::net::IpAddr> {
    query_rrset(
        server,
        &format!("www.{zone}."),
        RecordType::A,
        Duration::from_secs(1),
    )
    .await
    .map(|s| s.addrs)
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_zones_at_named_backends_fail_over_each_on_its_own() {
    let lab = Lab::new();
    // One port per service, 127.0.0.2 primary and 127.0.0.3 backup.
    let sites: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| two_sites_port()).collect();
    let ports: Vec<u16> = sites.iter().map(|s| s.0.port()).collect();
    let witnesses: Vec<TestWitness> = (1..=3)
        .map(|i| TestWitness::start(&format!("w{i}"), lab.key.verifying_key(), &ports, vec![]))
        .collect();
    let mut primaries = Vec::new();
    let mut backups = Vec::new();
    for (p, b) in &sites {
        let mut primary = Site::http(*p);
        let mut backup = Site::http(*b);
        primary.start().await;
        backup.start().await;
        primaries.push(primary);
        backups.push(backup);
    }
    let (left, right) = (free_port(), free_port());
    let text = format!(
        "[coordinator]\nkey_file = \"coordinator.key\"\ndatabase = \"history.sqlite\"\ninterval = \"300ms\"\n\n[api]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"api.token\"\n\n{witnesses}\n{left_dns}\n{right_dns}\n{right2_dns}\n{a}\n{b}\n{c}",
        witnesses = witnesses
            .iter()
            .map(|w| w.block())
            .collect::<Vec<_>>()
            .join("\n"),
        left_dns = builtin("left", "a.test", left),
        right_dns = builtin("right", "b.test", right),
        right2_dns = builtin("right2", "c.test", right),
        a = service("a", "a.test", "left", sites[0]),
        b = service("b", "b.test", "right", sites[1]),
        c = service("c", "c.test", "right2", sites[2]),
    );
    let config = lab.config(&text);
    let names: Vec<String> = config.dns.backends.iter().map(|b| b.label()).collect();
    assert_eq!(
        names,
        ["left (builtin)", "right (builtin)", "right2 (builtin)"]
    );
    let shutdown = CancellationToken::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let coord = coordinator::start(config, listener, None, shutdown.clone())
        .await
        .unwrap();
    let left_addr: SocketAddr = format!("127.0.0.1:{left}").parse().unwrap();
    let right_addr: SocketAddr = format!("127.0.0.1:{right}").parse().unwrap();
    let (p_ip, b_ip) = (sites[0].0.ip(), sites[0].1.ip());

    // Each zone is served by its own server, on the primary; a zone is not served by the
    // other server.
    assert_eq!(served(left_addr, "a.test").await, [p_ip]);
    assert_eq!(served(right_addr, "b.test").await, [p_ip]);
    assert_eq!(served(right_addr, "c.test").await, [p_ip]);
    assert!(
        query_rrset(
            left_addr,
            "www.b.test.",
            RecordType::A,
            Duration::from_secs(1)
        )
        .await
        .is_err()
    );

    // a's primary stops: a.test moves to the backup; b.test and c.test stay.
    primaries[0].stop().await;
    eventually("a.test served on the backup", DEADLINE, || async {
        (served(left_addr, "a.test").await == [b_ip]).then_some(())
    })
    .await;
    assert_eq!(served(right_addr, "b.test").await, [p_ip]);
    assert_eq!(served(right_addr, "c.test").await, [p_ip]);

    // b's primary stops: b.test moves, on the shared server, and c.test stays.
    primaries[1].stop().await;
    eventually("b.test served on the backup", DEADLINE, || async {
        (served(right_addr, "b.test").await == [b_ip]).then_some(())
    })
    .await;
    assert_eq!(served(right_addr, "c.test").await, [p_ip]);
    assert_eq!(served(left_addr, "a.test").await, [b_ip]);

    // Every change is recorded with the backend that made it, and verified on both servers
    // the zone's NS records name (ns1 → 127.0.0.1, ns2 → 127.0.0.4, on the backend's port),
    // though only the first is listed.
    let changes = |service: &'static str| {
        let store = coord.store.clone();
        async move {
            let f = ListFilter {
                service: Some(service.into()),
                limit: 50,
                ..Default::default()
            };
            store.call(move |s| s.list_dns_changes(&f)).await.unwrap()
        }
    };
    for (service, backend, port) in [
        ("a", "left (builtin)", left),
        ("b", "right (builtin)", right),
    ] {
        let row = eventually(
            &format!("{service}'s change verified"),
            DEADLINE,
            || async {
                changes(service)
                    .await
                    .into_iter()
                    .find(|c| c.verification.is_some())
            },
        )
        .await;
        assert_eq!(row.backend, backend);
        let v = row.verification.unwrap();
        let servers: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["server"].as_str().unwrap())
            .collect();
        assert_eq!(
            servers,
            [format!("127.0.0.1:{port}"), format!("127.0.0.4:{port}")],
            "{v}"
        );
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .all(|s| s["ok"].as_bool() == Some(true)),
            "{v}"
        );
    }
    assert!(changes("c").await.is_empty(), "c never switched");

    shutdown.cancel();
    coord.wait(Duration::from_secs(10)).await;
    for mut w in witnesses {
        w.stop().await;
    }
}

/// A hosted provider's zone, no server listed: its name servers are found through a resolver
/// (here the built-in server answers the NS question, as a resolver would, with glue), then
/// asked directly.
#[tokio::test]
async fn a_zone_without_listed_servers_is_found_through_a_resolver() {
    use coordinator::dns::builtin::{self, Builtin};
    use coordinator::readiness::checks::AuthoritySettings;

    let port = free_port();
    let config: builtin::Config = toml::from_str(&format!(
        r#"listen = ["127.0.0.1:{port}", "127.0.0.4:{port}"]
zone = "p.test."
ns = ["ns1.p.test.", "ns2.p.test."]
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}, {{ name = "ns2", type = "A", value = "127.0.0.4" }}]
"#
    ))
    .unwrap();
    let built = config.build().unwrap();
    let listen = built.listen.clone();
    let server = std::sync::Arc::new(Builtin::new(built, Vec::new(), 1).unwrap());
    let (udp, tcp) = builtin::bind(&listen).await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(server.serve(udp, tcp, stop.clone()));

    let resolver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let settings = |resolvers: Option<Vec<SocketAddr>>| AuthoritySettings {
        listed: Vec::new(),
        discover: true,
        port,
        timeout: Duration::from_secs(2),
        resolvers,
    };
    let (found, problems) = settings(Some(vec![resolver])).find("p.test").await;
    assert!(problems.is_empty(), "{problems:?}");
    let found: Vec<String> = found.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        found,
        [
            format!("ns1.p.test. (127.0.0.1:{port})"),
            format!("ns2.p.test. (127.0.0.4:{port})")
        ]
    );
    // A backend whose zone is not remote (resolvers None) looks nowhere.
    assert_eq!(settings(None).find("p.test").await, (vec![], vec![]));
    // A resolver that knows nothing of the zone: said, not silently skipped.
    let (found, problems) = settings(Some(vec![resolver])).find("q.test").await;
    assert!(found.is_empty());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("the name servers of q.test. could not be found: ")
            && problems[0].ends_with("list them in verify.servers"),
        "{}",
        problems[0]
    );
    stop.cancel();
    task.await.unwrap();
}
