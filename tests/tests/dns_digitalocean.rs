//! The DigitalOcean backend against the stand-in of its Domains API (`tests::digitalocean`):
//! records by id rewritten in place, added and removed; switch and back with A and AAAA, a
//! wrong token, throttling, a hand edit (before the write, and a record deleted between the
//! read and the write), and the readiness check.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coordinator::dns::digitalocean::{self, Config, DigitalOcean};
use coordinator::dns::{BackendConfig, DnsBackend, DnsError};
use tests::digitalocean::{DigitalOceanStandIn, start};
use tests::fixtures::{
    SecretFile, ZONE, apply_with_retries, assert_current, change, secret_file, www_backup,
    www_primary,
};

const TOKEN: &str = "dop_v1_0123456789abcdef";

async fn standin() -> DigitalOceanStandIn {
    start(
        TOKEN,
        "example.test",
        &[
            ("@", "NS", 1800, "ns1.digitalocean.com."),
            ("www", "A", 300, "192.0.2.10"),
            ("www", "AAAA", 300, "2001:db8::10"),
            ("mail", "A", 1800, "192.0.2.25"),
        ],
    )
    .await
}

fn config(s: &DigitalOceanStandIn, token: &SecretFile) -> Config {
    Config {
        base_url: s.url(),
        zone: "example.test".into(),
        api_token_file: Some(token.path.clone()),
        api_token_env: None,
        api_token_credential: None,
        timeout: Duration::from_secs(5),
        force: false,
    }
}

fn backend(s: &DigitalOceanStandIn, token: &str) -> (DigitalOcean, SecretFile) {
    let file = secret_file("do.token", token);
    (digitalocean::build(&config(s, &file)).unwrap(), file)
}

/// The backend's settings, for the DNS worker's verification of what it applied.
fn served_by(s: &DigitalOceanStandIn, token: &SecretFile) -> BackendConfig {
    BackendConfig::Digitalocean(config(s, token))
}

#[tokio::test]
async fn switch_to_backup_and_back() {
    let s = standin().await;
    let (b, t) = backend(&s, TOKEN);
    assert_current(&b, &www_primary()).await;
    let a_id = s.with_state(|st| st.records("example.test", "www", "A")[0].id);

    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &www_backup()).await;
    s.with_state(|st| {
        let a = st.records("example.test", "www", "A");
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.iter().all(|r| r.ttl == 60), "{a:?}");
        assert!(
            a.iter().any(|r| r.id == a_id),
            "the existing record is rewritten in place: {a:?}"
        );
        assert_eq!(st.records("example.test", "mail", "A").len(), 1);
    });
    let writes = s.writes();
    assert_eq!(
        writes,
        vec![
            format!("PUT /v2/domains/example.test/records/{a_id}"),
            "POST /v2/domains/example.test/records".to_string(),
            format!(
                "PUT /v2/domains/example.test/records/{}",
                s.with_state(|st| st.records("example.test", "www", "AAAA")[0].id)
            ),
        ]
    );

    let c = change(www_backup(), www_primary());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &www_primary()).await;
    assert_eq!(
        s.with_state(|st| st.records("example.test", "www", "A").len()),
        1,
        "the surplus record is deleted"
    );
}

#[tokio::test]
async fn wrong_token_is_auth_naming_the_provider_and_the_setting() {
    let s = standin().await;
    let (b, t) = backend(&s, "dop_v1_wrong");
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("wrong token: {err}");
    match &err {
        DnsError::Auth(text) => {
            assert!(
                text.starts_with("digitalocean refused the API token"),
                "{text}"
            );
            assert!(text.contains(&t.path.display().to_string()), "{text}");
            assert!(text.contains("www.example.test. A"), "{text}");
            assert!(text.contains("Unable to authenticate you."), "{text}");
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("dop_v1_wrong"));
    assert!(s.writes().is_empty());
}

#[tokio::test]
async fn throttled_is_transient_then_applied() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    s.throttle_next(3);
    let (outcome, transient) =
        apply_with_retries(&b, &change(www_primary(), www_backup()), 5).await;
    outcome.unwrap();
    assert_eq!(transient.len(), 3, "{transient:?}");
    for t in &transient {
        assert!(
            t.contains("digitalocean is throttling requests (HTTP 429"),
            "{t}"
        );
        assert!(t.contains("RateLimit-Reset"), "{t}");
    }
    assert_current(&b, &www_backup()).await;
}

#[tokio::test]
async fn a_hand_edit_is_a_conflict_and_nothing_is_written() {
    let s = standin().await;
    s.with_state(|st| {
        let d = st.domains.get_mut("example.test").unwrap();
        let r = d
            .records
            .iter_mut()
            .find(|r| r.name == "www" && r.rtype == "AAAA")
            .unwrap();
        r.data = "2001:db8::77".into();
    });
    let (b, _t) = backend(&s, TOKEN);
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(expected.contains("2001:db8::10"), "{expected}");
            assert!(found.contains("2001:db8::77"), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(s.writes().is_empty(), "{:?}", s.writes());
}

#[tokio::test]
async fn a_record_deleted_between_the_read_and_the_write_is_a_conflict() {
    let s = standin().await;
    s.with_state(|st| st.vanish_before_next_write = true);
    let (b, _t) = backend(&s, TOKEN);
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("vanished: {err}");
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(
                expected.contains("www.example.test. A record id"),
                "{expected}"
            );
            assert!(found.contains("404"), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn check_proves_the_token_and_zone_and_changes_nothing() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let proof = b.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(proof.contains("domain example.test there"), "{proof}");

    let (wrong, _t2) = backend(&s, "wrong");
    let err = wrong.check(ZONE, &www_primary()).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("digitalocean")),
        "{err:?}"
    );

    let file = secret_file("t", TOKEN);
    let mut cfg = config(&s, &file);
    cfg.zone = "nosuch.test".into();
    let err = digitalocean::build(&cfg)
        .unwrap()
        .check("nosuch.test.", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("digitalocean has no zone nosuch.test.")),
        "{err:?}"
    );

    let mut stale = www_primary();
    stale[0].addrs = vec!["203.0.113.9".parse().unwrap()];
    let err = b.check(ZONE, &stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert!(s.writes().is_empty(), "a check writes nothing");
}

/// The zone's second name server stops following the provider: the DNS worker's verification
/// says that server does not serve the change (a `dns-lagging` alert naming it), the first does.
#[tokio::test]
async fn verification_names_a_lagging_name_server() {
    let s = standin().await;
    let (b, t) = backend(&s, TOKEN);
    s.dns().lag_second();
    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_second_lags(&served_by(&s, &t), &c).await;
}
