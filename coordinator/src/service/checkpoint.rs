//! The checkpointer: signs the chain head (`ledger::checkpoint`) every `[history]
//! checkpoint_every` and after every decision that wrote a DNS change, and once more at
//! shutdown. A failure is logged and counted (`quorate_history_write_failures_total`,
//! `what="checkpoint"`) and tried again at the next occasion; nothing waits for it.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::store::Store;

use super::now_ms;

/// Signs checkpoints until `shutdown`; see the module doc.
pub async fn checkpoint_loop(
    store: Store,
    metrics: Arc<Metrics>,
    key: Arc<SigningKey>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reason = tokio::select! {
            _ = shutdown.cancelled() => "shutdown",
            _ = tick.tick() => "periodic",
            _ = store.dns_changed() => "dns-change",
        };
        match store.checkpoint(key.clone(), now_ms(), reason).await {
            Ok(Some(c)) => debug!(id = c.id, reason, "checkpoint signed"),
            Ok(None) => {}
            Err(e) => {
                metrics
                    .history_write_failures
                    .get_or_create(&crate::metrics::WriteLabel {
                        what: "checkpoint".into(),
                    })
                    .inc();
                warn!(error = %e, reason, "cannot write a checkpoint; tried again later");
            }
        }
        if reason == "shutdown" {
            return;
        }
    }
}
