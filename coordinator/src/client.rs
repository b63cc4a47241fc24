//! A client for the running coordinator's own HTTP API (`docs/api.md`), used by
//! `quorate-coordinator override` and `failback`: it posts to `http(s)://<api.listen>/v1/...`
//! with the configured bearer token and hands back the API's answer as it came.
//!
//! [`ReadConfig`]: what `status`, `history` and this client need from a coordinator config —
//! read without the signing key, the DNS or notification secrets, and each token only when
//! asked for (`status` the read-only one, `override` and `failback` the admin one).
//!
//! HTTPS: with `[api] tls_cert_file` the client speaks HTTPS and trusts `[api] ca_file` if set,
//! else the certificate file itself as its own trust anchor (what `init` writes: a self-signed
//! end-entity certificate, no `CA:true`, which rustls-webpki accepts as an anchor). The name
//! checked is the address dialled: `api.listen`, or 127.0.0.1 / ::1 when it listens on every
//! address, so the certificate must name that address (init's does).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::Config;

/// Where a token is: a file (mode 0600) or a systemd credential's name, with its config key.
#[derive(Clone, Debug)]
enum TokenAt {
    File(&'static str, PathBuf),
    Credential(&'static str, String),
}

/// The parts of a coordinator config the read-only commands and the API client use. The file
/// is parsed with the daemon's own raw shape (unknown keys are still errors), but nothing
/// secret is read: an operator with the read-only token and read access to the database can
/// run `status` and `history` on a host that holds neither the private key nor the admin
/// token nor any DNS credential.
#[derive(Clone, Debug)]
pub struct ReadConfig {
    pub path: PathBuf,
    /// `[coordinator] database`, resolved against the config's folder.
    pub database: PathBuf,
    /// The services' names, in config order.
    pub services: Vec<String>,
    /// `[api] listen`.
    pub api_listen: SocketAddr,
    /// The certificates the client trusts when the API speaks HTTPS (`[api] ca_file`, else
    /// `[api] tls_cert_file`); `None`: plain HTTP.
    pub api_trust: Option<PathBuf>,
    admin: Option<TokenAt>,
    read: Option<TokenAt>,
}

/// `<x>_file` or `<x>_credential`, whichever is set (the daemon refuses both; so does this).
fn token_at(
    config: &Path,
    (file_key, file): (&'static str, Option<PathBuf>),
    (credential_key, credential): (&'static str, Option<String>),
) -> anyhow::Result<Option<TokenAt>> {
    match (file, credential) {
        (None, None) => Ok(None),
        (Some(f), None) => Ok(Some(TokenAt::File(file_key, f))),
        (None, Some(c)) => Ok(Some(TokenAt::Credential(credential_key, c))),
        (Some(_), Some(_)) => Err(anyhow::anyhow!(
            "{}: {file_key}: give only one of {file_key} and {credential_key}",
            config.display()
        )),
    }
}

impl ReadConfig {
    pub fn load(path: &Path) -> anyhow::Result<ReadConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let raw: crate::config::RawConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = shared::config::base_dir(path);
        let resolve = |p: &Path| shared::config::resolve(base, p);
        let api_listen = raw.api.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: api.listen: expected an address like \"127.0.0.1:8080\", got {:?}",
                path.display(),
                raw.api.listen
            )
        })?;
        let api = raw.api;
        let admin = token_at(
            path,
            ("api.token_file", api.token_file.as_deref().map(resolve)),
            ("api.token_credential", api.token_credential),
        )?;
        let read = token_at(
            path,
            (
                "api.read_token_file",
                api.read_token_file.as_deref().map(resolve),
            ),
            ("api.read_token_credential", api.read_token_credential),
        )?;
        let api_trust = api
            .tls_cert_file
            .as_deref()
            .map(|cert| resolve(api.ca_file.as_deref().unwrap_or(cert)));
        Ok(ReadConfig {
            path: path.to_owned(),
            database: resolve(&raw.coordinator.database),
            services: raw.service.into_iter().map(|s| s.name).collect(),
            api_listen,
            api_trust,
            admin,
            read,
        })
    }

    /// The read-only token (`api.read_token_file`); without one configured, the admin token.
    pub fn read_token(&self) -> anyhow::Result<String> {
        match &self.read {
            Some(at) => self.token(at),
            None => self.admin_token().map_err(|e| {
                e.context("no api.read_token_file is set (quorate-coordinator init writes one)")
            }),
        }
    }

    /// The admin token (`api.token_file` or `api.token_credential`).
    pub fn admin_token(&self) -> anyhow::Result<String> {
        match &self.admin {
            Some(at) => self.token(at),
            None => Err(anyhow::anyhow!(
                "{}: api.token_file: missing; expected token_file or token_credential",
                self.path.display()
            )),
        }
    }

    fn token(&self, at: &TokenAt) -> anyhow::Result<String> {
        self.token_with(at, &|n| std::env::var(n).ok())
    }

    /// [`ReadConfig::token`] with the environment as an argument (`CREDENTIALS_DIRECTORY`).
    fn token_with(
        &self,
        at: &TokenAt,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<String> {
        let config = self.path.display();
        match at {
            TokenAt::File(key, file) => read_token(&self.path, key, file),
            TokenAt::Credential(key, name) => {
                // Outside the unit (an operator's shell) there is no $CREDENTIALS_DIRECTORY:
                // the message says so and what to do instead.
                let path = crate::dns::secret::credential_path(key, name, env)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "{config}: {e} (the CLI runs outside the unit: give it a config with {} = <a copy of the token, mode 0600>)",
                                key.replace("_credential", "_file")
                            )
                        })?;
                read_token(&self.path, key, &path)
            }
        }
    }

    /// A client for this config's API, authenticating with `token`.
    pub fn api_client(&self, token: &str) -> anyhow::Result<ApiClient> {
        ApiClient::for_api(self.api_listen, self.api_trust.as_deref(), token)
            .with_context(|| format!("{}: api", self.path.display()))
    }
}

fn read_token(config: &Path, key: &str, file: &Path) -> anyhow::Result<String> {
    shared::keys::read_secret_file(file)
        .map_err(|e| anyhow::anyhow!("{}: {key}: {e}", config.display()))
}

/// The API's answer to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status was 2xx.
    pub success: bool,
    /// The response body as text (the API answers JSON; empty if it could not be read).
    pub body: String,
}

/// Talks to the coordinator whose config this is (its `api.listen` and `api.token_file`).
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("ApiClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(config: &Config) -> anyhow::Result<ApiClient> {
        let trust = config.api_tls.as_ref().map(|t| t.cert_file.as_path());
        ApiClient::for_api(config.api_listen, trust, &config.api_token)
    }

    /// A client for the API listening on `listen`, authenticating with `token`: plain HTTP, or
    /// with `trust` (a PEM file: a CA, or the API's self-signed certificate) HTTPS trusting
    /// exactly that.
    pub fn for_api(
        listen: SocketAddr,
        trust: Option<&Path>,
        token: &str,
    ) -> anyhow::Result<ApiClient> {
        // A listener on every address is reached on loopback.
        let ip = match listen.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let addr = SocketAddr::new(ip, listen.port());
        let (scheme, tls) = match trust {
            None => ("http", shared::tls::webpki_client_config()),
            Some(file) => {
                let roots = shared::tls::read_cert_bundle(file)?;
                ("https", shared::tls::client_config_with_roots(roots)?)
            }
        };
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()?;
        Ok(ApiClient {
            base: format!("{scheme}://{addr}"),
            token: token.to_string(),
            http,
        })
    }

    /// `POST /v1/services/{service}/override` with `{"mode": mode}` (`auto`, `pin-primary`
    /// or `pin-backup`; the API refuses anything else).
    pub async fn set_override(&self, service: &str, mode: &str) -> anyhow::Result<Reply> {
        self.post(
            &format!("/v1/services/{service}/override"),
            serde_json::json!({ "mode": mode }),
        )
        .await
    }

    /// `POST /v1/services/{service}/failback` (services with `failback = "manual"`).
    pub async fn failback(&self, service: &str) -> anyhow::Result<Reply> {
        self.post(
            &format!("/v1/services/{service}/failback"),
            serde_json::json!({}),
        )
        .await
    }

    /// `GET` of an API path (`/v1/services`), with a short timeout: for `status`, which must
    /// not hang on a coordinator that is not running.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let req = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_secs(3));
        self.send(&url, req).await
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let req = self.http.post(&url).json(&body);
        self.send(&url, req).await
    }

    /// `POST /v1/maintenance`: announces a maintenance window (times in RFC 3339, UTC).
    pub async fn add_maintenance(&self, body: serde_json::Value) -> anyhow::Result<Reply> {
        self.post("/v1/maintenance", body).await
    }

    /// `DELETE /v1/maintenance/{id}`.
    pub async fn remove_maintenance(&self, id: i64) -> anyhow::Result<Reply> {
        let url = format!("{}/v1/maintenance/{id}", self.base);
        let req = self.http.delete(&url);
        self.send(&url, req).await
    }

    /// Sends with the token and hands back the answer as it came.
    async fn send(&self, url: &str, req: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the coordinator's API at {url}"))?;
        let success = resp.status().is_success();
        Ok(Reply {
            success,
            body: resp.text().await.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod read_config_tests {
    use super::*;

    /// `status` and `history` on a config whose private key, admin token and DNS secret are
    /// all gone: they need the database and (for status's readiness) the read-only token only.
    #[test]
    fn status_and_history_need_no_secret_but_the_read_token() {
        let dir = tempfile::tempdir().unwrap();
        let out = crate::init::init_with(
            &crate::init::InitOptions {
                dir: dir.path().to_owned(),
                name: "backup-1".into(),
                database: "history.sqlite".into(),
                api_listen: "127.0.0.1:8080".parse().unwrap(),
                api_names: Vec::new(),
                owner: None,
            },
            "/nonexistent",
        )
        .unwrap();
        // A DNS backend whose secret file does not exist, and no private key, no admin token.
        let text = std::fs::read_to_string(&out.config_file).unwrap().replace(
            "type = \"dryrun\"",
            "type = \"cloudflare\"\nzone = \"example.com\"\napi_token_file = \"missing.token\"",
        );
        std::fs::write(&out.config_file, text).unwrap();
        std::fs::remove_file(dir.path().join(crate::init::KEY_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(crate::init::TOKEN_FILE)).unwrap();
        assert!(crate::config::load(&out.config_file).is_err());
        crate::store::Store::open(&dir.path().join("history.sqlite")).unwrap();

        let cfg = ReadConfig::load(&out.config_file).unwrap();
        assert_eq!(cfg.services, ["www"]);
        assert_eq!(cfg.database, dir.path().join("history.sqlite"));
        let status = crate::cli::status(&cfg.database, &cfg.services).unwrap();
        assert!(status.starts_with("www"), "{status}");
        crate::cli::history(&cfg.database, "www", 10).unwrap();
        assert!(cfg.read_token().unwrap().len() >= 16);
        let err = cfg.admin_token().unwrap_err().to_string();
        assert!(
            err.contains("api.token_file") && err.contains("api.token"),
            "{err}"
        );
    }

    #[test]
    fn https_and_credentials_are_read_from_the_api_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let write = |api: &str| {
            std::fs::write(
                &path,
                format!("[coordinator]\nkey_file = \"k\"\ndatabase = \"h\"\n[api]\nlisten = \"0.0.0.0:8443\"\n{api}[dns]\ntype = \"dryrun\"\n"),
            )
            .unwrap();
        };
        // HTTPS: the certificate is the trust anchor, unless a ca_file is given.
        write("token_file = \"t\"\ntls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\n");
        let cfg = ReadConfig::load(&path).unwrap();
        assert_eq!(cfg.api_trust, Some(dir.path().join("api.crt")));
        write(
            "token_file = \"t\"\ntls_cert_file = \"api.crt\"\ntls_key_file = \"api.key\"\nca_file = \"ca.crt\"\n",
        );
        assert_eq!(
            ReadConfig::load(&path).unwrap().api_trust,
            Some(dir.path().join("ca.crt"))
        );
        write("token_file = \"t\"\n");
        assert_eq!(ReadConfig::load(&path).unwrap().api_trust, None);
        // A token given as a credential only: outside the unit the CLI says what to do.
        write("token_credential = \"api.token\"\n");
        let cfg = ReadConfig::load(&path).unwrap();
        let admin = cfg.admin.clone().unwrap();
        let err = cfg.token_with(&admin, &|_| None).unwrap_err().to_string();
        assert!(
            err.contains(
                "api.token_credential: credential \"api.token\": $CREDENTIALS_DIRECTORY is not set"
            ) && err.contains("give it a config with api.token_file"),
            "{err}"
        );
        // Under the unit, it is read from there.
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        shared::keys::write_private_file(&creds.join("api.token"), b"cred-token-0123456789")
            .unwrap();
        let c = creds.to_string_lossy().into_owned();
        let env = move |n: &str| (n == "CREDENTIALS_DIRECTORY").then(|| c.clone());
        assert_eq!(
            cfg.token_with(&admin, &env).unwrap(),
            "cred-token-0123456789"
        );
        write("token_file = \"t\"\ntoken_credential = \"api.token\"\n");
        let err = ReadConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(
                "api.token_file: give only one of api.token_file and api.token_credential"
            ),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[coordinator]\nkey_file = \"k\"\ndatabase = \"h\"\n[api]\nlisten = \"nowhere\"\ntoken_file = \"t\"\n[dns]\ntype = \"dryrun\"\n").unwrap();
        let err = ReadConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("c.toml: api.listen: expected an address"),
            "{err}"
        );
        std::fs::write(&path, "[coordinator]\nsurprise = 1\n").unwrap();
        assert!(ReadConfig::load(&path).is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode, Uri};

    use super::*;

    /// What the stand-in API saw: path, `Authorization` header, body.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A stand-in for the coordinator's API: records each POST, answers 409 to overrides and
    /// 200 to failbacks, each with a JSON body.
    async fn stand_in() -> (SocketAddr, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let app =
            axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let path = uri.path().to_string();
                    s.lock().unwrap().push((path.clone(), auth, body));
                    if path.ends_with("/override") {
                        (StatusCode::CONFLICT, r#"{"error":"conflict"}"#)
                    } else {
                        (StatusCode::OK, r#"{"result":"failback started"}"#)
                    }
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, seen)
    }

    #[tokio::test]
    async fn posts_json_with_the_bearer_token_and_hands_back_the_answer() {
        shared::install_crypto_provider();
        let (addr, seen) = stand_in().await;
        let client = ApiClient::for_api(addr, None, "s3cret").unwrap();

        let reply = client.set_override("www", "pin-backup").await.unwrap();
        assert_eq!(
            reply,
            Reply {
                success: false,
                body: r#"{"error":"conflict"}"#.into()
            }
        );
        let reply = client.failback("www").await.unwrap();
        assert_eq!(
            reply,
            Reply {
                success: true,
                body: r#"{"result":"failback started"}"#.into()
            }
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (
                    "/v1/services/www/override".to_string(),
                    "Bearer s3cret".to_string(),
                    r#"{"mode":"pin-backup"}"#.to_string()
                ),
                (
                    "/v1/services/www/failback".to_string(),
                    "Bearer s3cret".to_string(),
                    "{}".to_string()
                ),
            ]
        );
        assert!(!format!("{client:?}").contains("s3cret"));
    }

    /// An HTTPS server on 127.0.0.1 (the daemons' own listener) with this certificate chain
    /// and key, answering `GET /v1/x` with "ok".
    async fn https_stand_in(
        cert_pem: &str,
        key_pem: &str,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> SocketAddr {
        let tls =
            shared::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes(), Path::new("mem"))
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/v1/x", axum::routing::get(|| async { "ok" }));
        let server = shared::listener::Server::new(
            listener,
            Some(tls),
            shared::listener::Limits::default(),
            std::time::Duration::from_secs(1),
        );
        tokio::spawn(server.serve(shared::listener::TowerToHyperService::new(app), shutdown));
        addr
    }

    /// What the CLI trusts, checked by rustls-webpki over a real handshake: the operator's CA
    /// for a leaf it signed; a self-signed end-entity certificate (init's kind) as its own
    /// anchor; not a certificate it was not given; not a self-signed CA certificate presented
    /// as the server's own (that is why init's certificate is no CA).
    #[tokio::test]
    async fn https_trusts_the_given_ca_or_a_self_signed_end_entity_certificate() {
        shared::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        // A tiny CA, and a leaf for 127.0.0.1 it signed.
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "quorate test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = write("ca.crt", &ca_params.self_signed(&ca_key).unwrap().pem());
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap()
            .pem();
        // init's kind: self-signed, no CA:true.
        let (ee, ee_key) = shared::tls::self_signed(&["127.0.0.1".into()]).unwrap();
        let ee_file = write("ee.crt", &ee);
        // A self-signed CA certificate used as a server's own.
        let mut ca_ee_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        ca_ee_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_ee_key = rcgen::KeyPair::generate().unwrap();
        let ca_ee = ca_ee_params.self_signed(&ca_ee_key).unwrap().pem();
        let ca_ee_file = write("ca-ee.crt", &ca_ee);

        let shutdown = tokio_util::sync::CancellationToken::new();
        let leaf_key = leaf_key.serialize_pem();
        let ca_ee_key = ca_ee_key.serialize_pem();
        // (server certificate, its key, what the client trusts, the refusal's reason or None)
        let table: [(&str, &str, &Path, Option<&str>); 5] = [
            (&leaf, &leaf_key, &ca, None),
            (&ee, &ee_key, &ee_file, None),
            (&ee, &ee_key, &ca, Some("UnknownIssuer")),
            (&leaf, &leaf_key, &ee_file, Some("UnknownIssuer")),
            (&ca_ee, &ca_ee_key, &ca_ee_file, Some("CaUsedAsEndEntity")),
        ];
        for (i, (cert, key, trust, refused)) in table.into_iter().enumerate() {
            let addr = https_stand_in(cert, key, shutdown.clone()).await;
            let client = ApiClient::for_api(addr, Some(trust), "t").unwrap();
            match (refused, client.get("/v1/x").await) {
                (None, Ok(r)) => assert_eq!(r.body, "ok", "row {i}"),
                (Some(why), Err(e)) => {
                    let e = format!("{e:#}");
                    assert!(
                        e.contains(&format!("https://{addr}/v1/x")) && e.contains(why),
                        "row {i}: {e}"
                    );
                }
                (want, got) => panic!("row {i}: expected refusal {want:?}, got {got:?}"),
            }
        }
        shutdown.cancel();
    }

    #[tokio::test]
    async fn an_unreachable_api_names_the_url() {
        shared::install_crypto_provider();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = ApiClient::for_api(closed, None, "t").unwrap();
        let err = client.failback("www").await.unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!(
                "cannot reach the coordinator's API at http://{closed}/v1/services/www/failback"
            )),
            "{err:#}"
        );
    }
}
