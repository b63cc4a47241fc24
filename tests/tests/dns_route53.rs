//! The Route 53 backend against the stateful stand-in of its API (`tests::route53`), which
//! verifies every SigV4 signature: switch and back with A and AAAA, one conditional
//! DELETE+CREATE batch per change, waiting for INSYNC (with a bound); a wrong secret or key id
//! is auth naming the provider; throttling retried after `Retry-After` then applied; hand
//! edits (before the read, and between the read and the batch) are conflicts that change
//! nothing; `check`. The same backend against moto's server with IAM signature checking on
//! (`tests::moto`): switch and back, and a wrong secret refused as auth.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use coordinator::dns::route53::{self, Config};
use coordinator::dns::{BackendConfig, DnsBackend, DnsError};
use tests::fixtures::{
    SecretFile, ZONE, assert_current, change, secret_file, www_backup, www_primary,
};
use tests::route53::{R53Set, Route53StandIn};

const KEY_ID: &str = "AKIAQUORATETEST00001";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const ZONE_ID: &str = "Z0123456789QUORATE";

async fn start() -> Route53StandIn {
    Route53StandIn::start(
        KEY_ID,
        SECRET,
        ZONE_ID,
        "example.test.",
        vec![
            R53Set::new("example.test.", "NS", 172800, &["ns-1.awsdns-00.com."]),
            R53Set::new("www.example.test.", "A", 300, &["192.0.2.10"]),
            R53Set::new("www.example.test.", "AAAA", 300, &["2001:db8::10"]),
            R53Set::new("mail.example.test.", "A", 3600, &["192.0.2.25"]),
        ],
    )
    .await
}

fn credentials(key_id: &str, secret: &str) -> SecretFile {
    secret_file(
        "aws-credentials",
        &format!(
            "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = other\n\n[quorate]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
        ),
    )
}

fn config(r53: &Route53StandIn, creds: &SecretFile) -> Config {
    Config {
        zone: "example.test.".into(),
        hosted_zone_id: ZONE_ID.into(),
        credentials_file: Some(creds.path.clone()),
        profile: Some("quorate".into()),
        access_key_id: None,
        secret_access_key_file: None,
        secret_access_key_env: None,
        secret_access_key_credential: None,
        endpoint: r53.endpoint(),
        region: "us-east-1".into(),
        ca_file: None,
        timeout: Duration::from_secs(5),
        sync_timeout: Duration::from_secs(10),
        force: false,
    }
}

fn backend(r53: &Route53StandIn, creds: &SecretFile) -> route53::Route53 {
    route53::build(&config(r53, creds)).unwrap()
}

/// The backend's settings, for the DNS worker's verification of what it applied.
fn served_by(r53: &Route53StandIn, token: &SecretFile) -> BackendConfig {
    BackendConfig::Route53(config(r53, token))
}

#[tokio::test]
async fn switch_to_backup_and_back_in_one_conditional_batch_each() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    let b = backend(&r53, &creds);
    assert_current(&b, &www_primary()).await;

    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    r53.dns().assert_served(&served_by(&r53, &creds), &c).await;
    r53.with_state(|s| {
        assert_eq!(s.batches_applied, 1, "one change must be one batch");
        assert!(
            s.get_change_calls >= s.insync_after,
            "apply returns only once the change is INSYNC ({} GetChange calls)",
            s.get_change_calls
        );
        assert!(s.changes.values().all(|left| *left == 0));
        let a = s.set(ZONE_ID, "www.example.test.", "A").unwrap();
        assert_eq!(a.ttl, 60);
        let mut values = a.values.clone();
        values.sort();
        assert_eq!(values, ["198.51.100.10", "198.51.100.11"]);
        assert_eq!(
            s.set(ZONE_ID, "mail.example.test.", "A").unwrap().values,
            ["192.0.2.25"]
        );
    });
    assert_current(&b, &www_backup()).await;

    let c = change(www_backup(), www_primary());
    b.apply(&c).await.unwrap();
    r53.dns().assert_served(&served_by(&r53, &creds), &c).await;
    assert_current(&b, &www_primary()).await;
    // Applying again is "already applied": no third batch.
    b.apply(&change(www_backup(), www_primary())).await.unwrap();
    r53.with_state(|s| assert_eq!(s.batches_applied, 2));
}

#[tokio::test]
async fn a_wrong_secret_or_key_id_is_auth_naming_the_provider() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, "not-the-secret-key");
    let err = backend(&r53, &creds)
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("wrong secret: {err}");
    match &err {
        DnsError::Auth(t) => {
            assert!(t.contains("route53"), "{t}");
            assert!(t.contains("SignatureDoesNotMatch"), "{t}");
            assert!(
                t.contains("credentials_file") && t.contains("profile quorate"),
                "{t}"
            );
            assert!(
                t.contains(ZONE_ID) && t.contains("www.example.test."),
                "{t}"
            );
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("not-the-secret-key"));

    let creds = credentials("AKIAUNKNOWN000000000", SECRET);
    let err = backend(&r53, &creds)
        .current(ZONE, &www_primary())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("InvalidClientTokenId")),
        "{err:?}"
    );
    r53.with_state(|s| assert_eq!(s.batches_applied, 0));
}

#[tokio::test]
async fn the_stand_in_refuses_an_unsigned_request() {
    let r53 = start().await;
    let resp = reqwest::get(format!(
        "{}/2013-04-01/hostedzone/{ZONE_ID}",
        r53.endpoint()
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("MissingAuthenticationToken")
    );
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_then_applied() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    let b = backend(&r53, &creds);
    r53.throttle(2, 1);
    let first = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    assert_eq!(first.retry_after(), Some(Duration::from_secs(1)), "{first}");
    assert!(
        first.is_retryable() && first.to_string().contains("Throttling"),
        "{first}"
    );

    let started = Instant::now();
    let tries = tests::fixtures::apply_retrying(&b, &change(www_primary(), www_backup()), 5)
        .await
        .unwrap();
    assert_eq!(tries, 2, "one more throttled answer, then applied");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After must be waited for"
    );
    assert_current(&b, &www_backup()).await;
}

#[tokio::test]
async fn a_hand_edit_before_the_change_is_a_conflict() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    r53.with_state(|s| {
        s.set_mut(ZONE_ID, "www.example.test.", "A").unwrap().values = vec!["203.0.113.5".into()];
    });
    let err = backend(&r53, &creds)
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
    r53.with_state(|s| assert_eq!(s.batches_applied, 0));
    // force = true deletes whatever is there (still exactly, so still one conditional batch).
    let mut cfg = config(&r53, &creds);
    cfg.force = true;
    let forced = route53::build(&cfg).unwrap();
    forced
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap();
    assert_current(&forced, &www_backup()).await;
}

/// The record set is edited by hand between Quorate's read and its batch: the DELETE no
/// longer matches, Route 53 refuses the whole batch (the AAAA part too) and Quorate reports a
/// conflict.
#[tokio::test]
async fn a_record_changed_between_read_and_batch_fails_the_whole_batch() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    r53.with_state(|s| {
        s.before_next_change = Some(Box::new(|s| {
            s.set_mut(ZONE_ID, "www.example.test.", "A").unwrap().values =
                vec!["203.0.113.7".into()];
        }));
    });
    let err = backend(&r53, &creds)
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("changed between read and batch: {err}");
    match &err {
        DnsError::Conflict { expected, found } => {
            assert!(
                expected.contains("InvalidChangeBatch") && expected.contains("do not match"),
                "{expected}"
            );
            assert!(found.contains("203.0.113.7"), "{found}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    r53.with_state(|s| {
        assert_eq!(s.batches_applied, 0);
        assert_eq!(
            s.set(ZONE_ID, "www.example.test.", "AAAA").unwrap().values,
            ["2001:db8::10"]
        );
    });
}

#[tokio::test]
async fn waiting_for_insync_is_bounded_and_a_retry_finds_the_change_applied() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    r53.with_state(|s| s.insync_after = 1_000);
    let mut cfg = config(&r53, &creds);
    cfg.sync_timeout = Duration::from_secs(1);
    let b = route53::build(&cfg).unwrap();
    let started = Instant::now();
    let err = b
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("not in sync: {err}");
    assert!(
        matches!(&err, DnsError::Transient(t) if t.contains("PENDING") && t.contains("sync_timeout")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by sync_timeout"
    );
    b.apply(&change(www_primary(), www_backup())).await.unwrap();
    r53.with_state(|s| assert_eq!(s.batches_applied, 1, "not sent twice"));
}

#[tokio::test]
async fn check_proves_the_key_and_the_hosted_zone_and_compares() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    let b = backend(&r53, &creds);
    let proof = b.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(
        proof.contains(ZONE_ID)
            && proof.contains("is example.test.")
            && proof.contains("not proven"),
        "{proof}"
    );

    let mut stale = www_primary();
    stale[1].addrs = vec!["2001:db8::99".parse().unwrap()];
    let err = b.check(ZONE, &stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");

    let wrong = credentials(KEY_ID, "wrong");
    let err = backend(&r53, &wrong)
        .check(ZONE, &www_primary())
        .await
        .unwrap_err();
    println!("wrong secret: {err}");
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("route53") && t.contains(KEY_ID)),
        "{err:?}"
    );

    let mut cfg = config(&r53, &creds);
    cfg.hosted_zone_id = "ZNOSUCHZONE".into();
    let err = route53::build(&cfg)
        .unwrap()
        .check(ZONE, &www_primary())
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("NoSuchHostedZone") && t.contains("hosted_zone_id")),
        "{err:?}"
    );

    let mut cfg = config(&r53, &creds);
    cfg.zone = "other.test.".into();
    let err = route53::build(&cfg)
        .unwrap()
        .check("other.test.", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("not other.test.")),
        "{err:?}"
    );
    r53.with_state(|s| {
        assert_eq!(s.batches_applied, 0, "a check never writes");
        assert!(s.requests.iter().all(|r| !r.starts_with("POST")));
    });
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    let mut cfg = config(&r53, &creds);
    cfg.profile = Some("nosuch".into());
    let e = route53::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with("credentials_file:") && e.contains("[nosuch]"),
        "{e}"
    );
    let mut cfg = config(&r53, &creds);
    cfg.hosted_zone_id = "Z/../x".into();
    let e = route53::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("hosted_zone_id:"), "{e}");
    let mut cfg = config(&r53, &creds);
    cfg.endpoint = "http://route53.example.test".into();
    let e = route53::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("endpoint:"), "{e}");
    let b = backend(&r53, &creds);
    assert!(!format!("{b:?}").contains(SECRET));
}

/// The `[dns]` table as an operator writes it: parsed, the credentials read once by
/// `LoadedBackend::load`, built by `build_backend`, and working.
#[tokio::test]
async fn built_from_a_config_table() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    let table = format!(
        "type = \"route53\"\nzone = \"example.test.\"\nhosted_zone_id = \"/hostedzone/{ZONE_ID}\"\ncredentials_file = {:?}\nprofile = \"quorate\"\nendpoint = {:?}\n",
        creds.path.display().to_string(),
        r53.endpoint()
    );
    let config: coordinator::dns::BackendConfig = toml::from_str(&table).unwrap();
    assert_eq!(config.kind(), "route53");
    assert_eq!(config.zone(), Some("example.test."));
    let loaded = coordinator::dns::LoadedBackend::load(config).unwrap();
    assert!(!format!("{loaded:?}").contains(SECRET));
    let coordinator::dns::BuiltBackend::Ready(b) =
        coordinator::dns::build_backend(&loaded).unwrap()
    else {
        panic!("route53 is built ready to use");
    };
    b.check(ZONE, &www_primary()).await.unwrap();
}

/// The zone's second name server stops following the provider: the DNS worker's verification
/// says that server does not serve the change (a `dns-lagging` alert naming it), the first does.
#[tokio::test]
async fn verification_names_a_lagging_name_server() {
    let r53 = start().await;
    let creds = credentials(KEY_ID, SECRET);
    let b = backend(&r53, &creds);
    r53.dns().lag_second();
    let c = change(www_primary(), www_backup());
    b.apply(&c).await.unwrap();
    r53.dns()
        .assert_second_lags(&served_by(&r53, &creds), &c)
        .await;
}

/// moto's server with IAM signature checking on (`tests::moto`): the key is an IAM user's,
/// its secret read from a systemd credential (`access_key_id` + `secret_access_key_credential`).
async fn on_moto() -> (tests::moto::Moto, tempfile::TempDir, Config) {
    let moto = tests::moto::Moto::start(
        "example.test.",
        &[
            ("www.example.test.", "A", 300, &["192.0.2.10"]),
            ("www.example.test.", "AAAA", 300, &["2001:db8::10"]),
        ],
    )
    .await;
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join("route53-secret"),
        format!("{}\n", moto.secret_access_key),
    )
    .unwrap();
    let config = Config {
        zone: "example.test.".into(),
        hosted_zone_id: moto.zone_id.clone(),
        credentials_file: None,
        profile: None,
        access_key_id: Some(moto.access_key_id.clone()),
        secret_access_key_file: None,
        secret_access_key_env: None,
        secret_access_key_credential: Some("route53-secret".into()),
        endpoint: moto.endpoint(),
        region: "us-east-1".into(),
        ca_file: None,
        timeout: Duration::from_secs(10),
        sync_timeout: Duration::from_secs(10),
        force: false,
    };
    (moto, credentials, config)
}

/// The backend of `config`, its secret read as under systemd (`$CREDENTIALS_DIRECTORY`).
fn from_credentials(config: &Config, dir: &tempfile::TempDir) -> route53::Route53 {
    let dir = dir.path().display().to_string();
    let creds = config
        .read_credentials_with(|n| (n == "CREDENTIALS_DIRECTORY").then(|| dir.clone()))
        .unwrap();
    route53::build_with_credentials(config, creds).unwrap()
}

#[tokio::test]
async fn moto_with_signature_checking_switch_to_backup_and_back() {
    let (moto, dir, config) = on_moto().await;
    let b = from_credentials(&config, &dir);
    assert_current(&b, &www_primary()).await;
    b.apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    assert_current(&b, &www_backup()).await;
    b.apply(&change(www_backup(), www_primary()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", moto.log()));
    assert_current(&b, &www_primary()).await;
    let proof = b.check(ZONE, &www_primary()).await.unwrap();
    println!("check on moto: {proof}");
}

#[tokio::test]
async fn moto_refuses_a_wrong_secret_as_auth_naming_the_provider() {
    let (moto, dir, config) = on_moto().await;
    std::fs::write(dir.path().join("route53-secret"), "not-the-secret-key\n").unwrap();
    let wrong = from_credentials(&config, &dir);
    let err = wrong
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    println!("wrong secret on moto: {err}");
    match &err {
        DnsError::Auth(t) => {
            assert!(t.starts_with("route53"), "{t}");
            assert!(t.contains("SignatureDoesNotMatch"), "{t}");
            assert!(
                t.contains("secret_access_key_credential (route53-secret)"),
                "{t}"
            );
            assert!(t.contains("www.example.test."), "{t}");
        }
        other => panic!("expected auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("not-the-secret-key"));
    // A key moto's IAM does not know is refused too: signature checking is on.
    let mut unknown = config.clone();
    unknown.access_key_id = Some("AKIAUNKNOWN000000000".into());
    let err = from_credentials(&unknown, &dir)
        .current(ZONE, &www_primary())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("InvalidClientTokenId")),
        "{err:?}"
    );
    // Nothing was changed: the right key still reads the primary's records.
    std::fs::write(
        dir.path().join("route53-secret"),
        format!("{}\n", moto.secret_access_key),
    )
    .unwrap();
    assert_current(&from_credentials(&config, &dir), &www_primary()).await;
}
