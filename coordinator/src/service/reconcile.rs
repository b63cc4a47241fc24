//! After a restart: a change recorded as pending either reached DNS before the crash (mark it
//! applied, do not send it again) or did not (send it again, same record).

use tracing::{error, info, warn};

use super::task::ServiceTask;
use super::{Job, now_ms};
use crate::dns::{Ttl, same_records};
use crate::store::{ChangeStatus, EventKind, HistoryWrite, NewEvent};

impl ServiceTask {
    pub(super) async fn reconcile(&mut self) {
        let name = self.svc.name.clone();
        let pending = match self
            .deps
            .store
            .call(move |s| s.pending_dns_changes(&name))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot read pending DNS changes");
                return;
            }
        };
        for row in pending {
            let change = match row.parsed_change() {
                Ok(c) => c,
                Err(e) => {
                    error!(id = row.id, error = %e, "unreadable pending change");
                    continue;
                }
            };
            let to = row.to_side;
            if to != self.state.active {
                // The state moved on (cannot normally happen: state and change are written together).
                self.history
                    .write(HistoryWrite::DnsFinish {
                        id: row.id,
                        at_ms: now_ms(),
                        status: ChangeStatus::Superseded,
                        error: Some("state changed before it applied".into()),
                        event: None,
                    })
                    .await;
                continue;
            }
            let served = self.dns.backend.current(&change.zone, &change.to).await;
            match served {
                Ok(cur) if same_records(&change.to, &cur, Ttl::Ignored) => {
                    info!(
                        id = row.id,
                        "pending change was applied before the restart; marking it applied"
                    );
                    let now = now_ms();
                    self.history
                        .write(HistoryWrite::DnsFinish {
                            id: row.id,
                            at_ms: now,
                            status: ChangeStatus::Applied,
                            error: None,
                            event: Some(NewEvent {
                                service: self.svc.name.clone(),
                                at_ms: now,
                                kind: EventKind::DnsReconciled,
                                message: format!("change {} found applied after restart", row.id),
                            }),
                        })
                        .await;
                }
                other => {
                    if let Err(e) = &other {
                        warn!(id = row.id, error = %e, "cannot read DNS at start-up; sending the pending change again");
                    } else {
                        info!(
                            id = row.id,
                            "pending change not applied before the restart; sending it again"
                        );
                    }
                    self.pending_flag.set(true);
                    let _ = self
                        .job_tx
                        .send(Job {
                            id: row.id,
                            to,
                            change,
                            reason: "resumed after restart".into(),
                        })
                        .await;
                }
            }
        }
    }
}
