//! The deSEC backend against the stand-in of its API (`tests::desec`): one bulk `PUT` (one
//! transaction) for A and AAAA, switch and back at the default minimum TTL of 3600 s, a TTL
//! under the minimum (a warning at `check`, refused at `apply`), a wrong token, throttling
//! with `Retry-After`, a hand edit, and the readiness check.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coordinator::dns::desec::{self, Config, Desec};
use coordinator::dns::{BackendConfig, DnsBackend, DnsError, WARNING};
use tests::desec::{DEFAULT_MINIMUM_TTL, DesecStandIn, Rrset, start};
use tests::fixtures::{
    SecretFile, ZONE, apply_with_retries, assert_current, change, secret_file, with_ttl,
    www_backup, www_primary,
};

const TOKEN: &str = "desec-token-0123456789";

async fn standin() -> DesecStandIn {
    start(
        TOKEN,
        "example.test",
        DEFAULT_MINIMUM_TTL,
        &[
            ("", "NS", 3600, &["ns1.desec.io."]),
            ("www", "A", 3600, &["192.0.2.10"]),
            ("www", "AAAA", 3600, &["2001:db8::10"]),
        ],
    )
    .await
}

fn config(s: &DesecStandIn, token: &SecretFile) -> Config {
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

fn backend(s: &DesecStandIn, token: &str) -> (Desec, SecretFile) {
    let file = secret_file("desec.token", token);
    (desec::build(&config(s, &file)).unwrap(), file)
}

/// The backend's settings, for the DNS worker's verification of what it applied.
fn served_by(s: &DesecStandIn, token: &SecretFile) -> BackendConfig {
    BackendConfig::Desec(config(s, token))
}

fn primary() -> Vec<coordinator::dns::RecordSet> {
    with_ttl(www_primary(), 3600)
}

fn backup() -> Vec<coordinator::dns::RecordSet> {
    with_ttl(www_backup(), 3600)
}

fn transactions(s: &DesecStandIn) -> u32 {
    s.with_state(|st| st.domains["example.test"].transactions)
}

#[tokio::test]
async fn switch_to_backup_and_back_in_one_bulk_request() {
    let s = standin().await;
    let (b, t) = backend(&s, TOKEN);
    assert_current(&b, &primary()).await;

    let c = change(primary(), backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &backup()).await;
    assert_eq!(
        s.writes(),
        vec!["PUT /api/v1/domains/example.test/rrsets/".to_string()],
        "A and AAAA in one request"
    );
    assert_eq!(transactions(&s), 1);
    s.with_state(|st| {
        assert_eq!(
            st.rrset("example.test", "www", "AAAA"),
            Some(Rrset {
                ttl: 3600,
                records: vec!["2001:db8:b::10".into()]
            })
        );
    });

    let c = change(backup(), primary());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &primary()).await;
    assert_eq!(transactions(&s), 2);

    // Emptying an RRset deletes it (`records: []` in the same bulk request).
    let mut v4_only = backup();
    v4_only[1].addrs.clear();
    b.apply(&change(primary(), v4_only)).await.unwrap();
    assert!(s.with_state(|st| st.rrset("example.test", "www", "AAAA").is_none()));
}

#[tokio::test]
async fn a_ttl_under_the_minimum_warns_at_check_and_is_refused_whole() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let low = www_backup(); // TTL 60
    let proof = b.check(ZONE, &with_ttl(www_primary(), 60)).await.unwrap();
    println!("check: {proof}");
    assert!(proof.starts_with(WARNING), "{proof}");
    assert!(proof.contains("minimum of 3600 s"), "{proof}");

    let err = b.apply(&change(primary(), low)).await.unwrap_err();
    println!("apply: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("desec refused") && t.contains("greater than or equal to 3600") && t.contains("under the domain's minimum")),
        "{err:?}"
    );
    assert_eq!(transactions(&s), 0, "all or nothing: nothing changed");
    assert_current(&b, &primary()).await;

    // A domain whose minimum deSEC lowered takes TTL 60.
    s.with_state(|st| st.domains.get_mut("example.test").unwrap().minimum_ttl = 60);
    let proof = b.check(ZONE, &with_ttl(www_primary(), 60)).await.unwrap();
    assert!(!proof.starts_with(WARNING), "{proof}");
    b.apply(&change(primary(), www_backup())).await.unwrap();
    assert_current(&b, &www_backup()).await;
}

#[tokio::test]
async fn wrong_token_is_auth_naming_the_provider_and_the_setting() {
    let s = standin().await;
    let (b, t) = backend(&s, "wrong-token");
    let err = b.apply(&change(primary(), backup())).await.unwrap_err();
    println!("wrong token: {err}");
    match &err {
        DnsError::Auth(text) => {
            assert!(text.starts_with("desec refused the API token"), "{text}");
            assert!(text.contains(&t.path.display().to_string()), "{text}");
            assert!(text.contains("Invalid token."), "{text}");
            assert!(text.contains("zone example.test."), "{text}");
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("wrong-token"));
    assert!(s.writes().is_empty());
}

#[tokio::test]
async fn throttled_is_transient_with_retry_after_then_applied() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    s.throttle_next(2);
    let (outcome, transient) = apply_with_retries(&b, &change(primary(), backup()), 5).await;
    outcome.unwrap();
    assert_eq!(transient.len(), 2, "{transient:?}");
    for t in &transient {
        assert!(t.contains("desec is throttling requests (HTTP 429"), "{t}");
        assert!(t.contains("Retry-After: 1 s"), "{t}");
        assert!(t.contains("Request was throttled"), "{t}");
    }
    assert_current(&b, &backup()).await;
}

#[tokio::test]
async fn a_hand_edit_is_a_conflict_and_nothing_is_written() {
    let s = standin().await;
    s.with_state(|st| {
        st.domains.get_mut("example.test").unwrap().rrsets.insert(
            ("www".into(), "AAAA".into()),
            Rrset {
                ttl: 3600,
                records: vec!["2001:db8::77".into()],
            },
        );
    });
    let (b, _t) = backend(&s, TOKEN);
    let err = b.apply(&change(primary(), backup())).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Conflict { found, .. } if found.contains("2001:db8::77")),
        "{err:?}"
    );
    assert!(s.writes().is_empty(), "{:?}", s.writes());
}

#[tokio::test]
async fn check_proves_the_token_and_zone_and_changes_nothing() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let proof = b.check(ZONE, &primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(
        proof.contains("domain example.test there (minimum TTL 3600 s)"),
        "{proof}"
    );

    let (wrong, _t2) = backend(&s, "wrong");
    let err = wrong.check(ZONE, &primary()).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("desec")),
        "{err:?}"
    );

    let file = secret_file("t", TOKEN);
    let mut cfg = config(&s, &file);
    cfg.zone = "nosuch.test".into();
    let err = desec::build(&cfg)
        .unwrap()
        .check("nosuch.test.", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("desec has no zone nosuch.test.")),
        "{err:?}"
    );

    let mut stale = primary();
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
    let c = change(primary(), backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_second_lags(&served_by(&s, &t), &c).await;
}
