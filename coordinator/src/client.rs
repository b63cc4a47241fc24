//! A client for the running coordinator's own HTTP API (`docs/api.md`), used by
//! `quorate-coordinator override` and `failback`: it posts to `http://<api.listen>/v1/...` with
//! the configured bearer token and hands back the API's answer as it came.
//!
//! [`ReadConfig`]: what `status`, `history` and this client need from a coordinator config —
//! read without the signing key, the DNS or notification secrets, and each token only when
//! asked for (`status` the read-only one, `override` and `failback` the admin one).

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::config::Config;

/// The parts of a coordinator config the read-only commands and the API client use. The file
/// is parsed with the daemon's own raw shape (unknown keys are still errors), but nothing
/// secret is read: an operator with the read-only token and read access to the database can
/// run `status` and `history` on a host that holds neither the private key nor the admin
/// token nor any DNS credential.
#[derive(Clone, Debug)]
pub struct ReadConfig {
    pub path: std::path::PathBuf,
    /// `[coordinator] database`, resolved against the config's folder.
    pub database: std::path::PathBuf,
    /// The services' names, in config order.
    pub services: Vec<String>,
    /// `[api] listen`.
    pub api_listen: SocketAddr,
    token_file: std::path::PathBuf,
    read_token_file: Option<std::path::PathBuf>,
}

impl ReadConfig {
    pub fn load(path: &std::path::Path) -> anyhow::Result<ReadConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let raw: crate::config::RawConfig =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = shared::config::base_dir(path);
        let resolve = |p: &std::path::Path| shared::config::resolve(base, p);
        let api_listen = raw.api.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: api.listen: expected an address like \"127.0.0.1:8080\", got {:?}",
                path.display(),
                raw.api.listen
            )
        })?;
        Ok(ReadConfig {
            path: path.to_owned(),
            database: resolve(&raw.coordinator.database),
            services: raw.service.into_iter().map(|s| s.name).collect(),
            api_listen,
            token_file: resolve(&raw.api.token_file),
            read_token_file: raw.api.read_token_file.as_deref().map(resolve),
        })
    }

    /// The read-only token (`api.read_token_file`); without one configured, the admin token.
    pub fn read_token(&self) -> anyhow::Result<String> {
        match &self.read_token_file {
            Some(f) => read_token(&self.path, "api.read_token_file", f),
            None => read_token(&self.path, "api.token_file", &self.token_file).map_err(|e| {
                e.context("no api.read_token_file is set (quorate-coordinator init writes one)")
            }),
        }
    }

    /// The admin token (`api.token_file`).
    pub fn admin_token(&self) -> anyhow::Result<String> {
        read_token(&self.path, "api.token_file", &self.token_file)
    }
}

fn read_token(
    config: &std::path::Path,
    key: &str,
    file: &std::path::Path,
) -> anyhow::Result<String> {
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
        ApiClient::for_api(config.api_listen, &config.api_token)
    }

    /// A client for the API listening on `listen`, authenticating with `token`.
    pub fn for_api(listen: SocketAddr, token: &str) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(shared::tls::webpki_client_config())
            .build()?;
        Ok(ApiClient {
            base: format!("http://{listen}"),
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
        let client = ApiClient::for_api(addr, "s3cret").unwrap();

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

    #[tokio::test]
    async fn an_unreachable_api_names_the_url() {
        shared::install_crypto_provider();
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = ApiClient::for_api(closed, "t").unwrap();
        let err = client.failback("www").await.unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!(
                "cannot reach the coordinator's API at http://{closed}/v1/services/www/failback"
            )),
            "{err:#}"
        );
    }
}
