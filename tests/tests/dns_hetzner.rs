//! The Hetzner backend against the stand-in of the Hetzner Cloud API's zone RRsets
//! (`tests::hetzner`): asynchronous actions polled to success, switch and back with A and AAAA,
//! a wrong token, throttling, a hand edit, a failed action, and the readiness check.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coordinator::dns::hetzner::{self, Config};
use coordinator::dns::{BackendConfig, DnsBackend, DnsError};
use tests::fixtures::{
    SecretFile, ZONE, apply_with_retries, assert_current, change, secret_file, www_backup,
    www_primary,
};
use tests::hetzner::{HetznerStandIn, Rrset, start};

const TOKEN: &str = "hcloud-token-0123456789";

async fn standin() -> HetznerStandIn {
    start(
        TOKEN,
        "example.test",
        &[
            ("@", "NS", None, &["hydrogen.ns.hetzner.com."]),
            ("www", "A", Some(300), &["192.0.2.10"]),
            ("www", "AAAA", Some(300), &["2001:db8::10"]),
            ("mail", "A", None, &["192.0.2.25"]),
        ],
    )
    .await
}

fn config(s: &HetznerStandIn, token: &SecretFile) -> Config {
    Config {
        base_url: s.url(),
        zone: "example.test".into(),
        api_token_file: Some(token.path.clone()),
        api_token_env: None,
        api_token_credential: None,
        timeout: Duration::from_secs(5),
        action_timeout: Duration::from_secs(10),
        force: false,
    }
}

fn backend(s: &HetznerStandIn, token: &str) -> (hetzner::Hetzner, SecretFile) {
    let file = secret_file("hcloud.token", token);
    (hetzner::build(&config(s, &file)).unwrap(), file)
}

/// The backend's settings, for the DNS worker's verification of what it applied.
fn served_by(s: &HetznerStandIn, token: &SecretFile) -> BackendConfig {
    BackendConfig::Hetzner(config(s, token))
}

#[tokio::test]
async fn switch_to_backup_and_back_polls_the_actions() {
    let s = standin().await;
    let (b, t) = backend(&s, TOKEN);
    assert_current(&b, &www_primary()).await;

    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &www_backup()).await;
    s.with_state(|st| {
        assert_eq!(
            st.rrset("example.test", "www", "A"),
            Some(Rrset {
                ttl: Some(60),
                records: vec!["198.51.100.10".into(), "198.51.100.11".into()]
            })
        );
        assert_eq!(st.running_actions(), 0, "every action was waited for");
        assert_eq!(
            st.rrset("example.test", "mail", "A").unwrap().records,
            vec!["192.0.2.25".to_string()],
            "other records are untouched"
        );
    });
    let writes = s.writes();
    assert!(
        writes
            .iter()
            .any(|w| w == "POST /v1/zones/example.test/rrsets/www/A/actions/set_records"),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w == "POST /v1/zones/example.test/rrsets/www/AAAA/actions/change_ttl"),
        "{writes:?}"
    );
    let polls = s
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /v1/zones/actions/"))
        .count();
    assert!(
        polls >= 4 * 2,
        "each of the 4 actions polled twice: {polls}"
    );

    let c = change(www_backup(), www_primary());
    b.apply(&c).await.unwrap();
    s.dns().assert_served(&served_by(&s, &t), &c).await;
    assert_current(&b, &www_primary()).await;
}

#[tokio::test]
async fn a_missing_rrset_is_created_and_an_emptied_one_deleted() {
    let s = standin().await;
    s.with_state(|st| {
        st.zones
            .get_mut("example.test")
            .unwrap()
            .rrsets
            .remove(&("www".into(), "AAAA".into()));
    });
    let (b, _t) = backend(&s, TOKEN);
    let mut from = www_primary();
    from[1].addrs.clear();
    let mut to = www_backup();
    b.apply(&change(from.clone(), to.clone())).await.unwrap();
    assert_current(&b, &to).await;
    assert!(
        s.writes()
            .contains(&"POST /v1/zones/example.test/rrsets".to_string())
    );
    to[1].addrs.clear();
    b.apply(&change(www_backup(), to.clone())).await.unwrap();
    assert!(s.with_state(|st| st.rrset("example.test", "www", "AAAA").is_none()));
}

#[tokio::test]
async fn wrong_token_is_auth_naming_the_provider_and_the_setting() {
    let s = standin().await;
    let (b, t) = backend(&s, "not-the-token");
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("wrong token: {err}");
    match &err {
        DnsError::Auth(text) => {
            assert!(text.starts_with("hetzner refused the API token"), "{text}");
            assert!(text.contains("api_token_file"), "{text}");
            assert!(text.contains(&t.path.display().to_string()), "{text}");
            assert!(text.contains("example.test."), "{text}");
            assert!(text.contains("401"), "{text}");
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("not-the-token"));
    assert!(s.writes().is_empty());
}

#[tokio::test]
async fn throttled_is_transient_then_applied() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    s.throttle_next(2);
    let (outcome, transient) =
        apply_with_retries(&b, &change(www_primary(), www_backup()), 5).await;
    outcome.unwrap();
    assert_eq!(transient.len(), 2, "{transient:?}");
    for t in &transient {
        assert!(
            t.contains("hetzner is throttling requests (HTTP 429"),
            "{t}"
        );
        assert!(t.contains("RateLimit-Reset"), "{t}");
        assert!(t.contains("zone example.test."), "{t}");
    }
    assert_current(&b, &www_backup()).await;
}

#[tokio::test]
async fn a_hand_edit_is_a_conflict_and_nothing_is_written() {
    let s = standin().await;
    s.with_state(|st| {
        st.zones.get_mut("example.test").unwrap().rrsets.insert(
            ("www".into(), "A".into()),
            Rrset {
                ttl: Some(120),
                records: vec!["203.0.113.5".into()],
            },
        );
    });
    let (b, _t) = backend(&s, TOKEN);
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(expected.contains("192.0.2.10"), "{expected}");
            assert!(found.contains("203.0.113.5"), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(s.writes().is_empty(), "{:?}", s.writes());
}

#[tokio::test]
async fn a_failed_action_is_rejected() {
    let s = standin().await;
    s.with_state(|st| st.fail_next_action = true);
    let (b, _t) = backend(&s, TOKEN);
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("failed action: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("action") && t.contains("failed") && t.contains("www.example.test. A")),
        "{err:?}"
    );
}

#[tokio::test]
async fn check_proves_the_token_and_zone_and_changes_nothing() {
    let s = standin().await;
    let (b, _t) = backend(&s, TOKEN);
    let proof = b.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(
        proof.contains("zone example.test. there (primary)"),
        "{proof}"
    );
    assert!(proof.contains("no conditional write"), "{proof}");

    let (wrong, _t2) = backend(&s, "wrong");
    let err = wrong.check(ZONE, &www_primary()).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("hetzner")),
        "{err:?}"
    );

    let file = secret_file("t", TOKEN);
    let mut cfg = config(&s, &file);
    cfg.zone = "nosuch.test".into();
    let err = hetzner::build(&cfg)
        .unwrap()
        .check("nosuch.test.", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("hetzner has no zone nosuch.test.")),
        "{err:?}"
    );

    let mut stale = www_primary();
    stale[1].addrs = vec!["2001:db8::99".parse().unwrap()];
    let err = b.check(ZONE, &stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");
    assert!(s.writes().is_empty(), "a check writes nothing");
}

#[tokio::test]
async fn an_action_still_running_at_the_bound_is_transient() {
    let s = standin().await;
    s.with_state(|st| st.polls_to_finish = 1000);
    let file = secret_file("hcloud.token", TOKEN);
    let mut cfg = config(&s, &file);
    cfg.action_timeout = Duration::from_millis(400);
    let b = hetzner::build(&cfg).unwrap();
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("still running: {err}");
    assert!(
        matches!(&err, DnsError::Transient(t) if t.contains("still running") && t.contains("www.example.test. A")),
        "{err:?}"
    );
    assert!(
        s.with_state(|st| st.running_actions()) >= 1,
        "the action was left running, not cancelled"
    );
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
