//! The Virtualmin backend against the HTTPS stand-in of its remote API (`tests::virtualmin`):
//! switch and back in one `modify-dns` request per change with the TTL set on the records
//! (not the domain default), conflicts, non-zero exit status, bad password, and certificate
//! pinning / CA checks.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use coordinator::dns::virtualmin::{self, Config};
use coordinator::dns::{DnsBackend, DnsError};
use tests::fixtures::{ZONE, assert_current, change, www_backup, www_primary};
use tests::virtualmin::{Rec, VirtualminStandIn};

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn secret(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }
    fn plain(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

async fn start() -> VirtualminStandIn {
    VirtualminStandIn::start(
        "quorate",
        "s3cret-pass",
        "example.test",
        vec![
            Rec::new("example.test.", "NS", None, "ns1.example.test."),
            Rec::new("www.example.test.", "A", Some(300), "192.0.2.10"),
            Rec::new("www.example.test.", "AAAA", Some(300), "2001:db8::10"),
            Rec::new("mail.example.test.", "A", None, "192.0.2.25"),
        ],
    )
    .await
}

fn config(vm: &VirtualminStandIn, files: &Files) -> Config {
    Config {
        url: vm.url(),
        zone: "example.test".into(),
        user: "quorate".into(),
        password_file: files.secret(&format!("pw{}", rand_suffix()), "s3cret-pass\n"),
        ca_file: Some(files.plain(&format!("ca{}.pem", rand_suffix()), vm.cert_pem())),
        cert_sha256: None,
        timeout: Duration::from_secs(5),
        force: false,
    }
}

fn rand_suffix() -> String {
    tests::net::random_secret(6).replace(['/', '+', '='], "_")
}

fn modify_requests(vm: &VirtualminStandIn) -> Vec<Vec<(String, String)>> {
    vm.with_state(|s| {
        s.requests
            .iter()
            .filter(|r| r.iter().any(|(k, v)| k == "program" && v == "modify-dns"))
            .cloned()
            .collect()
    })
}

#[tokio::test]
async fn switch_and_back_sets_the_record_ttl_in_one_request() {
    let vm = start().await;
    let files = Files::new();
    let backend = virtualmin::build(&config(&vm, &files)).unwrap();
    assert_current(&backend, &www_primary()).await;

    backend
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap();
    assert_current(&backend, &www_backup()).await;
    let d = vm.domain("example.test").unwrap();
    assert_eq!(d.zone_writes, 1, "one change must be one zone write");
    assert_eq!(
        d.default_ttl, 3600,
        "the domain's default TTL must not change"
    );
    let www: Vec<&Rec> = d
        .records
        .iter()
        .filter(|r| r.name == "www.example.test.")
        .collect();
    assert_eq!(www.len(), 3);
    assert!(www.iter().all(|r| r.ttl == Some(60)), "{www:?}");
    // Other records are untouched.
    assert!(
        d.records
            .contains(&Rec::new("mail.example.test.", "A", None, "192.0.2.25"))
    );
    let reqs = modify_requests(&vm);
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].contains(&(
        "add-record-with-ttl".into(),
        "www.example.test. A 60 198.51.100.10".into()
    )));
    assert!(!reqs[0].iter().any(|(k, _)| k == "ttl"));

    backend
        .apply(&change(www_backup(), www_primary()))
        .await
        .unwrap();
    assert_current(&backend, &www_primary()).await;
    assert_eq!(vm.domain("example.test").unwrap().zone_writes, 2);
}

#[tokio::test]
async fn a_hand_made_change_is_a_conflict() {
    let vm = start().await;
    let files = Files::new();
    vm.with_state(|s| {
        let d = s.domains.get_mut("example.test").unwrap();
        d.records
            .retain(|r| !(r.name == "www.example.test." && r.rtype == "A"));
        d.records
            .push(Rec::new("www.example.test.", "A", Some(120), "203.0.113.5"));
    });
    let backend = virtualmin::build(&config(&vm, &files)).unwrap();
    let err = backend
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
    assert!(
        modify_requests(&vm).is_empty(),
        "nothing may be written on a conflict"
    );

    let mut cfg = config(&vm, &files);
    cfg.force = true;
    let forced = virtualmin::build(&cfg).unwrap();
    forced
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap();
    assert_current(&forced, &www_backup()).await;
}

#[tokio::test]
async fn non_zero_exit_status_is_rejected_with_the_output() {
    let vm = start().await;
    let files = Files::new();
    let mut cfg = config(&vm, &files);
    cfg.zone = "nosuch.test".into();
    cfg.force = true;
    let backend = virtualmin::build(&cfg).unwrap();
    let mut c = change(www_primary(), www_backup());
    c.zone = "nosuch.test.".into();
    for s in c.from.iter_mut().chain(c.to.iter_mut()) {
        s.name = "www.nosuch.test.".into();
    }
    let err = backend.apply(&c).await.unwrap_err();
    match &err {
        DnsError::Rejected(t) => {
            assert!(t.contains("status 1"), "{t}");
            assert!(t.contains("Domain nosuch.test does not exist"), "{t}");
        }
        other => panic!("expected rejected, got {other:?}"),
    }
    // get-dns (used by current) fails the same way.
    let err = backend.current("nosuch.test.", &c.from).await.unwrap_err();
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("does not exist")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_password_is_auth() {
    let vm = start().await;
    let files = Files::new();
    let mut cfg = config(&vm, &files);
    cfg.password_file = files.secret("wrong", "not-the-password");
    let backend = virtualmin::build(&cfg).unwrap();
    let err = backend
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("401") && t.contains("'quorate'")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-the-password"));
    assert_eq!(vm.domain("example.test").unwrap().zone_writes, 0);
}

#[tokio::test]
async fn certificate_pin_and_ca_are_checked() {
    let vm = start().await;
    let files = Files::new();
    let mut cfg = config(&vm, &files);
    cfg.ca_file = None;
    cfg.cert_sha256 = Some(vm.cert_sha256().to_string());
    let pinned = virtualmin::build(&cfg).unwrap();
    assert_current(&pinned, &www_primary()).await;

    cfg.cert_sha256 = Some("00".repeat(32));
    let wrong_pin = virtualmin::build(&cfg).unwrap();
    let err = wrong_pin
        .apply(&change(www_primary(), www_backup()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("certificate")),
        "{err:?}"
    );
    assert_eq!(vm.domain("example.test").unwrap().zone_writes, 0);

    // Another server's certificate as the CA: not trusted either.
    let other = start().await;
    let mut cfg = config(&vm, &files);
    cfg.ca_file = Some(files.plain("other.pem", other.cert_pem()));
    let err = virtualmin::build(&cfg)
        .unwrap()
        .current(ZONE, &www_primary())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("certificate")),
        "{err:?}"
    );
    // With neither option the system roots apply, which do not include a self-signed cert.
    let mut cfg = config(&vm, &files);
    cfg.ca_file = None;
    let err = virtualmin::build(&cfg)
        .unwrap()
        .current(ZONE, &www_primary())
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Auth(_)), "{err:?}");
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let vm = start().await;
    let files = Files::new();
    let mut cfg = config(&vm, &files);
    cfg.url = vm.url().replace("https://", "http://");
    assert!(
        virtualmin::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("url:")
    );
    let mut cfg = config(&vm, &files);
    cfg.cert_sha256 = Some("abcd".into());
    assert!(
        virtualmin::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("cert_sha256:")
    );
    let mut cfg = config(&vm, &files);
    cfg.password_file = files.plain("open", "pw");
    assert!(
        virtualmin::build(&cfg)
            .unwrap_err()
            .to_string()
            .starts_with("password_file:")
    );
    // Debug of the config and the backend never shows the password.
    let cfg = config(&vm, &files);
    let backend = virtualmin::build(&cfg).unwrap();
    assert!(!format!("{cfg:?} {backend:?}").contains("s3cret-pass"));
}

#[tokio::test]
async fn check_lists_the_records_and_changes_nothing() {
    let vm = start().await;
    let files = Files::new();
    let backend = virtualmin::build(&config(&vm, &files)).unwrap();
    let proof = backend.check(ZONE, &www_primary()).await.unwrap();
    println!("check ok: {proof}");
    assert!(
        proof.contains("virtual server example.test there"),
        "{proof}"
    );
    assert!(modify_requests(&vm).is_empty(), "a check must not modify");
    let mut stale = www_primary();
    stale[0].addrs = vec!["203.0.113.9".parse().unwrap()];
    let err = backend.check(ZONE, &stale).await.unwrap_err();
    assert!(matches!(err, DnsError::Conflict { .. }), "{err:?}");

    let mut cfg = config(&vm, &files);
    cfg.password_file = files.secret("wrong.pw", "nope\n");
    let err = virtualmin::build(&cfg)
        .unwrap()
        .check(ZONE, &www_primary())
        .await
        .unwrap_err();
    println!("wrong password: {err}");
    assert!(
        matches!(&err, DnsError::Auth(t) if t.contains("401") && t.contains("wrong.pw")),
        "{err:?}"
    );

    let mut cfg = config(&vm, &files);
    cfg.zone = "nosuch.test".into();
    let err = virtualmin::build(&cfg)
        .unwrap()
        .check("nosuch.test", &[])
        .await
        .unwrap_err();
    println!("unknown zone: {err}");
    assert!(
        matches!(&err, DnsError::Rejected(t) if t.contains("nosuch.test is not a virtual server")),
        "{err:?}"
    );
    assert!(modify_requests(&vm).is_empty());
}
