//! The Gandi backend against the stand-in of LiveDNS (`tests::gandi`): one `PUT` per RRset,
//! switch and back with A and AAAA (TTL 300 s, LiveDNS's minimum), a TTL under the minimum,
//! a wrong token, throttling, a hand edit, and the readiness check.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coordinator::dns::gandi::{self, Config, Gandi};
use coordinator::dns::{BackendConfig, DnsBackend, DnsError};
use tests::fixtures::{
    SecretFile, ZONE, apply_with_retries, assert_current, change, secret_file, with_ttl,
    www_backup, www_primary,
};
use tests::gandi::{GandiStandIn, Rrset, start};

const TOKEN: &str = "pat_0123456789abcdef";

async fn standin() -> GandiStandIn {
    start(
        TOKEN,
        "example.test",
        &[
            ("@", "NS", 10800, &["ns-1.gandi.net."]),
            ("www", "A", 300, &["192.0.2.10"]),
            ("www", "AAAA", 300, &["2001:db8::10"]),
            ("www", "TXT", 300, &["\"keep me\""]),
        ],
    )
    .await
}

fn config(s: &GandiStandIn, token: &SecretFile) -> Config {
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

fn backend(s: &GandiStandIn, token: &str) -> (Gandi, SecretFile) {
    let file = secret_file("gandi.pat", token);
    (gandi::build(&config(s, &file)).unwrap(), file)
}

/// The backend's settings, for the DNS worker's verification of what it applied.
fn served_by(s: &GandiStandIn, token: &SecretFile) -> BackendConfig {
    BackendConfig::Gandi(config(s, token))
}

/// The backup's records with LiveDNS's minimum TTL.
fn backup() -> Vec<coordinator::dns::RecordSet> {
    with_ttl(www_backup(), 300)
}

#[tokio::test]
async fn switch_to_backup_and_back() {
    let s = standin().await;
    let (b, t) = backend(&s, TOKEN);
    assert_current(&b, &www_primary()).await;

    let c = change(www_primary(), backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &backup()).await;
    s.with_state(|st| {
        assert_eq!(
            st.rrset("example.test", "www", "A"),
            Some(Rrset {
                ttl: 300,
                values: vec!["198.51.100.10".into(), "198.51.100.11".into()]
            })
        );
        assert!(
            st.rrset("example.test", "www", "TXT").is_some(),
            "other types of the name are untouched"
        );
    });
    assert_eq!(
        s.writes(),
        vec![
            "PUT /v5/livedns/domains/example.test/records/www/A".to_string(),
            "PUT /v5/livedns/domains/example.test/records/www/AAAA".to_string(),
        ]
    );

    let c = change(backup(), www_primary());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &www_primary()).await;
}

#[tokio::test]
async fn a_ttl_under_the_minimum_is_rejected_with_gandis_reason() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("ttl 60: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("gandi refused") && t.contains("rrset_ttl") && t.contains("www.example.test. A")),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_token_is_auth_naming_the_provider_and_the_setting() {
    let s = standin().await;
    let (b, t) = backend(&s, "pat_wrong");
    let err = b.apply(&change(www_primary(), backup())).await.unwrap_err();
    println!("wrong token: {err}");
    match &err {
        DnsError::Auth(text) => {
            assert!(text.starts_with("gandi refused the API token"), "{text}");
            assert!(text.contains(&t.path.display().to_string()), "{text}");
            assert!(text.contains("zone example.test."), "{text}");
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("pat_wrong"));
    assert!(s.writes().is_empty());
}

#[tokio::test]
async fn throttled_is_transient_then_applied() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    s.throttle_next(2);
    let (outcome, transient) = apply_with_retries(&b, &change(www_primary(), backup()), 5).await;
    outcome.unwrap();
    assert_eq!(transient.len(), 2, "{transient:?}");
    for t in &transient {
        assert!(t.contains("gandi is throttling requests (HTTP 429"), "{t}");
        assert!(t.contains("Retry-After: 1 s"), "{t}");
    }
    assert_current(&b, &backup()).await;
}

#[tokio::test]
async fn a_hand_edit_is_a_conflict_and_nothing_is_written() {
    let s = standin().await;
    s.with_state(|st| {
        st.domains.get_mut("example.test").unwrap().insert(
            ("www".into(), "A".into()),
            Rrset {
                ttl: 600,
                values: vec!["203.0.113.5".into()],
            },
        );
    });
    let (b, _t) = backend(&s, TOKEN);
    let err = b.apply(&change(www_primary(), backup())).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Conflict { found, .. } if found.contains("203.0.113.5")),
        "{err:?}"
    );
    assert!(s.writes().is_empty(), "{:?}", s.writes());
}

#[tokio::test]
async fn check_proves_the_token_and_zone_and_changes_nothing() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let proof = b.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(proof.contains("domain example.test on LiveDNS"), "{proof}");

    let (wrong, _t2) = backend(&s, "wrong");
    let err = wrong.check(ZONE, &www_primary()).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("gandi")),
        "{err:?}"
    );

    let file = secret_file("t", TOKEN);
    let mut cfg = config(&s, &file);
    cfg.zone = "nosuch.test".into();
    let err = gandi::build(&cfg)
        .unwrap()
        .check("nosuch.test.", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("gandi has no zone nosuch.test.")),
        "{err:?}"
    );

    let mut stale = www_primary();
    stale[0].addrs = vec!["203.0.113.9".parse().unwrap()];
    let err = b.check(ZONE, &stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert!(s.writes().is_empty(), "a check writes nothing");
}

#[tokio::test]
async fn a_change_for_another_zone_or_outside_it_is_refused_before_any_request() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let mut other = change(www_primary(), backup());
    other.zone = "example.org.".into();
    let err = b.apply(&other).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.starts_with("gandi:") && t.contains("example.org.")),
        "{err:?}"
    );
    let mut outside = change(www_primary(), backup());
    for set in outside.from.iter_mut().chain(outside.to.iter_mut()) {
        set.name = "www.example.org.".into();
    }
    let err = b.apply(&outside).await.unwrap_err();
    println!("outside: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.starts_with("gandi: zone example.test.:") && t.contains("not inside zone")),
        "{err:?}"
    );
    assert!(s.requests().is_empty(), "{:?}", s.requests());
}

/// The zone's second name server stops following the provider: the DNS worker's verification
/// says that server does not serve the change (a `dns-lagging` alert naming it), the first does.
#[tokio::test]
async fn verification_names_a_lagging_name_server() {
    let s = standin().await;
    let (b, t) = backend(&s, TOKEN);
    s.dns().lag_second();
    let c = change(www_primary(), backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_second_lags(&served_by(&s, &t), &c).await;
}
