//! A client for the running coordinator's own HTTP API (`docs/api.md`), used by
//! `quorate-coordinator override` and `failback`: it posts to `http://<api.listen>/v1/...` with
//! the configured bearer token and hands back the API's answer as it came.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::config::Config;

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
