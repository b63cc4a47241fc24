//! Writing to the history after a decision, without losing anything: a write that fails is
//! logged, counted in `quorate_history_write_failures_total{what}`, and kept in order in a
//! backlog that is written first at the next write and at every tick. So a DNS change that was
//! applied is never left `pending` in the history because one write failed.

use std::collections::VecDeque;
use std::sync::Arc;

use tracing::error;

use crate::metrics::{Metrics, WriteLabel};
use crate::store::{HistoryWrite, Store};

/// Writes kept while the history is not writable. Each is a few hundred bytes; 10,000 is
/// hours of DNS retries, and far more than a healthy disk ever queues.
const BACKLOG: usize = 10_000;

/// One service's writer for everything after the decision (events, DNS-change updates).
#[derive(Debug)]
pub struct History {
    store: Store,
    metrics: Arc<Metrics>,
    backlog: tokio::sync::Mutex<VecDeque<HistoryWrite>>,
}

impl History {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        History {
            store,
            metrics,
            backlog: tokio::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// Writes `w` after everything still in the backlog. `true` when all of it is written;
    /// otherwise it stays queued (logged and counted) for the next write or tick.
    pub async fn write(&self, w: HistoryWrite) -> bool {
        let mut q = self.backlog.lock().await;
        if q.len() >= BACKLOG
            && let Some(lost) = q.pop_front()
        {
            self.count("dropped");
            error!(
                what = lost.what(),
                ?lost,
                "history backlog full; oldest unwritten history entry dropped"
            );
        }
        q.push_back(w);
        self.flush_locked(&mut q).await
    }

    /// Writes what the backlog holds, in order; `true` when it is empty.
    pub async fn flush(&self) -> bool {
        let mut q = self.backlog.lock().await;
        self.flush_locked(&mut q).await
    }

    async fn flush_locked(&self, q: &mut VecDeque<HistoryWrite>) -> bool {
        while let Some(w) = q.front() {
            let what = w.what();
            match self.store.write(w.clone()).await {
                Ok(()) => {
                    q.pop_front();
                }
                Err(e) => {
                    self.count(what);
                    error!(error = %e, what, queued = q.len(), "cannot write history; kept and written again at the next tick");
                    return false;
                }
            }
        }
        true
    }

    /// Counts one failed write of `what`.
    pub fn count(&self, what: &str) {
        self.metrics
            .history_write_failures
            .get_or_create(&WriteLabel { what: what.into() })
            .inc();
    }
}
