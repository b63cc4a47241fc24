//! The Cloudflare backend against the stateful stand-in of its API (`tests::cloudflare`):
//! switch and back with A and AAAA in one batch request per change, `proxied` kept, the zone
//! id looked up once; a wrong token is auth naming the provider; 429 retried after
//! `Retry-After` then applied; hand edits (before the read, and between the read and the
//! batch) are conflicts that change nothing; `check`.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use coordinator::dns::cloudflare::{self, Config};
use coordinator::dns::{BackendConfig, DnsBackend, DnsError};
use tests::cloudflare::CloudflareStandIn;
use tests::fixtures::{
    SecretFile, ZONE, assert_current, change, secret_file, www_backup, www_primary,
};

const TOKEN: &str = "cf-test-token-0123456789abcdef";

async fn start() -> CloudflareStandIn {
    let cf = CloudflareStandIn::start(TOKEN, "example.test").await;
    cf.with_state(|s| {
        let a = s.add("example.test", "www.example.test", "A", "192.0.2.10", 300);
        s.add(
            "example.test",
            "www.example.test",
            "AAAA",
            "2001:db8::10",
            300,
        );
        s.add("example.test", "mail.example.test", "A", "192.0.2.25", 3600);
        // The A record goes through Cloudflare's proxy: the new ones must too.
        if let Some((_, r)) = s.records.iter_mut().find(|(_, r)| r.id == a) {
            r.proxied = true;
        }
    });
    cf
}

fn config(cf: &CloudflareStandIn, token: &SecretFile) -> Config {
    Config {
        zone: "example.test".into(),
        api_token_file: Some(token.path.clone()),
        api_token_env: None,
        api_token_credential: None,
        base_url: cf.base_url(),
        ca_file: None,
        timeout: Duration::from_secs(5),
        force: false,
    }
}

fn backend(cf: &CloudflareStandIn, token: &SecretFile) -> cloudflare::Cloudflare {
    cloudflare::build(&config(cf, token)).unwrap()
}

/// The backend's settings, for the DNS worker's verification of what it applied.
fn served_by(cf: &CloudflareStandIn, token: &SecretFile) -> BackendConfig {
    BackendConfig::Cloudflare(config(cf, token))
}

#[tokio::test]
async fn switch_to_backup_and_back_in_one_batch_each() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let b = backend(&cf, &token);
    assert_current(&b, &www_primary()).await;

    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    cf.dns().assert_served(&served_by(&cf, &token), &c).await;
    assert_current(&b, &www_backup()).await;
    cf.with_state(|s| {
        assert_eq!(s.batches_applied, 1, "one change must be one batch");
        assert_eq!(
            s.contents("www.example.test", "A"),
            ["198.51.100.10", "198.51.100.11"]
        );
        let a: Vec<_> = s
            .records
            .iter()
            .filter(|(_, r)| r.name == "www.example.test" && r.rtype == "A")
            .collect();
        assert!(a.iter().all(|(_, r)| r.proxied && r.ttl == 60), "{a:?}");
        let aaaa: Vec<_> = s
            .records
            .iter()
            .filter(|(_, r)| r.rtype == "AAAA")
            .collect();
        assert!(aaaa.iter().all(|(_, r)| !r.proxied), "{aaaa:?}");
        assert_eq!(s.contents("mail.example.test", "A"), ["192.0.2.25"]);
    });

    let c = change(www_backup(), www_primary());
    b.apply(&c).await.unwrap();
    cf.dns().assert_served(&served_by(&cf, &token), &c).await;
    assert_current(&b, &www_primary()).await;
    // Applying again is "already applied": no third batch.
    b.apply(&change(www_backup(), www_primary())).await.unwrap();
    cf.with_state(|s| {
        assert_eq!(s.batches_applied, 2);
        let lookups = s
            .requests
            .iter()
            .filter(|r| r.starts_with("GET /zones "))
            .count();
        assert_eq!(
            lookups, 1,
            "the zone id is looked up once: {:?}",
            s.requests
        );
    });
}

#[tokio::test]
async fn a_wrong_token_is_auth_naming_the_provider_and_the_setting() {
    let cf = start().await;
    let token = secret_file("wrong.token", "not-the-token");
    let err = backend(&cf, &token)
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("wrong token: {err}");
    match &err {
        DnsError::Auth(t) => {
            assert!(t.contains("cloudflare"), "{t}");
            assert!(t.contains("api_token_file"), "{t}");
            assert!(t.contains("wrong.token"), "{t}");
            assert!(t.contains("example.test"), "{t}");
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("not-the-token"));
    cf.with_state(|s| assert_eq!(s.batches_applied, 0));
}

#[tokio::test]
async fn rate_limited_requests_are_retried_after_retry_after_then_applied() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let b = backend(&cf, &token);
    cf.throttle(2, 1);
    let first = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    assert_eq!(first.retry_after(), Some(Duration::from_secs(1)), "{first}");
    assert!(
        first.is_retryable() && first.to_string().contains("429"),
        "{first}"
    );

    let started = Instant::now();
    let tries = tests::fixtures::apply_retrying(&b, &change(www_primary(), www_backup()), 5)
        .await
        .unwrap();
    assert_eq!(tries, 2, "one more 429, then applied");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After must be waited for"
    );
    assert_current(&b, &www_backup()).await;
    cf.with_state(|s| assert_eq!(s.batches_applied, 1));
}

#[tokio::test]
async fn a_hand_edit_before_the_change_is_a_conflict() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    cf.with_state(|s| {
        s.records
            .retain(|(_, r)| !(r.name == "www.example.test" && r.rtype == "A"));
        s.add("example.test", "www.example.test", "A", "203.0.113.5", 120);
    });
    let err = backend(&cf, &token)
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
    cf.with_state(|s| {
        assert_eq!(s.batches_applied, 0);
        assert_eq!(s.contents("www.example.test", "A"), ["203.0.113.5"]);
    });
    // force = true replaces whatever is there.
    let mut cfg = config(&cf, &token);
    cfg.force = true;
    let forced = cloudflare::build(&cfg).unwrap();
    forced
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap();
    assert_current(&forced, &www_backup()).await;
}

/// The record is replaced by hand between Quorate's read and its batch: the batch names a
/// record id that no longer exists, so Cloudflare fails the whole batch (nothing deleted,
/// nothing posted) and Quorate reports a conflict.
#[tokio::test]
async fn a_record_replaced_between_read_and_batch_fails_the_whole_batch() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    cf.with_state(|s| {
        s.before_next_batch = Some(Box::new(|s| {
            s.records
                .retain(|(_, r)| !(r.name == "www.example.test" && r.rtype == "A"));
            s.add("example.test", "www.example.test", "A", "203.0.113.7", 300);
        }));
    });
    let err = backend(&cf, &token)
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("stale id: {err}");
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(expected.contains("81044"), "{expected}");
            assert!(found.contains("203.0.113.7"), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    cf.with_state(|s| {
        assert_eq!(s.batches_applied, 0);
        // The AAAA delete in the same batch did not happen either.
        assert_eq!(s.contents("www.example.test", "AAAA"), ["2001:db8::10"]);
        assert_eq!(s.contents("www.example.test", "A"), ["203.0.113.7"]);
    });
}

#[tokio::test]
async fn a_ttl_under_the_minimum_is_rejected_and_nothing_changes() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let mut to = www_backup();
    for s in &mut to {
        s.ttl = 30;
    }
    let err = backend(&cf, &token)
        .apply(&change(www_primary(), to))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("9021") && t.contains("cloudflare")),
        "{err:?}"
    );
    cf.with_state(|s| assert_eq!(s.contents("www.example.test", "A"), ["192.0.2.10"]));
}

#[tokio::test]
async fn check_proves_the_token_and_the_zone_and_compares() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let b = backend(&cf, &token);
    let proof = b.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(
        proof.contains("zone example.test there") && proof.contains("not proven"),
        "{proof}"
    );

    let mut stale = www_primary();
    stale[0].addrs = vec!["203.0.113.9".parse().unwrap()];
    let err = b.check(ZONE, &stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");

    let wrong = secret_file("wrong.token", "nope");
    let err = backend(&cf, &wrong)
        .check(ZONE, &www_primary())
        .await
        .unwrap_err();
    println!("wrong token: {err}");
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("cloudflare") && t.contains("wrong.token")),
        "{err:?}"
    );

    let mut cfg = config(&cf, &token);
    cfg.zone = "nosuch.test".into();
    let err = cloudflare::build(&cfg)
        .unwrap()
        .check("nosuch.test.", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("no zone nosuch.test")),
        "{err:?}"
    );
    cf.with_state(|s| {
        assert_eq!(s.batches_applied, 0, "a check never writes");
        assert!(s.requests.iter().all(|r| !r.starts_with("POST")));
    });
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let mut cfg = config(&cf, &token);
    cfg.api_token_env = Some("CF_TOKEN".into());
    let e = cloudflare::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("api_token_file:") && e.contains("only one"),
        "{e}"
    );
    let mut cfg = config(&cf, &token);
    cfg.api_token_file = None;
    cfg.api_token_env = Some("QUORATE_TEST_SURELY_UNSET_VARIABLE".into());
    let e = cloudflare::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("api_token_env:") && e.contains("QUORATE_TEST_SURELY_UNSET_VARIABLE"),
        "{e}"
    );
    let mut cfg = config(&cf, &token);
    cfg.base_url = "http://api.example.test/client/v4".into();
    let e = cloudflare::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("base_url:"), "{e}");
    let b = backend(&cf, &token);
    assert!(!format!("{b:?}").contains(TOKEN));
}

/// The `[dns]` table as an operator writes it: parsed, the token read once by
/// `LoadedBackend::load`, built by `build_backend`, and working.
#[tokio::test]
async fn built_from_a_config_table() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let table = format!(
        "type = \"cloudflare\"\nzone = \"example.test\"\napi_token_file = {:?}\nbase_url = {:?}\n",
        token.path.display().to_string(),
        cf.base_url()
    );
    let config: coordinator::dns::BackendConfig = toml::from_str(&table).unwrap();
    assert_eq!(config.kind(), "cloudflare");
    assert_eq!(config.zone(), Some("example.test"));
    let loaded = coordinator::dns::LoadedBackend::load(config).unwrap();
    assert!(!format!("{loaded:?}").contains(TOKEN));
    let coordinator::dns::BuiltBackend::Ready(b) =
        coordinator::dns::build_backend(&loaded).unwrap()
    else {
        panic!("cloudflare is built ready to use");
    };
    b.check(ZONE, &www_primary()).await.unwrap();

    let e = toml::from_str::<coordinator::dns::BackendConfig>(
        "type = \"cloudflare\"\nzone = \"example.test\"\napi_token = \"inline\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("api_token"), "{e}");
}

/// The zone's second name server stops following the provider: the DNS worker's verification
/// says that server does not serve the change (a `dns-lagging` alert naming it), the first does.
#[tokio::test]
async fn verification_names_a_lagging_name_server() {
    let cf = start().await;
    let token = secret_file("cf.token", TOKEN);
    let b = backend(&cf, &token);
    cf.dns().lag_second();
    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    cf.dns()
        .assert_second_lags(&served_by(&cf, &token), &c)
        .await;
}
