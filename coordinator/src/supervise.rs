//! Supervised tasks: every long-lived task of the coordinator (each service's loop and DNS
//! worker, the notifier, retention, the API server) is spawned through [`Supervisor::spawn`],
//! so none is untracked and none dies in silence. A task that returns before shutdown or
//! panics is logged at error, counted in `quorate_task_exits_total{task, how}`, and reported
//! to its `on_exit` (a service marks itself failed in its status, so the API stops showing
//! its last healthy reading as if it were current).
//!
//! A [`Supervisor::child`] spawns on the same tracker under a child token, and can be stopped
//! on its own ([`Supervisor::stop`]): a reload stops one service's tasks that way while
//! everything else runs on.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{Metrics, TaskLabel};

/// Spawns tracked tasks and watches how they end; cheap to clone.
#[derive(Clone, Debug)]
pub struct Supervisor {
    tasks: TaskTracker,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    /// A child's own tracker (its tasks are on `tasks` as well), so that [`Supervisor::stop`]
    /// waits for its tasks only.
    group: Option<TaskTracker>,
}

/// How a supervised task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It returned after shutdown was requested: the normal end.
    Stopped,
    /// It returned while the coordinator was still running: its job is no longer done.
    Returned,
    /// It panicked (with the panic's message).
    Panicked(String),
}

impl Exit {
    fn label(&self) -> &'static str {
        match self {
            Exit::Stopped => "stopped",
            Exit::Returned => "returned",
            Exit::Panicked(_) => "panicked",
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Stopped => f.write_str("stopped at shutdown"),
            Exit::Returned => f.write_str("stopped unexpectedly (returned before shutdown)"),
            Exit::Panicked(m) => write!(f, "panicked: {m}"),
        }
    }
}

impl Supervisor {
    pub fn new(tasks: TaskTracker, metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        Supervisor {
            tasks,
            metrics,
            shutdown,
            group: None,
        }
    }

    /// A supervisor for a group of tasks (one service's): they are tracked by this one's
    /// tracker too (shutdown waits for them), stop when this one's token is cancelled, and can
    /// be stopped alone with [`Supervisor::stop`].
    pub fn child(&self) -> Supervisor {
        Supervisor {
            tasks: self.tasks.clone(),
            metrics: self.metrics.clone(),
            shutdown: self.shutdown.child_token(),
            group: Some(TaskTracker::new()),
        }
    }

    /// Cancels this supervisor's token and waits, at most `grace`, until its tasks have
    /// ended (for a child: its own tasks; for the root: every task). Returns whether they all
    /// did.
    pub async fn stop(&self, grace: std::time::Duration) -> bool {
        self.shutdown.cancel();
        let group = self.group.as_ref().unwrap_or(&self.tasks);
        group.close();
        tokio::time::timeout(grace, group.wait()).await.is_ok()
    }

    /// The tracker every task is spawned on (to wait for them at shutdown).
    pub fn tracker(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The token that tells every task to stop.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Spawns `fut` as the task `name`. When it ends other than by shutdown, the exit is
    /// logged at error, counted, and passed to `on_exit` (which runs on the task, must not
    /// block, and is not called for [`Exit::Stopped`]).
    pub fn spawn<F>(
        &self,
        name: impl Into<String>,
        fut: F,
        on_exit: impl FnOnce(&Exit) + Send + 'static,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let metrics = self.metrics.clone();
        let shutdown = self.shutdown.clone();
        let task = async move {
            let exit = match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(()) if shutdown.is_cancelled() => Exit::Stopped,
                Ok(()) => Exit::Returned,
                Err(panic) => Exit::Panicked(panic_message(panic.as_ref())),
            };
            metrics
                .task_exits
                .get_or_create(&TaskLabel {
                    task: name.clone(),
                    how: exit.label().into(),
                })
                .inc();
            if exit == Exit::Stopped {
                tracing::debug!(task = %name, "task stopped");
                return;
            }
            tracing::error!(task = %name, exit = %exit, "a long-lived task ended; what it did is no longer done until a restart");
            on_exit(&exit);
        };
        match &self.group {
            Some(group) => self.tasks.spawn(group.track_future(task)),
            None => self.tasks.spawn(task),
        };
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sup() -> (Supervisor, Arc<Metrics>) {
        let m = Arc::new(Metrics::new());
        let s = Supervisor::new(TaskTracker::new(), m.clone(), CancellationToken::new());
        (s, m)
    }

    fn count(m: &Metrics, task: &str, how: &str) -> u64 {
        m.task_exits
            .get_or_create(&TaskLabel {
                task: task.into(),
                how: how.into(),
            })
            .get()
    }

    #[tokio::test]
    async fn a_panic_is_counted_and_reported() {
        let (s, m) = sup();
        let (tx, rx) = tokio::sync::oneshot::channel();
        s.spawn(
            "boom",
            async {
                let v: Vec<u8> = Vec::new();
                // An out-of-bounds index: a bug that panics in a task.
                let _ = v[usize::from(v.is_empty())];
            },
            move |e| {
                let _ = tx.send(e.clone());
            },
        );
        let exit = rx.await.unwrap();
        assert!(
            matches!(&exit, Exit::Panicked(m) if m.contains("index out of bounds")),
            "{exit:?}"
        );
        s.tracker().close();
        s.tracker().wait().await;
        assert_eq!(count(&m, "boom", "panicked"), 1);
        assert!(
            m.encode()
                .contains(r#"quorate_task_exits_total{task="boom",how="panicked"} 1"#),
            "{}",
            m.encode()
        );
    }

    #[tokio::test]
    async fn returning_early_is_an_exit_and_stopping_at_shutdown_is_not() {
        let (s, m) = sup();
        let (tx, rx) = tokio::sync::oneshot::channel();
        s.spawn("early", async {}, move |e| {
            let _ = tx.send(e.clone());
        });
        assert_eq!(rx.await.unwrap(), Exit::Returned);
        let called = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = called.clone();
        let sd = s.shutdown().clone();
        s.spawn("normal", async move { sd.cancelled().await }, move |_| {
            c.store(true, std::sync::atomic::Ordering::SeqCst)
        });
        s.shutdown().cancel();
        s.tracker().close();
        s.tracker().wait().await;
        assert_eq!(count(&m, "early", "returned"), 1);
        assert_eq!(count(&m, "normal", "stopped"), 1);
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_child_stops_alone_and_its_tasks_are_still_waited_for_at_shutdown() {
        let (s, m) = sup();
        let child = s.child();
        let (c_sd, s_sd) = (child.shutdown().clone(), s.shutdown().clone());
        child.spawn("child", async move { c_sd.cancelled().await }, |_| {});
        s.spawn("root", async move { s_sd.cancelled().await }, |_| {});
        assert!(child.stop(std::time::Duration::from_secs(5)).await);
        assert_eq!(count(&m, "child", "stopped"), 1);
        assert!(!s.shutdown().is_cancelled(), "the root runs on");
        assert_eq!(s.tracker().len(), 1, "only the root task is left");

        // A child of a stopped root stops with it.
        let late = s.child();
        let l_sd = late.shutdown().clone();
        late.spawn("late", async move { l_sd.cancelled().await }, |_| {});
        assert!(s.stop(std::time::Duration::from_secs(5)).await);
        assert_eq!(count(&m, "late", "stopped"), 1);
        assert_eq!(count(&m, "root", "stopped"), 1);
    }
}
