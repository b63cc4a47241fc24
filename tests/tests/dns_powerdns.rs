//! The PowerDNS backend against a real `pdns_server` (gsqlite3, API on): switch and back with
//! the new answer served over DNS, conflicts, a bad API key, changes the server rejects, and
//! a server that is gone.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coordinator::dns::powerdns::{self, Config};
use coordinator::dns::served::wait_until_served;
use coordinator::dns::{DnsBackend, DnsError, RecordType};
use tests::fixtures::{
    SecretFile, ZONE, assert_current, change, secret_file, set, www_backup, www_primary,
};
use tests::net::random_secret;
use tests::pdns::Pdns;

fn start() -> (Pdns, SecretFile) {
    let api_key = random_secret(24);
    let pdns = Pdns::start(
        "example.test",
        &[
            ("www", "A", 300, "192.0.2.10"),
            ("www", "AAAA", 300, "2001:db8::10"),
            ("alias", "CNAME", 300, "www.example.test."),
        ],
        &api_key,
    );
    (pdns, secret_file("api.key", &api_key))
}

fn config(pdns: &Pdns, key: &SecretFile) -> Config {
    Config {
        url: pdns.api_url(),
        server_id: "localhost".into(),
        zone: ZONE.into(),
        api_key_file: key.path.clone(),
        ca_file: None,
        timeout: Duration::from_secs(5),
        force: false,
    }
}

#[tokio::test]
async fn switch_and_back() {
    let (pdns, key) = start();
    let backend = powerdns::build(&config(&pdns, &key)).unwrap();
    assert_current(&backend, &www_primary()).await;

    backend
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap();
    assert_current(&backend, &www_backup()).await;
    let checks = wait_until_served(
        &[pdns.dns_addr()],
        &www_backup(),
        Duration::from_secs(10),
        Duration::from_millis(100),
    )
    .await;
    assert!(checks[0].ok, "{checks:?}");

    backend
        .apply(&change(www_backup(), www_primary()))
        .await
        .unwrap();
    assert_current(&backend, &www_primary()).await;
    let checks = wait_until_served(
        &[pdns.dns_addr()],
        &www_primary(),
        Duration::from_secs(10),
        Duration::from_millis(100),
    )
    .await;
    assert!(checks[0].ok, "{checks:?}");
}

#[tokio::test]
async fn stale_from_is_a_conflict_unless_forced() {
    let (pdns, key) = start();
    let backend = powerdns::build(&config(&pdns, &key)).unwrap();
    let stale = vec![
        set("www.example.test.", RecordType::A, 300, &["203.0.113.1"]),
        set(
            "www.example.test.",
            RecordType::AAAA,
            300,
            &["2001:db8::10"],
        ),
    ];
    let err = backend
        .apply(&change(stale.clone(), www_backup()))
        .await
        .unwrap_err();
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(expected.contains("203.0.113.1"), "{expected}");
            assert!(found.contains("192.0.2.10"), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_current(&backend, &www_primary()).await;

    let mut cfg = config(&pdns, &key);
    cfg.force = true;
    let forced = powerdns::build(&cfg).unwrap();
    forced.apply(&change(stale, www_backup())).await.unwrap();
    assert_current(&forced, &www_backup()).await;
}

#[tokio::test]
async fn bad_api_key_is_auth() {
    let (pdns, _key) = start();
    let wrong = secret_file("api.key", "not-the-key");
    let backend = powerdns::build(&config(&pdns, &wrong)).unwrap();
    let err = backend
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    let err = backend.current(ZONE, &www_primary()).await.unwrap_err();
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
}

#[tokio::test]
async fn changes_the_server_refuses_are_rejected() {
    let (pdns, key) = start();
    let backend = powerdns::build(&config(&pdns, &key)).unwrap();
    // An A record next to a CNAME: PowerDNS answers 422 with its reason.
    let from = vec![set("alias.example.test.", RecordType::A, 0, &[])];
    let to = vec![set(
        "alias.example.test.",
        RecordType::A,
        60,
        &["192.0.2.50"],
    )];
    let err = backend.apply(&change(from, to)).await.unwrap_err();
    match &err {
        DnsError::Rejected(text) => {
            assert!(text.contains("422"), "{text}");
            assert!(text.contains("Conflicts with pre-existing RRset"), "{text}");
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    // A name outside the zone never leaves the process.
    let out = vec![set("www.other.test.", RecordType::A, 60, &[])];
    let out_to = vec![set("www.other.test.", RecordType::A, 60, &["192.0.2.1"])];
    let err = backend.apply(&change(out, out_to)).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("not inside zone")),
        "{err:?}"
    );
    // A zone the server does not have.
    let mut cfg = config(&pdns, &key);
    cfg.zone = "nosuch.test.".into();
    let other = powerdns::build(&cfg).unwrap();
    let mut c = change(www_primary(), www_backup());
    for s in c.from.iter_mut().chain(c.to.iter_mut()) {
        s.name = "www.nosuch.test.".into();
    }
    c.zone = "nosuch.test.".into();
    let err = other.apply(&c).await.unwrap_err();
    assert!(matches!(err, DnsError::Rejected(_)), "{err:?}");
    assert_current(&backend, &www_primary()).await;
}

#[tokio::test]
async fn stopped_server_is_transient() {
    let (mut pdns, key) = start();
    let backend = powerdns::build(&config(&pdns, &key)).unwrap();
    pdns.stop();
    let err = backend
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn config_errors_name_the_key() {
    let key = secret_file("api.key", "k");
    let mut cfg = Config {
        url: "ftp://x".into(),
        server_id: "localhost".into(),
        zone: ZONE.into(),
        api_key_file: key.path.clone(),
        ca_file: None,
        timeout: Duration::from_secs(1),
        force: false,
    };
    assert!(
        powerdns::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("url:")
    );
    cfg.url = "http://127.0.0.1:1".into();
    cfg.api_key_file = "/nonexistent/key".into();
    assert!(
        powerdns::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("api_key_file:")
    );
}

#[tokio::test]
async fn check_proves_the_key_and_the_zone() {
    let (pdns, key) = start();
    let backend = powerdns::build(&config(&pdns, &key)).unwrap();
    let proof = backend.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(proof.starts_with("powerdns: API key accepted"), "{proof}");
    // A hand edit (here: Quorate believes another address is served) is a conflict.
    let stale = vec![set(
        "www.example.test.",
        RecordType::A,
        300,
        &["203.0.113.9"],
    )];
    let err = backend.check(ZONE, &stale).await.unwrap_err();
    println!("conflict: {err}");
    assert!(
        matches!(&err, DnsError::Conflict { found, .. } if found.contains("192.0.2.10")),
        "{err:?}"
    );
    assert_current(&backend, &www_primary()).await;

    let wrong = secret_file("api.key", "not-the-key");
    let err = powerdns::build(&config(&pdns, &wrong))
        .unwrap()
        .check(ZONE, &www_primary())
        .await
        .unwrap_err();
    println!("wrong key: {err}");
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("api_key_file ({})", wrong.path.display())),
        "{err}"
    );

    let mut cfg = config(&pdns, &key);
    cfg.zone = "nosuch.test.".into();
    let err = powerdns::build(&cfg)
        .unwrap()
        .check("nosuch.test.", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("the zone nosuch.test. is not on that powerdns server")),
        "{err:?}"
    );
}
