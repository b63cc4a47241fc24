//! The public status page (`[status_page]`): no login, its own listener, only the services the
//! operator lists. For each: whether it runs on its primary or on the backup now, and its
//! incidents over 90 days — when it failed over, when it came back, how long it lasted —
//! read from the history's `transition` events, and the maintenance the operator announced
//! (`quorate-coordinator maintenance add`) until it ends. Nothing else of the history is shown (no
//! votes, no addresses, no witnesses).

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::api::LiveCell;
use crate::config::StatusPageConfig;
use crate::failover::Side;
use crate::store::{Event, EventKind, ListFilter, Store};

use super::views::time;

/// How far back incidents are shown.
pub const WINDOW: Duration = Duration::from_secs(90 * 86_400);
/// Events read per service for the window: a service that switched more often than this in
/// 90 days shows its newest incidents only (and says so).
const MAX_EVENTS: u32 = 500;

/// One failover and, once over, its failback.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

/// Pairs the switches to the backup with the next switch back (events oldest first). A
/// failback whose failover is older than the window starts the list as an incident begun
/// before it (`start_ms` = `since_ms`).
pub fn incidents(events: &[Event], since_ms: u64) -> Vec<Incident> {
    let mut out: Vec<Incident> = Vec::new();
    for e in events.iter().filter(|e| e.kind == EventKind::Transition) {
        if e.message.starts_with("primary-active -> backup-active") {
            if out.last().is_none_or(|i| i.end_ms.is_some()) {
                out.push(Incident {
                    start_ms: e.at_ms,
                    end_ms: None,
                });
            }
        } else if e.message.starts_with("backup-active -> primary-active") {
            match out.last_mut() {
                Some(i) if i.end_ms.is_none() => i.end_ms = Some(e.at_ms),
                _ => out.push(Incident {
                    start_ms: since_ms,
                    end_ms: Some(e.at_ms),
                }),
            }
        }
    }
    out
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[derive(Debug, Clone)]
pub struct IncidentRow {
    pub start: String,
    pub end: String,
    pub lasted: String,
    pub ongoing: bool,
}

#[derive(Debug, Clone)]
pub struct PublicService {
    pub name: String,
    pub on_backup: bool,
    pub incidents: Vec<IncidentRow>,
    pub truncated: bool,
    /// Announced maintenance not yet ended, soonest first.
    pub maintenance: Vec<MaintenanceRow>,
}

/// One announced maintenance window (`crate::maintenance`).
#[derive(Debug, Clone)]
pub struct MaintenanceRow {
    pub id: i64,
    pub title: String,
    pub details: String,
    pub start: String,
    pub end: String,
    /// Under way now (else upcoming).
    pub now: bool,
}

impl MaintenanceRow {
    pub fn new(m: &crate::store::Maintenance, now_ms: u64) -> MaintenanceRow {
        MaintenanceRow {
            id: m.id,
            title: m.title.clone(),
            details: m.details.clone(),
            start: time(m.start_ms),
            end: time(m.end_ms),
            now: crate::maintenance::phase(m.start_ms, m.end_ms, now_ms)
                == crate::maintenance::Phase::Now,
        }
    }
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage {
    pub title: String,
    pub services: Vec<PublicService>,
    /// The newest signed checkpoint of the history's hash chain, verified with the running
    /// coordinator's keys: what an auditor compares their copy against (docs/history.md §4).
    pub checkpoint: Option<CheckpointLine>,
}

/// The checkpoint as the page shows it.
pub struct CheckpointLine {
    pub seq: i64,
    pub head: String,
    pub at: String,
    pub key_id: String,
}

impl CheckpointLine {
    /// The newest checkpoint if it verifies with `keys`; `None` before the first one (or if
    /// it does not verify, which `verify-history` reports; the page does not guess).
    fn newest(store: &Store, keys: &crate::ledger::KeySet) -> Option<CheckpointLine> {
        let stored = store.latest_checkpoint().ok()??;
        let cp = stored.open(keys).ok()?;
        Some(CheckpointLine {
            seq: cp.seq,
            head: cp.head,
            at: time(cp.at_ms),
            key_id: cp.coordinator.to_string(),
        })
    }
}

struct St {
    store: Store,
    live: LiveCell,
    config: StatusPageConfig,
}

pub fn router(store: Store, live: LiveCell, config: StatusPageConfig) -> Router {
    Router::new()
        .route("/", get(page))
        .route(
            "/assets/dashboard.css",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                    super::CSS,
                )
            }),
        )
        .with_state(Arc::new(St {
            store,
            live,
            config,
        }))
}

async fn page(State(st): State<Arc<St>>) -> Response {
    let now = shared::unix_ms(std::time::SystemTime::now());
    let since = now.saturating_sub(WINDOW.as_millis() as u64);
    let live = st.live.get();
    let mut services = Vec::new();
    for name in &st.config.services {
        let f = ListFilter {
            service: Some(name.clone()),
            since_ms: Some(since),
            until_ms: None,
            before_id: None,
            limit: MAX_EVENTS,
        };
        let mut events = match st.store.call(move |s| s.list_events(&f)).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "status page: the history is unreadable");
                return (StatusCode::SERVICE_UNAVAILABLE, "status unavailable").into_response();
            }
        };
        let service = name.clone();
        let maintenance = match st
            .store
            .call(move |s| s.list_maintenance(Some(&service), now, crate::maintenance::MAX_OPEN))
            .await
        {
            Ok(m) => m.iter().map(|m| MaintenanceRow::new(m, now)).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "status page: the history is unreadable");
                return (StatusCode::SERVICE_UNAVAILABLE, "status unavailable").into_response();
            }
        };
        let truncated = events.len() as u32 == MAX_EVENTS;
        events.reverse();
        let on_backup = live
            .services
            .get(name)
            .is_some_and(|h| h.current().active == Side::Backup);
        let mut rows: Vec<IncidentRow> = incidents(&events, since)
            .into_iter()
            .map(|i| IncidentRow {
                start: time(i.start_ms),
                end: i.end_ms.map(time).unwrap_or_else(|| "ongoing".into()),
                lasted: human(Duration::from_millis(
                    i.end_ms.unwrap_or(now).saturating_sub(i.start_ms),
                )),
                ongoing: i.end_ms.is_none(),
            })
            .collect();
        rows.reverse();
        services.push(PublicService {
            name: name.clone(),
            on_backup,
            incidents: rows,
            truncated,
            maintenance,
        });
    }
    let keys = live.keys.clone();
    let checkpoint = st
        .store
        .call(move |s| Ok(CheckpointLine::newest(s, &keys)))
        .await
        .ok()
        .flatten();
    let mut res = match (StatusPage {
        title: st.config.title.clone(),
        services,
        checkpoint,
    })
    .render()
    {
        Ok(h) => Html(h).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status page failed to render");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response();
        }
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, message: &str) -> Event {
        Event {
            id: at_ms as i64,
            service: "web".into(),
            at_ms,
            kind: EventKind::Transition,
            message: message.into(),
        }
    }

    #[test]
    fn switches_pair_into_incidents() {
        let down = "primary-active -> backup-active: primary down";
        let up = "backup-active -> primary-active: primary back";
        let alert = Event {
            kind: EventKind::Alert,
            ..ev(5, down)
        };
        assert_eq!(
            incidents(
                &[ev(10, up), ev(20, down), alert, ev(30, up), ev(40, down)],
                1
            ),
            [
                Incident {
                    start_ms: 1,
                    end_ms: Some(10)
                },
                Incident {
                    start_ms: 20,
                    end_ms: Some(30)
                },
                Incident {
                    start_ms: 40,
                    end_ms: None
                },
            ]
        );
        assert_eq!(incidents(&[], 1), []);
        assert_eq!(human(Duration::from_secs(3_725)), "1 h 2 min");
    }
}
