//! The RFC 2136 backend and DNS verification against a real BIND 9 started by each test:
//! switch and back (A and AAAA, several names, one UPDATE), prerequisite conflicts after a
//! change made with the real `nsupdate`, `force`, bad TSIG secrets and key names, hmac-sha512,
//! a stopped server, TCP for large updates, `wait_until_served`; the readiness check (key,
//! secret, zone, permission, reachability, hand edits; the zone left unchanged) and the survey
//! of the zone's authoritative servers (NS discovery, drift).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coordinator::dns::rfc2136::{self, Config, Transport, TsigAlg};
use coordinator::dns::served::wait_until_served;
use coordinator::dns::{DnsBackend, DnsError, RecordSet, RecordType};
use tests::bind::Bind;
use tests::fixtures::{SecretFile, assert_current, change, secret_file, set};
use tests::net::random_secret;

const ZONE: &str = "example.test";
const KEY: &str = "quorate-key";
const RECORDS: &str =
    "@ IN A 192.0.2.1\n@ IN AAAA 2001:db8::1\nwww IN A 192.0.2.10\nwww IN AAAA 2001:db8::10\n";

fn primary() -> Vec<RecordSet> {
    vec![
        set("example.test.", RecordType::A, 300, &["192.0.2.1"]),
        set("example.test.", RecordType::AAAA, 300, &["2001:db8::1"]),
        set("www.example.test.", RecordType::A, 300, &["192.0.2.10"]),
        set(
            "www.example.test.",
            RecordType::AAAA,
            300,
            &["2001:db8::10"],
        ),
    ]
}

fn backup() -> Vec<RecordSet> {
    vec![
        set("example.test.", RecordType::A, 60, &["198.51.100.1"]),
        set("example.test.", RecordType::AAAA, 60, &["2001:db8:b::1"]),
        set(
            "www.example.test.",
            RecordType::A,
            60,
            &["198.51.100.10", "198.51.100.11"],
        ),
        set(
            "www.example.test.",
            RecordType::AAAA,
            60,
            &["2001:db8:b::10"],
        ),
    ]
}

fn config(bind: &Bind, key_name: &str, alg: TsigAlg, secret: &SecretFile) -> Config {
    Config {
        server: bind.addr(),
        zone: "example.test.".into(),
        tsig_key_name: key_name.into(),
        tsig_algorithm: alg,
        tsig_secret_file: secret.path.clone(),
        timeout: Duration::from_secs(2),
        force: false,
        transport: Transport::Auto,
    }
}

fn setup() -> (Bind, SecretFile, String) {
    let secret = random_secret(32);
    let bind = Bind::start(ZONE, RECORDS, KEY, &secret, "hmac-sha256");
    let file = secret_file("tsig.secret", &secret);
    (bind, file, secret)
}

/// The zone's SOA serial as the real `dig` sees it: BIND bumps it once per UPDATE message.
fn serial(bind: &Bind) -> u32 {
    let out = std::process::Command::new("dig")
        .args(["+short", "+norecurse", "-p"])
        .arg(bind.addr().port().to_string())
        .args(["@127.0.0.1", ZONE, "SOA"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("no SOA in {text:?}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn switch_and_back_in_one_update_each() {
    let (bind, secret, _) = setup();
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    assert_current(&backend, &primary()).await;
    let serial0 = serial(&bind);

    backend.apply(&change(primary(), backup())).await.unwrap();
    assert_current(&backend, &backup()).await;
    // All four RRsets (two names, v4 and v6) changed with a single UPDATE message.
    assert_eq!(serial(&bind), serial0 + 1, "one change must be one UPDATE");
    let checks = wait_until_served(
        &[bind.addr()],
        &backup(),
        Duration::from_secs(5),
        Duration::from_millis(50),
    )
    .await;
    assert!(checks[0].ok, "{checks:?}");
    assert_eq!(checks[0].last_seen.as_ref().unwrap(), &backup());

    backend.apply(&change(backup(), primary())).await.unwrap();
    assert_current(&backend, &primary()).await;
    assert_eq!(serial(&bind), serial0 + 2);
    let checks = wait_until_served(
        &[bind.addr()],
        &primary(),
        Duration::from_secs(5),
        Duration::from_millis(50),
    )
    .await;
    assert!(checks[0].ok, "{checks:?}");
}

#[tokio::test]
async fn hand_made_change_is_a_conflict_and_force_overwrites() {
    let (bind, secret, _) = setup();
    let out = bind.nsupdate(
        "update delete www.example.test. A\nupdate add www.example.test. 120 A 203.0.113.77",
    );
    assert!(
        out.status.success(),
        "nsupdate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let serial_before = serial(&bind);
    let err = backend
        .apply(&change(primary(), backup()))
        .await
        .unwrap_err();
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(
                expected.contains("www.example.test. A [192.0.2.10]"),
                "{expected}"
            );
            assert!(
                found.contains("www.example.test. A [203.0.113.77] ttl 120"),
                "{found}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing was overwritten, not even the RRsets that still matched.
    assert_eq!(serial(&bind), serial_before);
    let now = backend.current(ZONE, &primary()).await.unwrap();
    assert_eq!(now[0], primary()[0]);
    assert_eq!(now[1], primary()[1]);
    assert_eq!(
        now[2],
        set("www.example.test.", RecordType::A, 120, &["203.0.113.77"])
    );
    assert_eq!(now[3], primary()[3]);

    let mut cfg = config(&bind, KEY, TsigAlg::HmacSha256, &secret);
    cfg.force = true;
    let forced = rfc2136::build(&cfg).unwrap();
    forced.apply(&change(primary(), backup())).await.unwrap();
    assert_current(&forced, &backup()).await;
}

#[tokio::test]
async fn rrset_does_not_exist_prerequisite_and_retry_after_success() {
    let (bind, secret, _) = setup();
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let empty = vec![set("new.example.test.", RecordType::A, 0, &[])];
    let new = vec![set("new.example.test.", RecordType::A, 30, &["192.0.2.99"])];
    backend
        .apply(&change(empty.clone(), new.clone()))
        .await
        .unwrap();
    assert_current(&backend, &new).await;
    // The same change again (a retry whose first answer was lost) is already applied.
    backend
        .apply(&change(empty.clone(), new.clone()))
        .await
        .unwrap();
    // A different change that still believes the RRset is absent is a conflict.
    let other = vec![set(
        "new.example.test.",
        RecordType::A,
        30,
        &["192.0.2.100"],
    )];
    let err = backend.apply(&change(empty, other)).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert_current(&backend, &new).await;
}

#[tokio::test]
async fn wrong_secret_is_an_auth_error() {
    let (bind, _secret, _) = setup();
    let wrong = secret_file("tsig.secret", &random_secret(32));
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &wrong)).unwrap();
    let err = backend
        .apply(&change(primary(), backup()))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("TSIG key rejected"), "{text}");
    assert!(text.contains(&bind.addr().to_string()), "{text}");
    assert!(!err.is_retryable());
    assert_current(&backend, &primary()).await;
}

#[tokio::test]
async fn unknown_key_name_is_an_auth_error() {
    let (bind, secret, _) = setup();
    let backend =
        rfc2136::build(&config(&bind, "no-such-key", TsigAlg::HmacSha256, &secret)).unwrap();
    let err = backend
        .apply(&change(primary(), backup()))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("'no-such-key'"), "{err}");
    assert_current(&backend, &primary()).await;
}

#[tokio::test]
async fn hmac_sha512_works() {
    let secret = random_secret(64);
    let bind = Bind::start(ZONE, RECORDS, KEY, &secret, "hmac-sha512");
    let file = secret_file("tsig.secret", &secret);
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha512, &file)).unwrap();
    backend.apply(&change(primary(), backup())).await.unwrap();
    assert_current(&backend, &backup()).await;
    // The same secret with the wrong algorithm is refused.
    let wrong_alg = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &file)).unwrap();
    let err = wrong_alg
        .apply(&change(backup(), primary()))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
}

#[tokio::test]
async fn stopped_server_is_transient_then_works_after_restart() {
    let (mut bind, secret, _) = setup();
    let mut cfg = config(&bind, KEY, TsigAlg::HmacSha256, &secret);
    cfg.timeout = Duration::from_millis(700);
    let backend = rfc2136::build(&cfg).unwrap();
    bind.stop();
    let err = backend
        .apply(&change(primary(), backup()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let err = backend.current(ZONE, &primary()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    // Over TCP too (connection refused).
    let mut tcp_cfg = cfg.clone();
    tcp_cfg.transport = Transport::Tcp;
    let err = rfc2136::build(&tcp_cfg)
        .unwrap()
        .apply(&change(primary(), backup()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    bind.restart();
    backend.apply(&change(primary(), backup())).await.unwrap();
    assert_current(&backend, &backup()).await;
}

#[tokio::test]
async fn large_updates_go_over_tcp_and_tcp_can_be_forced() {
    let (bind, secret, _) = setup();
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let many: Vec<String> = (1..=40).map(|i| format!("2001:db8:c::{i:x}")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let from = vec![set(
        "www.example.test.",
        RecordType::AAAA,
        300,
        &["2001:db8::10"],
    )];
    let to = vec![set("www.example.test.", RecordType::AAAA, 60, &many_refs)];
    backend
        .apply(&change(from.clone(), to.clone()))
        .await
        .unwrap();
    // The answer is too big for plain UDP: the check falls back to TCP as well.
    assert_current(&backend, &to).await;
    let checks = wait_until_served(
        &[bind.addr()],
        &to,
        Duration::from_secs(5),
        Duration::from_millis(50),
    )
    .await;
    assert!(checks[0].ok, "{checks:?}");

    let mut cfg = config(&bind, KEY, TsigAlg::HmacSha256, &secret);
    cfg.transport = Transport::Tcp;
    let tcp = rfc2136::build(&cfg).unwrap();
    tcp.apply(&change(to, from.clone())).await.unwrap();
    assert_current(&tcp, &from).await;
}

#[tokio::test]
async fn verify_served_reports_a_server_that_does_not_change() {
    let (bind, _secret, _) = setup();
    let checks = wait_until_served(
        &[bind.addr()],
        &backup(),
        Duration::from_millis(300),
        Duration::from_millis(50),
    )
    .await;
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].ok);
    assert!(checks[0].elapsed >= Duration::from_millis(300));
    assert_eq!(checks[0].last_seen.as_ref().unwrap(), &primary());

    // A TTL that differs is not the expected answer either.
    let mut ttl_only = primary();
    ttl_only[0].ttl = 60;
    let checks = wait_until_served(
        &[bind.addr()],
        &ttl_only,
        Duration::from_millis(200),
        Duration::from_millis(50),
    )
    .await;
    assert!(!checks[0].ok);
}

#[tokio::test]
async fn bad_secret_files_are_refused_with_the_key_named() {
    let (bind, _secret, _) = setup();
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open.secret");
    std::fs::write(&open, random_secret(32)).unwrap();
    let mut cfg = config(
        &bind,
        KEY,
        TsigAlg::HmacSha256,
        &secret_file("tsig.secret", "x"),
    );
    cfg.tsig_secret_file = open;
    let err = rfc2136::build(&cfg).unwrap_err().to_string();
    assert!(
        err.starts_with("tsig_secret_file:") && err.contains("chmod 600"),
        "{err}"
    );
    let not_b64 = secret_file("tsig.secret", "not base64 at all!");
    let err = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &not_b64))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tsig_secret_file:") && err.contains("base64"),
        "{err}"
    );
}

// --- the readiness check (`DnsBackend::check`) ---

/// A port on loopback where nothing listens.
fn closed_port() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], tests::net::free_port()))
}

#[tokio::test]
async fn check_proves_the_key_and_changes_nothing() {
    let (bind, secret, _) = setup();
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let serial0 = serial(&bind);
    let proof = backend.check(ZONE, &primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(
        proof.contains(KEY) && proof.contains("nothing was changed"),
        "{proof}"
    );
    // An RRset that must not exist, and no record sets at all, are proven the same way.
    let absent = vec![set("new.example.test.", RecordType::A, 0, &[])];
    backend.check(ZONE, &absent).await.unwrap();
    backend.check(ZONE, &[]).await.unwrap();
    // Over TCP too.
    let mut cfg = config(&bind, KEY, TsigAlg::HmacSha256, &secret);
    cfg.transport = Transport::Tcp;
    rfc2136::build(&cfg)
        .unwrap()
        .check(ZONE, &primary())
        .await
        .unwrap();
    assert_eq!(serial(&bind), serial0, "a check must not change the zone");
    assert_current(&backend, &primary()).await;
    // named logs the check's delete of a record the prerequisites prove absent ("deleting an
    // RR"), which changes nothing (the serial above); it must never add one.
    let log = bind.log();
    assert!(
        log.contains("deleting an RR") && !log.contains("adding an RR"),
        "named's log of the check:\n{log}"
    );
}

#[tokio::test]
async fn check_tells_a_wrong_secret_from_an_unknown_key_name() {
    let (bind, secret, _) = setup();
    let wrong = secret_file("tsig.secret", &random_secret(32));
    let err = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &wrong))
        .unwrap()
        .check(ZONE, &primary())
        .await
        .unwrap_err();
    println!("wrong secret: {err}");
    let bad_secret = err.to_string();
    assert!(
        matches!(err, DnsError::Auth(_)) && !err.is_retryable(),
        "{err:?}"
    );
    assert!(
        bad_secret.contains(&format!(
            "the server refused the TSIG signature of key `{KEY}` (BADSIG): the secret in tsig_secret_file ({})",
            wrong.path.display()
        )) && bad_secret.contains("copy the server's secret"),
        "{bad_secret}"
    );

    let err = rfc2136::build(&config(&bind, "no-such-key", TsigAlg::HmacSha256, &secret))
        .unwrap()
        .check(ZONE, &primary())
        .await
        .unwrap_err();
    println!("wrong key name: {err}");
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    let bad_name = err.to_string();
    assert!(
        bad_name.contains("the server does not know TSIG key `no-such-key` (BADKEY): tsig_key_name must match a `key` in the server's config"),
        "{bad_name}"
    );
    assert_ne!(bad_secret, bad_name);
}

#[tokio::test]
async fn check_says_the_zone_is_not_served_there() {
    let (bind, secret, _) = setup();
    let mut cfg = config(&bind, KEY, TsigAlg::HmacSha256, &secret);
    cfg.zone = "other.test.".into();
    let backend = rfc2136::build(&cfg).unwrap();
    let expected = vec![set("www.other.test.", RecordType::A, 300, &["192.0.2.10"])];
    let err = backend.check("other.test.", &expected).await.unwrap_err();
    println!("zone not served: {err}");
    assert!(matches!(err, DnsError::Rejected(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "{} does not serve zone other.test. as a primary (NOTAUTH",
            bind.addr()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn check_says_updates_are_not_permitted() {
    let (mut bind, secret, _) = setup();
    // The same zone and key, but no update-policy: BIND refuses every update of the zone.
    let conf_path = bind.dir().join("named.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let policy = format!("update-policy {{ grant {KEY} zonesub ANY; }};");
    assert!(conf.contains(&policy), "{conf}");
    std::fs::write(&conf_path, conf.replace(&policy, "")).unwrap();
    bind.restart();
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let err = backend.check(ZONE, &primary()).await.unwrap_err();
    println!("update not permitted: {err}");
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("(REFUSED)")
            && text.contains("allow-update")
            && text.contains("update-policy"),
        "{text}"
    );
}

#[tokio::test]
async fn check_refuses_a_key_that_update_policy_grants_nothing_in_the_zone() {
    let (mut bind, secret, _) = setup();
    // The key is known and the zone served, but update-policy grants it only a name that is
    // not the service's: an empty update section would pass (BIND checks grants per record
    // of the update section); the check's delete of an absent record is checked and refused.
    let conf_path = bind.dir().join("named.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let policy = format!("update-policy {{ grant {KEY} zonesub ANY; }};");
    let narrow = format!("update-policy {{ grant {KEY} name elsewhere.{ZONE} A; }};");
    std::fs::write(&conf_path, conf.replace(&policy, &narrow)).unwrap();
    bind.restart();
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let err = backend.check(ZONE, &primary()).await.unwrap_err();
    println!("granted nothing: {err}");
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("(REFUSED)"), "{err}");
}

#[tokio::test]
async fn check_of_an_unreachable_server_is_transient_and_names_it() {
    let (bind, secret, _) = setup();
    let mut cfg = config(&bind, KEY, TsigAlg::HmacSha256, &secret);
    cfg.server = closed_port();
    cfg.timeout = Duration::from_millis(700);
    for transport in [Transport::Auto, Transport::Tcp] {
        cfg.transport = transport;
        let err = rfc2136::build(&cfg)
            .unwrap()
            .check(ZONE, &primary())
            .await
            .unwrap_err();
        println!("unreachable ({transport:?}): {err}");
        assert!(err.is_retryable(), "{err:?}");
        assert!(err.to_string().contains(&cfg.server.to_string()), "{err}");
    }
}

#[tokio::test]
async fn check_reports_a_hand_edit_as_a_conflict() {
    let (bind, secret, _) = setup();
    let out = bind.nsupdate(
        "update delete www.example.test. A\nupdate add www.example.test. 120 A 203.0.113.77",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backend = rfc2136::build(&config(&bind, KEY, TsigAlg::HmacSha256, &secret)).unwrap();
    let serial0 = serial(&bind);
    let err = backend.check(ZONE, &primary()).await.unwrap_err();
    println!("conflict: {err}");
    match &err {
        DnsError::Conflict { expected, found } => {
            assert_eq!(expected, &tests_describe(&primary()));
            assert!(
                found.contains("www.example.test. A [203.0.113.77] ttl 120"),
                "{found}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // "Does not exist" that does exist is a conflict too.
    let err = backend
        .check(ZONE, &[set("www.example.test.", RecordType::AAAA, 0, &[])])
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert_eq!(serial(&bind), serial0);
}

fn tests_describe(sets: &[RecordSet]) -> String {
    coordinator::dns::describe_sets(sets)
}

// --- the authoritative-server survey ---

#[tokio::test]
async fn discovery_and_survey_against_real_servers() {
    use coordinator::dns::served::{Authority, discover_authorities, drift, survey};
    let secret = random_secret(32);
    // ns1 (in zone, glue 127.0.0.1) and an NS outside the zone whose address BIND cannot tell.
    let records = format!("{RECORDS}@ IN NS ns.elsewhere.test.\n");
    let bind = Bind::start(ZONE, &records, KEY, &secret, "hmac-sha256");
    // A second server of the zone that still serves an old www A.
    let stale = Bind::start(
        ZONE,
        &RECORDS.replace("www IN A 192.0.2.10", "www IN A 203.0.113.9"),
        KEY,
        &secret,
        "hmac-sha256",
    );
    let port = bind.addr().port();
    let t = Duration::from_secs(2);
    let (authorities, problems) = discover_authorities(
        ZONE,
        &[closed_port(), bind.addr()],
        &[stale.addr(), bind.addr()],
        port,
        t,
    )
    .await;
    assert_eq!(
        authorities,
        vec![
            Authority {
                addr: bind.addr(),
                ns_name: Some("ns1.example.test.".into())
            },
            Authority {
                addr: stale.addr(),
                ns_name: None
            },
        ]
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("NS ns.elsewhere.test. of example.test.: no address found at"),
        "{problems:?}"
    );

    let views = survey(&authorities, &primary(), t).await;
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].answer.as_ref().unwrap(), &primary());
    assert!(drift(&primary(), &views[..1]).is_empty());
    let lines = drift(&primary(), &views);
    println!("drift: {lines:#?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        format!(
            "{}: serves www.example.test. A [203.0.113.9] ttl 300; expected www.example.test. A [192.0.2.10] ttl 300",
            stale.addr()
        )
    );
    assert!(
        lines[1].starts_with("servers disagree on www.example.test. A: ns1.example.test. ("),
        "{}",
        lines[1]
    );
    // A TTL that differs is drift too.
    let mut ttl = primary();
    ttl[0].ttl = 60;
    assert_eq!(drift(&ttl, &views[..1]).len(), 1);

    // Nobody answers: said so, and the listed servers are still there.
    let (only_listed, problems) =
        discover_authorities(ZONE, &[closed_port()], &[stale.addr()], port, t).await;
    assert_eq!(only_listed.len(), 1);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("no server answered the NS query for example.test."),
        "{problems:?}"
    );
    let views = survey(
        &[Authority {
            addr: closed_port(),
            ns_name: None,
        }],
        &primary(),
        Duration::from_millis(500),
    )
    .await;
    let lines = drift(&primary(), &views);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("no answer"), "{lines:?}");
}
