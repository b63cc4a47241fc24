//! Maintenance-page mode (`[maintenance_page]`): a backup that is only a "back soon" page
//! needs no web server of its own. On its own listeners (HTTP, and HTTPS with the operator's
//! certificate), for the names of the listed services:
//!
//! | request | answer |
//! |---|---|
//! | Host is a name of a listed service that is **backup-active** | `503`, `Retry-After`, `Cache-Control: no-store`, the page with the incident's start |
//! | Host is a name of a listed service that is not backup-active | `404`, a short text saying the site is not in maintenance here (a client with a stale DNS answer; the page must not pretend to be the site) |
//! | any other Host (an address, another name, none) | `421 Misdirected Request` |
//!
//! Every method and path gets the same answer. The decision is [`answer`] (pure); the
//! incident's start is read from the history's `transition` events (as the status page
//! pairs them) and kept for [`SINCE_TTL`], since the page may take all of a site's traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::api::LiveCell;
use crate::config::{MaintenancePageConfig, PageService};
use crate::failover::Side;
use crate::store::{ListFilter, Store};
use crate::supervise::Supervisor;

/// How long an incident's start, once read, is used without reading the history again.
pub const SINCE_TTL: Duration = Duration::from_secs(10);
/// Events read to find the start of the ongoing incident (newest first).
const EVENTS_READ: u32 = 200;

/// What a request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 503 with the page: the service of this name is backup-active.
    Page { service: String },
    /// 404: a name of this service, which is not backup-active.
    NotActive { service: String },
    /// 421: no listed service has this name.
    UnknownHost,
}

/// The host of a `Host` header or URI authority: lowercase, without port or trailing dot.
pub fn host_name(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        // An IPv6 literal: never one of the services' names, kept as it is.
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map_or(h, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                h
            }
        })
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// What a request for `host` gets now; `on_backup(service)` says whether that service is
/// backup-active (a service no longer running is not).
pub fn answer(
    host: Option<&str>,
    services: &[PageService],
    on_backup: impl Fn(&str) -> bool,
) -> Answer {
    let Some(host) = host.map(host_name) else {
        return Answer::UnknownHost;
    };
    match services.iter().find(|s| s.hosts.contains(&host)) {
        Some(s) if on_backup(&s.name) => Answer::Page {
            service: s.name.clone(),
        },
        Some(s) => Answer::NotActive {
            service: s.name.clone(),
        },
        None => Answer::UnknownHost,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The page for `service`: the placeholders `{{service}}`, `{{since}}` (RFC 3339, UTC, or
/// "an unknown time") and `{{retry_after}}` (seconds) replaced, HTML-escaped.
pub fn render(page: &str, service: &str, since_ms: Option<u64>, retry_after: Duration) -> String {
    let since = since_ms.map_or_else(
        || "an unknown time".to_string(),
        |ms| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                .to_string()
        },
    );
    page.replace("{{service}}", &escape(service))
        .replace("{{since}}", &escape(&since))
        .replace("{{retry_after}}", &retry_after.as_secs().to_string())
}

struct St {
    store: Store,
    live: LiveCell,
    config: MaintenancePageConfig,
    /// service → (start of its ongoing incident, when it was read).
    since: Mutex<HashMap<String, (Option<u64>, Instant)>>,
}

impl St {
    /// The start of `service`'s ongoing incident, from the cache or the history.
    async fn since(&self, service: &str) -> Option<u64> {
        let cached = self
            .since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .filter(|(_, at)| at.elapsed() < SINCE_TTL)
            .map(|(s, _)| *s);
        if let Some(s) = cached {
            return s;
        }
        let now = shared::unix_ms(std::time::SystemTime::now());
        let window_start = now.saturating_sub(super::status::WINDOW.as_millis() as u64);
        let f = ListFilter {
            service: Some(service.to_string()),
            since_ms: Some(window_start),
            until_ms: None,
            before_id: None,
            limit: EVENTS_READ,
        };
        let since = match self.store.call(move |s| s.list_events(&f)).await {
            Ok(mut events) => {
                events.reverse();
                super::status::incidents(&events, window_start)
                    .last()
                    .filter(|i| i.end_ms.is_none())
                    .map(|i| i.start_ms)
            }
            Err(e) => {
                tracing::warn!(error = %e, "maintenance page: the history is unreadable");
                None
            }
        };
        self.since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.to_string(), (since, Instant::now()));
        since
    }
}

/// The router both maintenance-page listeners serve: every method and path, one answer.
pub fn router(store: Store, live: LiveCell, config: MaintenancePageConfig) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(St {
        store,
        live,
        config,
        since: Mutex::new(HashMap::new()),
    }))
}

/// The listeners, bound (before the services start: a port in use stops the start).
pub struct Bound {
    http: Option<std::net::TcpListener>,
    https: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
    config: MaintenancePageConfig,
}

impl Bound {
    /// Binds `[maintenance_page]`'s listeners; `None` without the table.
    pub fn bind(config: &Option<MaintenancePageConfig>) -> anyhow::Result<Option<Bound>> {
        use anyhow::Context as _;
        let Some(c) = config else {
            return Ok(None);
        };
        let bind = |key: &str, addr: SocketAddr| -> anyhow::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind(addr)
                .with_context(|| format!("maintenance_page.{key}: binding {addr}"))?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        Ok(Some(Bound {
            http: c.listen.map(|a| bind("listen", a)).transpose()?,
            https: match &c.tls {
                Some((a, tls)) => Some((bind("tls_listen", *a)?, tls.clone())),
                None => None,
            },
            config: c.clone(),
        }))
    }

    /// Serves the page on each listener, under `sup`, until `shutdown`; returns the HTTP and
    /// HTTPS addresses.
    pub fn serve(
        self,
        store: Store,
        live: LiveCell,
        sup: &Supervisor,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let app = router(store, live, self.config);
        let mut addrs = (None, None);
        let all = [
            self.http.map(|l| (l, None)),
            self.https.map(|(l, t)| (l, Some(t))),
        ];
        for (l, tls) in all.into_iter().flatten() {
            let addr = l.local_addr()?;
            let name = if tls.is_some() {
                addrs.1 = Some(addr);
                "maintenance-page-https"
            } else {
                addrs.0 = Some(addr);
                "maintenance-page-http"
            };
            // The API's connection bounds (shared::listener's defaults): the page may take a
            // whole site's traffic.
            let server = shared::listener::Server::new(
                tokio::net::TcpListener::from_std(l)?,
                tls,
                shared::listener::Limits::default(),
                shared::shutdown::GRACE,
            );
            let (app, sd) = (app.clone(), shutdown.clone());
            sup.spawn(
                name,
                async move {
                    let serve = server.serve(shared::listener::TowerToHyperService::new(app), sd);
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "maintenance page server failed");
                    }
                },
                |_| {},
            );
            tracing::info!(maintenance_page = %addr, "maintenance page listening");
        }
        Ok(addrs)
    }
}

async fn handle(State(st): State<Arc<St>>, req: Request) -> Response {
    let host = req.uri().host().map(str::to_string).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let live = st.live.get();
    let a = answer(host.as_deref(), &st.config.services, |name| {
        live.services
            .get(name)
            .is_some_and(|h| h.current().active == Side::Backup)
    });
    let mut res = match a {
        Answer::Page { service } => {
            let since = st.since(&service).await;
            let body = render(&st.config.page, &service, since, st.config.retry_after);
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, st.config.retry_after.as_secs().into());
            r
        }
        Answer::NotActive { .. } => (
            StatusCode::NOT_FOUND,
            "This site is not in maintenance: it is served from its usual address. Your DNS answer is out of date; try again in a minute.\n",
        )
            .into_response(),
        Answer::UnknownHost => (
            StatusCode::MISDIRECTED_REQUEST,
            "This server answers only for the names of the sites it stands in for.\n",
        )
            .into_response(),
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<PageService> {
        vec![
            PageService {
                name: "web".into(),
                hosts: vec!["www.example.test".into(), "example.test".into()],
            },
            PageService {
                name: "shop".into(),
                hosts: vec!["shop.example.test".into()],
            },
        ]
    }

    #[test]
    fn the_answer_for_each_host_and_side() {
        let on_backup = |s: &str| s == "web";
        let page = |s: &str| Answer::Page { service: s.into() };
        let cases = [
            (Some("www.example.test"), page("web")),
            (Some("WWW.Example.Test:8080"), page("web")),
            (Some("example.test."), page("web")),
            (Some("example.test.:443"), page("web")),
            (
                Some("shop.example.test"),
                Answer::NotActive {
                    service: "shop".into(),
                },
            ),
            (Some("other.example.test"), Answer::UnknownHost),
            (Some("127.0.0.1:8080"), Answer::UnknownHost),
            (Some("[::1]:80"), Answer::UnknownHost),
            (Some("www.example.test.evil"), Answer::UnknownHost),
            (Some(""), Answer::UnknownHost),
            (None, Answer::UnknownHost),
        ];
        for (host, want) in cases {
            assert_eq!(answer(host, &services(), on_backup), want, "{host:?}");
        }
        // Back on the primary: the same name no longer gets the page.
        assert_eq!(
            answer(Some("www.example.test"), &services(), |_| false),
            Answer::NotActive {
                service: "web".into()
            }
        );
    }

    #[test]
    fn the_page_has_the_incident_start_escaped() {
        let page = "<p>{{service}} down since {{since}}, retry in {{retry_after}} s</p>";
        assert_eq!(
            render(
                page,
                "a<b",
                Some(1_800_000_000_000),
                Duration::from_secs(300)
            ),
            "<p>a&lt;b down since 2027-01-15T08:00:00Z, retry in 300 s</p>"
        );
        assert_eq!(
            render(page, "web", None, Duration::from_secs(5)),
            "<p>web down since an unknown time, retry in 5 s</p>"
        );
        assert!(
            render(
                crate::config::MAINTENANCE_PAGE,
                "web",
                Some(0),
                Duration::from_secs(1)
            )
            .contains("<time id=\"since\">1970-01-01T00:00:00Z</time>")
        );
    }
}
