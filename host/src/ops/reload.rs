//! Replacing the component while serving: on SIGHUP, or when the file changes
//! with `--watch`. The new component is read, compiled and linked off the
//! request path; only if all of that succeeds does it replace the old one.

use crate::guest::component::engine::Engines;
use crate::guest::component::{self, Source};
use crate::guest::serving::Guests;
use crate::serve::tls::Tls;
use crate::telemetry::metrics::Metrics;
use anyhow::{Context as _, Result};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

pub(crate) struct Reloader {
    engines: Arc<Engines>,
    source: Source,
    guests: Arc<Guests>,
    tls: Option<Arc<Tls>>,
    metrics: Metrics,
    // One reload at a time, so that the last one asked for wins.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub(crate) fn new(
        engines: Arc<Engines>,
        source: Source,
        guests: Arc<Guests>,
        tls: Option<Arc<Tls>>,
        metrics: Metrics,
    ) -> Self {
        Self {
            engines,
            source,
            guests,
            tls,
            metrics,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads the component anew and swaps it in; a component that fails to
    /// load is rejected with an error in the log and the old one keeps serving.
    pub(crate) async fn reload(&self, why: &str) {
        let _one_at_a_time = self.busy.lock().await;
        let (engines, source) = (self.engines.clone(), self.source.clone());
        let loaded =
            tokio::task::spawn_blocking(move || component::load_linked(&engines, &source)).await;
        let shown = self.source.path.display();
        match loaded {
            Ok(Ok((linked, digest))) => {
                let (generation, world) = self.guests.replace(linked, &digest);
                self.metrics.reloaded("ok");
                tracing::info!(
                    "{why}: reloaded {shown} (generation {generation}, {world}, sha256 {digest})"
                );
            }
            Ok(Err(e)) => {
                self.metrics.reloaded("rejected");
                tracing::error!("{why}: rejected the new {shown}, still serving the old one: {e:#}")
            }
            Err(e) => tracing::error!("{why}: reloading {shown} failed: {e}"),
        }
    }

    /// Reloads the component, and the TLS certificate if any, on every
    /// SIGHUP. Listening starts after this returns, so a SIGHUP sent once the
    /// server is up never kills the process.
    pub(crate) fn reload_on_sighup(self: &Arc<Self>) -> Result<()> {
        let mut hangups = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let this = self.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                this.reload("SIGHUP").await;
                this.reload_certificate();
            }
        });
        Ok(())
    }

    /// Reads the TLS certificate and key again; a pair that cannot be used is
    /// rejected, and the one before goes on serving.
    fn reload_certificate(&self) {
        let Some(tls) = &self.tls else { return };
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
            Err(e) => tracing::error!(
                "SIGHUP: rejected the new TLS certificate, still serving the old one: {e:#}"
            ),
        }
    }

    /// Reloads when the file changes (size, modification time or inode), once
    /// it has stayed the same for one poll, so a file still being written is
    /// not picked up half-way.
    pub(crate) fn watch(self: &Arc<Self>, every: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let stamp = |path: &PathBuf| {
                std::fs::metadata(path)
                    .ok()
                    .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()))
            };
            let mut served = stamp(&this.source.path);
            let mut seen = served;
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let now = stamp(&this.source.path);
                if now.is_some() && now == seen && now != served {
                    served = now;
                    this.reload("component file changed").await;
                }
                seen = now;
            }
        });
    }
}
