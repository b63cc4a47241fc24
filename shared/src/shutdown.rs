//! Shutdown (and reload) for both daemons: the one signal handler and the one grace period.
//!
//! | signal | what the daemon does |
//! |---|---|
//! | SIGTERM, SIGINT | logs it at info and cancels the shutdown token: the daemon stops taking work and drains for at most [`GRACE`], then exits 0 |
//! | SIGHUP, coordinator ([`on_signals_with_reload`]) | logs it at info and asks for a reload on the returned channel: the coordinator re-reads its config file (`coordinator::reload`) |
//! | SIGHUP, witness ([`on_signals`]) | logs a warning and carries on: the witness does not reload, the config on disk is NOT re-read (restart to apply it) |
//!
//! Without a handler SIGHUP's default action kills the process with no log line, and systemd's
//! `Restart=on-failure` does not restart a process killed by SIGHUP — so the handler must be
//! installed before the daemon binds or serves anything. `quorate-witness run` calls
//! [`on_signals`], `quorate-coordinator run` [`on_signals_with_reload`]; tests that run a
//! daemon in-process pass their own token instead.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a daemon drains after shutdown is asked for (in-flight vote requests, service
/// tasks, the DNS worker) before it exits anyway. Half of the systemd units'
/// `TimeoutStopSec=20s`, so systemd never has to SIGKILL a daemon that is draining.
pub const GRACE: Duration = Duration::from_secs(10);

/// Why the daemon is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM (systemd's stop).
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// What [`Signals::next`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGTERM or SIGINT.
    Shutdown(Shutdown),
    /// SIGHUP.
    Hangup,
}

/// A signal handler could not be installed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot install the {signal} handler: {source}; the daemon needs it to stop cleanly, so it \
     must run on Unix inside a tokio runtime with signals enabled"
)]
pub struct SignalError {
    signal: &'static str,
    #[source]
    source: std::io::Error,
}

/// The daemon's signal handlers. From [`Signals::install`] on, SIGTERM, SIGINT and SIGHUP no
/// longer have their default action (killing the process): they are delivered here.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    hup_open: bool,
}

impl Signals {
    /// Installs the handlers for SIGTERM, SIGINT and SIGHUP. Must be called inside a tokio
    /// runtime (it registers with the runtime's signal driver).
    pub fn install() -> Result<Signals, SignalError> {
        let handler = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|source| SignalError {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            term: handler(SignalKind::terminate(), "SIGTERM")?,
            int: handler(SignalKind::interrupt(), "SIGINT")?,
            hup: handler(SignalKind::hangup(), "SIGHUP")?,
            hup_open: true,
        })
    }

    /// The next signal. SIGTERM and SIGINT are logged at info here; SIGHUP is left to the
    /// caller.
    pub async fn next(&mut self) -> Received {
        // A signal stream only ends when the runtime's signal driver is gone; a closed SIGTERM
        // or SIGINT stream then means "stop", a closed SIGHUP stream is simply not polled again.
        loop {
            tokio::select! {
                _ = self.term.recv() => {
                    tracing::info!(signal = "SIGTERM", "SIGTERM received, shutting down");
                    return Received::Shutdown(Shutdown::Terminate);
                }
                _ = self.int.recv() => {
                    tracing::info!(signal = "SIGINT", "SIGINT received, shutting down");
                    return Received::Shutdown(Shutdown::Interrupt);
                }
                got = self.hup.recv(), if self.hup_open => match got {
                    Some(()) => return Received::Hangup,
                    None => self.hup_open = false,
                },
            }
        }
    }

    /// Waits until shutdown is asked for (SIGTERM or SIGINT), logging each one. Every SIGHUP
    /// that arrives meanwhile is logged as a warning and otherwise ignored (the witness, which
    /// does not reload).
    pub async fn shutdown_requested(&mut self) -> Shutdown {
        loop {
            match self.next().await {
                Received::Shutdown(why) => return why,
                Received::Hangup => tracing::warn!(
                    signal = "SIGHUP",
                    "SIGHUP received and ignored: reload is not implemented yet, the config \
                     on disk is NOT re-read; restart the service to apply a changed config"
                ),
            }
        }
    }
}

/// Installs the signal handlers now and returns the shutdown token, cancelled on the first
/// SIGTERM or SIGINT (SIGHUP is logged and ignored, see the module doc). Call it inside the
/// runtime before binding anything; give the token to `witness::run` / `coordinator::run`.
pub fn on_signals() -> Result<CancellationToken, SignalError> {
    let mut signals = Signals::install()?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        signals.shutdown_requested().await;
        token.cancel();
    });
    Ok(shutdown)
}

/// Installs the signal handlers now and returns the shutdown token (cancelled on the first
/// SIGTERM or SIGINT) and the reload requests: one `()` per SIGHUP, logged at info. Requests
/// that arrive while one is still waiting to be taken are merged into it (a reload reads the
/// newest file anyway). Call it inside the runtime before binding anything.
pub fn on_signals_with_reload() -> Result<(CancellationToken, mpsc::Receiver<()>), SignalError> {
    let mut signals = Signals::install()?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    // One slot: a reload in progress plus one waiting covers every SIGHUP sent meanwhile.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            match signals.next().await {
                Received::Shutdown(_) => break,
                Received::Hangup => {
                    tracing::info!(signal = "SIGHUP", "SIGHUP received, reloading the config");
                    let _ = tx.try_send(());
                }
            }
        }
        token.cancel();
    });
    Ok((shutdown, rx))
}
