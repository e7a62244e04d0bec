//! Per-core serving: one thread per worker (`--workers`, one per CPU by
//! default), each with a single-threaded async runtime, its own listening
//! socket on the replica's port and its own guest instances. A request is
//! accepted, run in a guest and answered on one thread: no lock is contended
//! and no other thread is woken on its way. What the workers share is read
//! far more often than written: the current component (`Guests`), the
//! `--max-concurrency` permits, the metrics, the shutdown signal.

use crate::guest::results::slot::Slots;
use crate::guest::serving::{Guests, LocalGuests};
use crate::serve::handler::{Handler, Ids, RequestLimits};
use crate::serve::server;
use crate::serve::settings::Settings;
use crate::serve::shutdown::Stop;
use crate::serve::tls::Tls;
use crate::telemetry::metrics::Metrics;
use anyhow::{Context as _, Result};
use hyper::service::service_fn;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// What every worker is given.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) guests: Arc<Guests>,
    pub(crate) slots: Arc<Slots>,
    pub(crate) limits: RequestLimits,
    pub(crate) metrics: Metrics,
    pub(crate) settings: Settings,
    pub(crate) tls: Option<Arc<Tls>>,
    pub(crate) stop: Stop,
}

/// Starts one worker per listener; each resolves its receiver, when it has
/// stopped, with whether it drained every connection.
pub(crate) fn start(
    listeners: Vec<std::net::TcpListener>,
    shared: &Shared,
) -> Result<Vec<oneshot::Receiver<bool>>> {
    let count = listeners.len();
    listeners
        .into_iter()
        .enumerate()
        .map(|(index, listener)| {
            let (done, drained) = oneshot::channel();
            let shared = shared.clone();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start a worker's async runtime")?;
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    let ids = Ids::new(index, count);
                    let outcome = runtime.block_on(work(listener, ids, shared));
                    let _ = done.send(outcome);
                })
                .context("cannot start a worker thread")?;
            Ok(drained)
        })
        .collect()
}

/// One worker: serves its socket until the drain is over.
async fn work(listener: std::net::TcpListener, ids: Ids, shared: Shared) -> bool {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("a worker cannot take its listening socket: {e}");
            return false;
        }
    };
    let handler = Arc::new(Handler::new(
        LocalGuests::new(shared.guests.clone()),
        shared.slots,
        ids,
        shared.limits,
        shared.metrics,
    ));
    let sweeper = tokio::spawn(sweep_idle_instances(
        handler.clone(),
        shared.guests.idle_timeout(),
    ));
    let serving = |conn| {
        let handler = handler.clone();
        service_fn(move |req| handler.handle(req, conn))
    };
    let drained = server::serve(listener, serving, shared.settings, shared.tls, shared.stop).await;
    sweeper.abort();
    handler.guests().retire();
    drained
}

/// Frees this worker's instances that sat idle past their timeout.
async fn sweep_idle_instances(handler: Arc<Handler>, idle_timeout: Duration) {
    let period = idle_timeout.clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut every = tokio::time::interval(period);
    loop {
        every.tick().await;
        handler.guests().sweep();
    }
}
