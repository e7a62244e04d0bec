//! Stopping: SIGTERM (what `docker stop` sends) or SIGINT (Ctrl-C) starts a
//! drain, a second signal ends it at once. Every listener watches one
//! [`Stop`], so they stop accepting together.

use anyhow::{Context as _, Result};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};

/// How far the host is in stopping: two tokens, cancelled in turn. Tokens,
/// rather than a watch channel: every open connection waits for the drain,
/// and a token's wait is a third of the size in its task.
#[derive(Clone)]
pub(crate) struct Stop {
    draining: CancellationToken,
    now: CancellationToken,
}

impl Stop {
    /// Listens for the signals from now on; the returned [`Stop`] follows
    /// them. `grace` is only for the log: each listener bounds its own drain.
    pub(crate) fn on_signals(grace: Duration) -> Result<Self> {
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let stop = Self {
            draining: CancellationToken::new(),
            now: CancellationToken::new(),
        };
        let phases = stop.clone();
        tokio::spawn(async move {
            for (phase, token) in [("draining", &phases.draining), ("now", &phases.now)] {
                let received = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                match phase {
                    "draining" => {
                        tracing::info!("{received} received: draining for up to {grace:?}")
                    }
                    _ => tracing::warn!("second {received}: exiting without waiting"),
                }
                token.cancel();
            }
        });
        Ok(stop)
    }

    /// Resolves when the host should stop accepting and drain.
    pub(crate) fn draining(&self) -> WaitForCancellationFuture<'_> {
        self.draining.cancelled()
    }

    /// [`Stop::draining`], holding what it waits on.
    pub(crate) fn draining_owned(self) -> WaitForCancellationFutureOwned {
        self.draining.cancelled_owned()
    }

    /// Resolves when the drain should end at once.
    pub(crate) fn now(&self) -> WaitForCancellationFuture<'_> {
        self.now.cancelled()
    }
}
