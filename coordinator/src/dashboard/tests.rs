//! The dashboard's refusals through `router().oneshot()` (no service running): login and its
//! cookie, pages without a session, CSRF, bounds. The pages themselves are tested in a real
//! browser (`coordinator/tests/dashboard.rs`).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use super::*;
use crate::api::LiveCell;
use crate::metrics::Metrics;
use crate::store::Store;

const ADMIN: &str = "admin-token-0123456789";
const READ: &str = "read-token-0123456789";

fn app(dir: &tempfile::TempDir) -> Router {
    let api = Arc::new(ApiState {
        store: Store::open(&dir.path().join("h.db")).unwrap(),
        live: LiveCell::default(),
        metrics: Arc::new(Metrics::new()),
        token: ADMIN.into(),
        read_token: Some(READ.into()),
        metrics_token: None,
    });
    router(api, &DashboardConfig::default())
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

fn form(uri: &str, body: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn get(uri: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(uri);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

/// Logs in with `token`; the `Cookie` header value to send back.
async fn login_cookie(app: &Router, token: &str) -> String {
    let res = send(app, form("/ui/login", &format!("token={token}"), None)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/ui/");
    let set = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set}");
    }
    let pair = set.split(';').next().unwrap().to_string();
    let id = pair.strip_prefix("quorate_session=").unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    pair
}

async fn body(res: Response) -> String {
    use http_body_util::BodyExt as _;
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_pages_without_a_session_go_to_login() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    let res = send(&app, form("/ui/login", "token=nope", None)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(header::SET_COOKIE).is_none());
    for uri in [
        "/ui/",
        "/ui/services/web",
        "/ui/rounds/1",
        "/ui/services/web/confirm?action=auto",
    ] {
        let res = send(&app, get(uri, None)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(res.headers()[header::LOCATION], "/ui/login", "{uri}");
        let res = send(&app, get(uri, Some("quorate_session=00ff"))).await;
        assert_eq!(res.headers()[header::LOCATION], "/ui/login", "{uri}");
    }
    assert_eq!(
        send(&app, get("/ui/events", None)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Every page says how it may be framed and cached.
    let res = send(&app, get("/ui/login", None)).await;
    assert_eq!(res.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn actions_take_an_admin_session_and_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    let admin = login_cookie(&app, ADMIN).await;
    let read = login_cookie(&app, READ).await;
    // A read-only session: refused whatever it sends.
    let res = send(
        &app,
        form("/ui/services/web/action", "action=pin-backup", Some(&read)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(body(res).await.contains("read-only"));
    let res = send(
        &app,
        get("/ui/services/web/confirm?action=pin-backup", Some(&read)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // An admin session without, or with a wrong, CSRF token.
    for b in [
        "action=pin-backup".to_string(),
        format!("action=pin-backup&csrf={}", "0".repeat(64)),
    ] {
        let res = send(&app, form("/ui/services/web/action", &b, Some(&admin))).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{b}");
        assert!(body(res).await.contains("CSRF token"));
    }
    // Logging out takes the CSRF token too.
    let res = send(&app, form("/ui/logout", "csrf=wrong", Some(&admin))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The overview carries the session's token in its forms.
    let res = send(&app, get("/ui/", Some(&admin))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = body(res).await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    let res = send(
        &app,
        form("/ui/logout", &format!("csrf={csrf}"), Some(&admin)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        res.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The session is gone on the server, not only in the browser.
    let res = send(&app, get("/ui/", Some(&admin))).await;
    assert_eq!(res.headers()[header::LOCATION], "/ui/login");
}

#[tokio::test]
async fn input_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    let long = format!("/ui/services/web?outcome={}", "a".repeat(MAX_URI));
    assert_eq!(
        send(&app, get(&long, None)).await.status(),
        StatusCode::URI_TOO_LONG
    );
    let big = format!("token={}", "a".repeat(MAX_BODY + 1));
    assert_eq!(
        send(&app, form("/ui/login", &big, None)).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Unknown form fields and filters are refused, not ignored.
    assert_eq!(
        send(&app, form("/ui/login", "token=x&extra=1", None))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let admin = login_cookie(&app, ADMIN).await;
    let res = send(&app, get("/ui/services/web?bogus=1", Some(&admin))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = send(&app, get("/ui/rounds/x", Some(&admin))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn assets_are_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    for (f, kind) in [
        ("htmx-2.0.11.min.js", "text/javascript"),
        ("htmx-ext-sse-2.2.4.min.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ] {
        let res = send(&app, get(&format!("/ui/assets/{f}"), None)).await;
        assert_eq!(res.status(), StatusCode::OK, "{f}");
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let res = send(&app, get("/ui/assets/..%2Fsecret", None)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A login form from `peer` (as the shared listener marks every request).
fn login_from(peer: &str, tls: bool, token: &str) -> Request<Body> {
    let mut r = form("/ui/login", &format!("token={token}"), None);
    r.extensions_mut().insert(shared::listener::Peer {
        addr: peer.parse().unwrap(),
        tls,
    });
    r
}

#[tokio::test]
async fn the_session_cookie_is_secure_over_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    for (tls, secure) in [(true, true), (false, false)] {
        let res = send(&app, login_from("127.0.0.1:5000", tls, ADMIN)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let set = res.headers()[header::SET_COOKIE].to_str().unwrap();
        assert_eq!(set.ends_with("; Secure"), secure, "tls {tls}: {set}");
    }
}

#[tokio::test]
async fn failed_logins_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(&dir);
    for i in 0..login_limit::MAX_FAILURES {
        let res = send(&app, login_from("192.0.2.7:4000", false, "wrong")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    // The sixth is refused before the token is looked at: the right one too.
    let res = send(&app, login_from("192.0.2.7:4001", false, ADMIN)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(body(res).await.contains("Too many failed logins"));
    // Another address logs in.
    let res = send(&app, login_from("192.0.2.8:4000", false, ADMIN)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}
