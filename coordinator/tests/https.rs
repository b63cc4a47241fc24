//! The API and dashboard over HTTPS with the real `quorate-coordinator` binary: `[api]
//! tls_cert_file`/`tls_key_file` with a self-signed end-entity certificate from rcgen (as
//! `init` writes one), `/v1/...` reached over HTTPS with that certificate as the only root,
//! the real CLI's `status --config` reading readiness over HTTPS, plain HTTP to the same port
//! refused, and a client that does not trust the certificate refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Lab;

/// The `[api]` lines that turn HTTPS on, after `token_file`.
const TLS_LINES: &str =
    "token_file = \"api.token\"\ntls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\n";

fn https_client(trust: Option<&str>) -> reqwest::Client {
    let tls = match trust {
        Some(pem) => {
            let cert = shared::tls::parse_cert_pem(pem.as_bytes(), std::path::Path::new("mem"))
                .unwrap()
                .der;
            shared::tls::client_config_with_roots(vec![cert]).unwrap()
        }
        None => shared::tls::webpki_client_config(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_speaks_https_with_the_operators_certificate_and_the_cli_follows() {
    let lab = Lab::new();
    let setup = common::binary_setup(&lab).await;
    let port = setup.api_port;
    let (cert, key) = shared::tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(lab.path().join("api.crt"), &cert).unwrap();
    shared::keys::write_private_file(&lab.path().join("api.key"), key.as_bytes()).unwrap();
    let text = setup
        .opts
        .toml()
        .replace("token_file = \"api.token\"\n", TLS_LINES);
    assert!(text.contains("tls_cert_file"), "{text}");
    let cfg = lab.config(&text);
    assert!(cfg.api_tls.is_some());
    let config = lab.path().join("coordinator.toml");

    let mut daemon = common::run_binary(&config, lab.path().join("coordinator.log"));
    let api = format!("https://127.0.0.1:{port}");
    let trusting = https_client(Some(&cert));
    daemon
        .wait_until("the API to answer over HTTPS", |_| async {
            common::api_get(&trusting, &api, &lab.token, "/v1/services/web")
                .await
                .is_some_and(|v| v["service"] == "web")
        })
        .await;
    // The host name in the certificate works as well as the address.
    let by_name = common::api_get(
        &trusting,
        &format!("https://localhost:{port}"),
        &lab.token,
        "/v1/services",
    )
    .await;
    assert!(by_name.is_some(), "https://localhost:{port} did not answer");
    // The dashboard is on the same listener.
    let res = trusting
        .get(format!("{api}/ui/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Plain HTTP to the TLS port: no HTTP answer (the handshake fails, the connection closes).
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = plain
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(err.is_err(), "plain HTTP was answered: {err:?}");
    // A client that trusts only the public roots refuses the self-signed certificate.
    let err = https_client(None)
        .get(format!("{api}/healthz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    // The real CLI: `status` asks the running coordinator for readiness over HTTPS, trusting
    // tls_cert_file (no ca_file is set).
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("readiness (from the running coordinator):"),
        "status did not reach the API over HTTPS:\n{stdout}"
    );
    assert!(!stdout.contains(&lab.token), "the token was printed");

    // With a ca_file that did not sign the certificate, the CLI refuses the server.
    let (other, _) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
    std::fs::write(lab.path().join("other.crt"), &other).unwrap();
    let wrong = lab.path().join("wrong-ca.toml");
    std::fs::write(
        &wrong,
        text.replace(TLS_LINES, &format!("{TLS_LINES}ca_file = \"other.crt\"\n")),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorate-coordinator"))
        .args(["status", "--config"])
        .arg(&wrong)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "readiness: unknown: cannot reach the coordinator's API at https://127.0.0.1:"
        ),
        "{stdout}"
    );
    drop(setup);
}
