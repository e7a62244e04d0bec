//! Stopping: SIGTERM (what `docker stop` sends) or SIGINT (Ctrl-C) starts a
//! drain, a second signal ends it at once. Every listener watches one
//! [`Stop`], so they stop accepting together.

use anyhow::{Context as _, Result};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How far the host is in stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    Draining,
    Now,
}

/// A listener's view of the shutdown.
#[derive(Clone)]
pub(crate) struct Stop(watch::Receiver<Phase>);

impl Stop {
    /// Listens for the signals from now on; the returned [`Stop`] follows
    /// them. `grace` is only for the log: each listener bounds its own drain.
    pub(crate) fn on_signals(grace: Duration) -> Result<Self> {
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let (phase, stop) = watch::channel(Phase::Serving);
        tokio::spawn(async move {
            for next in [Phase::Draining, Phase::Now] {
                let received = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                match next {
                    Phase::Draining => {
                        tracing::info!("{received} received: draining for up to {grace:?}")
                    }
                    _ => tracing::warn!("second {received}: exiting without waiting"),
                }
                let _ = phase.send(next);
            }
        });
        Ok(Self(stop))
    }

    /// Resolves when the host should stop accepting and drain.
    pub(crate) async fn draining(&mut self) {
        self.reached(Phase::Draining).await;
    }

    /// Resolves when the drain should end at once.
    pub(crate) async fn now(&mut self) {
        self.reached(Phase::Now).await;
    }

    async fn reached(&mut self, phase: Phase) {
        // Without a sender no signal can come: wait for ever.
        if self.0.wait_for(|now| *now >= phase).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
