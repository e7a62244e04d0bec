//! How finished spans leave: never on a request's path.
//!
//! The SDK's batch processor runs on a thread of its own and hands each batch
//! to [`OnRuntime`], which runs the OTLP exporter (hyper for http/protobuf,
//! tonic for grpc: both need a tokio runtime) on a runtime of its own, on one
//! more thread, so that no worker's runtime ever waits on a collector. In
//! front of the batch processor, [`Bounded`] keeps the spans waiting below the
//! queue's bound and counts what it drops, in the metrics
//! (`replica_spans_dropped_total`): a collector that is down, slow or
//! refusing fills the queue, and then spans are dropped, not requests slowed.
//! An outage is logged once when it starts and once when it ends.

use crate::side_runtime::SideRuntime;
use crate::telemetry::metrics::Metrics;
use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::runtime::Handle;

/// The spans handed on and not yet exported (or failed): what the batch
/// processor's queue and the export under way hold.
#[derive(Debug, Default)]
pub(super) struct Waiting(AtomicUsize);

/// The batch processor, with the spans waiting kept under `max` and those
/// past it dropped and counted.
pub(super) struct Bounded<P> {
    pub(super) inner: P,
    pub(super) waiting: Arc<Waiting>,
    pub(super) max: usize,
    pub(super) metrics: Metrics,
}

impl<P: std::fmt::Debug> std::fmt::Debug for Bounded<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bounded({:?}, at most {} waiting)", self.inner, self.max)
    }
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let waiting = self.waiting.0.fetch_add(1, Ordering::Relaxed);
        if waiting >= self.max {
            self.waiting.0.fetch_sub(1, Ordering::Relaxed);
            self.metrics.span_dropped();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter `E`, run on a runtime of its own.
pub(super) struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: Handle,
    waiting: Arc<Waiting>,
    reach: Arc<Reach>,
    metrics: Metrics,
    /// Where spans go, for the log (without credentials: an endpoint
    /// carries none; headers do, and are never shown).
    endpoint: Arc<str>,
    /// The runtime's thread, ended when the exporter goes.
    _side: SideRuntime,
}

impl<E: std::fmt::Debug> std::fmt::Debug for OnRuntime<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnRuntime({:?}, to {})", self.inner, self.endpoint)
    }
}

impl<E: SpanExporter + 'static> OnRuntime<E> {
    /// `inner` on a runtime started on a thread of its own.
    pub(super) fn start(
        inner: impl FnOnce() -> anyhow::Result<E>,
        waiting: Arc<Waiting>,
        metrics: Metrics,
        endpoint: &str,
    ) -> anyhow::Result<Self> {
        let side = SideRuntime::start("trace-export", "the trace exporter")?;
        // The exporters set themselves up inside a runtime (tonic's channel).
        let inner = {
            let _in_runtime = side.handle().enter();
            inner()?
        };
        Ok(Self {
            inner: Arc::new(inner),
            runtime: side.handle().clone(),
            waiting,
            reach: Arc::default(),
            metrics,
            endpoint: endpoint.into(),
            _side: side,
        })
    }

    /// Runs `work` on the exporter's runtime and waits for it from this
    /// thread (the batch processor's, which is no runtime's).
    fn on_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static {
        let task = self.runtime.spawn(work);
        async move { task.await.ok() }
    }
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let count = batch.len();
        let inner = self.inner.clone();
        let exported = self.on_runtime(async move { inner.export(batch).await });
        let (waiting, reach, endpoint, metrics) = (
            self.waiting.clone(),
            self.reach.clone(),
            self.endpoint.clone(),
            self.metrics.clone(),
        );
        async move {
            let outcome = exported.await.unwrap_or_else(|| {
                Err(OTelSdkError::InternalFailure("the export was lost".into()))
            });
            waiting.0.fetch_sub(count, Ordering::Relaxed);
            if outcome.is_err() {
                // A batch the collector did not take is lost: dropped too.
                for _ in 0..count {
                    metrics.span_dropped();
                }
            }
            reach.note(&outcome, &endpoint, count);
            outcome
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let inner = self.inner.clone();
        let done = self.on_runtime(async move { inner.shutdown_with_timeout(timeout) });
        futures::executor::block_on(done).unwrap_or(Ok(()))
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once, before the exporter is shared.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// Whether the collector took the last batch (0 until the first), so that
/// an outage is logged once when it starts and once when it ends.
#[derive(Debug, Default)]
struct Reach(AtomicU8);

impl Reach {
    const UP: u8 = 1;
    const DOWN: u8 = 2;

    fn note(&self, outcome: &OTelSdkResult, endpoint: &str, count: usize) {
        match outcome {
            Ok(()) => {
                if self.0.swap(Self::UP, Ordering::Relaxed) == Self::DOWN {
                    tracing::info!("traces: the collector at {endpoint} takes spans again");
                }
            }
            Err(e) => {
                if self.0.swap(Self::DOWN, Ordering::Relaxed) != Self::DOWN {
                    tracing::warn!(
                        "traces: the collector at {endpoint} refused or did not take {count} \
                         spans ({e}); spans are dropped until it does, requests are served as \
                         ever"
                    );
                }
            }
        }
    }
}
