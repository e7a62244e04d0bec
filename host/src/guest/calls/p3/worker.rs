//! How this host makes, runs and retires the instances of a 0.3 component:
//! upstream's `ProxyHandler` asks, for each instance it runs, for a store
//! and instance (`Instances`), whether to take another request and what to
//! do when one starts or the instance ends (`Worker`), and when the instance
//! has expired (`Expiry`).

use crate::guest::calls::reuse::Reuse;
use crate::guest::sandbox::cli::output::Output;
use crate::guest::sandbox::health::Health;
use crate::guest::sandbox::{self, Host, Sandbox};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::{self, Child};
use opentelemetry::Context as TraceContext;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

/// Set when a component is replaced (or the host exits): its instances take
/// no more requests, and idle ones go at once.
#[derive(Clone, Default)]
pub(crate) struct Retired {
    /// Read on every turn of every worker: an atomic, where the token's own
    /// check takes a lock.
    flag: Arc<AtomicBool>,
    /// Wakes the idle workers.
    token: CancellationToken,
}

impl Retired {
    pub(crate) fn retire(&self) {
        self.flag.store(true, Ordering::Release);
        self.token.cancel();
    }

    fn is_retired(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// How this host makes and runs the instances of one 0.3 component.
/// Its timeout, metrics and retirement are also what the requests' side
/// (`ServiceGuest`) reads, through the handler's state.
pub(crate) struct Instances {
    pre: ServicePre<Host>,
    sandbox: Arc<Sandbox>,
    reuse: Reuse,
    pub(super) timeout: Duration,
    pub(super) metrics: Metrics,
    pub(super) retired: Retired,
}

impl Instances {
    pub(crate) fn new(
        pre: ServicePre<Host>,
        sandbox: Arc<Sandbox>,
        reuse: Reuse,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            pre,
            sandbox,
            reuse,
            timeout,
            metrics,
            retired: Retired::default(),
        }
    }
}

impl HandlerState for Instances {
    type StoreData = Host;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<Host, Expiry, Worker>> {
        let started = Instant::now();
        let began = SystemTime::now();
        let mut store = sandbox::new_store(self.pre.engine(), &self.sandbox);
        let health = Arc::<Health>::default();
        store.data_mut().report_to(health.clone());
        let service = self.pre.instantiate_async(&mut store).await?;
        self.metrics.instantiated(started.elapsed());
        // Its span is made once the request it was made for is known.
        let instantiated = traces::is_on().then(|| (began, SystemTime::now()));
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: http_view,
            expiration: Expiry {
                idle_timeout: self.reuse.idle_timeout,
                timeout: self.timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                retired: Box::pin(self.retired.token.clone().cancelled_owned()),
            },
            state: Worker {
                reuse: self.reuse,
                timeout: self.timeout,
                metrics: self.metrics.clone(),
                retired: self.retired.clone(),
                health,
                instantiated: Mutex::new(instantiated),
                at_once: AtomicUsize::new(0),
            },
        })
    }
}

fn http_view(host: &mut Host) -> WasiHttpCtxView<'_> {
    host.http()
}

/// One instance's worker, as this host steers it.
pub(crate) struct Worker {
    reuse: Reuse,
    timeout: Duration,
    metrics: Metrics,
    retired: Retired,
    health: Arc<Health>,
    /// When the instance was made, while tracing is on and until the first
    /// request it serves records it in its trace.
    instantiated: Mutex<Option<(SystemTime, SystemTime)>>,
    /// How many requests it was serving when it was last asked to take one.
    at_once: AtomicUsize,
}

/// What a request hands the instance that takes it: where the instance's
/// health and output go (for the response's body), and the trace span of
/// the guest's call, if it has one.
pub(crate) struct Taken {
    pub(crate) sender: oneshot::Sender<(Arc<Health>, Output)>,
    pub(crate) trace: Option<TraceContext>,
}

impl WorkerState for Worker {
    type StoreData = Host;
    type RequestData = Taken;

    fn should_accept_request(&self, at_once: usize, served: usize) -> ShouldAccept {
        self.at_once.store(at_once, Ordering::Relaxed);
        if self.health.is_done()
            || self.retired.is_retired()
            || served >= self.reuse.max_requests as usize
        {
            ShouldAccept::Never
        } else if at_once >= self.reuse.max_at_once as usize {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, Host>,
        taken: Self::RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        // Holding half its memory budget already, it serves this request and
        // takes no more.
        if store.data_mut().is_heavy() {
            self.health.spend();
        }
        if let Some((start, end)) = self
            .instantiated
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            Child::over(taken.trace.as_ref(), "instantiate", start, end);
        }
        // The instance's calls go under this request's span only while it
        // serves this request alone: a call made while it serves several
        // could be any one's, and goes untraced rather than under the wrong
        // one.
        let alone = self.at_once.load(Ordering::Relaxed) == 0;
        store.data_mut().trace_under(taken.trace.filter(|_| alone));
        let _ = taken
            .sender
            .send((self.health.clone(), store.data().output().clone()));
        // When this resolves before the response, the request gets a 504 and
        // the instance takes no more requests.
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<Host>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            self.health.fail();
            if e.is::<wasmtime::Trap>() {
                self.metrics.trapped();
            }
            if self.retired.is_retired() {
                // Its component was replaced, or the host is exiting and
                // ending the workers still running.
                tracing::debug!("a retired 0.3 instance ended: {e:#}");
            } else {
                tracing::error!("a 0.3 instance failed, with every request it was serving: {e:?}");
            }
        }
        drop(store);
    }
}

/// When an instance's worker should end: idle past the idle timeout (at once
/// if its component was replaced), or busy past the request timeout.
pub(crate) struct Expiry {
    idle_timeout: Duration,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    retired: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        since: Instant,
    ) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => {
                if self.retired.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                self.idle_timeout
            }
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.timeout,
        };
        let Some(deadline) = since.checked_add(limit) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        // The deadline moves later with every request; the timer is moved
        // only when it would fire too late (a shorter limit), and otherwise
        // re-armed when it fires early: this is polled on every turn of the
        // worker, and moving a timer each time cost throughput.
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
        while self.sleep.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}
