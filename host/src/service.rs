//! Serving a wasi:http 0.3 (`wasi:http/service`) component, through upstream's
//! `wasmtime_wasi_http::handler::ProxyHandler`: it runs each instance in a
//! worker task that takes requests as the guest can serve them, several at
//! once. Here is what this host decides about those instances:
//!
//! - how many requests one serves in all (`--max-instance-reuse`) and at once
//!   (`--max-instance-concurrency`); `--strict` makes both 1;
//! - how long an idle one is kept (`--idle-instance-timeout`), and that those
//!   of a replaced component go as soon as they are idle;
//! - the request timeout: a request still without a response after
//!   `--request-timeout` gets a 504, and its instance takes no more requests;
//!   an instance stuck that long (a guest in a loop holds the whole instance)
//!   is dropped;
//! - failure: an instance whose guest traps or runs out of memory is dropped
//!   and never takes another request. The requests it was serving at that
//!   moment get a 500 (a response already under way is cut short): they
//!   shared the instance, and with it its fate.

use crate::answer::{Answer, Failure};
use crate::body::{Health, ReplyBody, UntilSent, Verdict};
use crate::guest_output::Output;
use crate::metrics::Metrics;
use crate::pool::Reuse;
use crate::sandbox::{self, Host, Sandbox};
use crate::slot::Slot;
use crate::span;
use hyper::Request;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, Proxy, ProxyHandler, ShouldAccept, TrapOrPanicError,
    WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtxView, WasiHttpView};

/// A 0.3 component's instances, as requests use them.
pub(crate) struct ServiceGuest {
    handler: ProxyHandler<Instances>,
    timeout: Duration,
    metrics: Metrics,
    retired: Retired,
}

/// Set when a component is replaced (or the host exits): its instances take
/// no more requests, and idle ones go at once.
#[derive(Clone, Default)]
struct Retired {
    /// Read on every turn of every worker: an atomic, where the token's own
    /// check takes a lock.
    flag: Arc<AtomicBool>,
    /// Wakes the idle workers.
    token: CancellationToken,
}

impl Retired {
    fn retire(&self) {
        self.flag.store(true, Ordering::Release);
        self.token.cancel();
    }

    fn is_retired(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

impl ServiceGuest {
    pub(crate) fn new(
        pre: ServicePre<Host>,
        sandbox: Arc<Sandbox>,
        reuse: Reuse,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        let retired = Retired::default();
        let instances = Instances {
            pre,
            sandbox,
            reuse,
            timeout,
            metrics: metrics.clone(),
            retired: retired.clone(),
        };
        Self {
            handler: ProxyHandler::new(instances),
            timeout,
            metrics,
            retired,
        }
    }

    /// Runs `req` in an instance while `slot` is held (until the response's
    /// body has been sent), and returns its response, or why there is none.
    pub(crate) async fn respond(&self, req: Request<WasiBody>, slot: Slot) -> Answer {
        let started = Instant::now();
        // The worker that takes the request sends its instance's health and
        // output.
        // No timer here: the worker's expiry (`on_request_start`, and `Expiry`
        // for a guest that holds its instance in a loop) ends a request that
        // runs past the timeout.
        let (taken, mut instance) = oneshot::channel();
        match self.handler.handle(taken, req).await {
            Ok(response) => {
                let (health, output) = match instance.try_recv() {
                    Ok((health, output)) => (health, Some(output)),
                    Err(_) => (Arc::default(), None),
                };
                let held = UntilSent {
                    _slot: slot,
                    output,
                };
                Ok(response.map(|b| ReplyBody::checked(b, Verdict::Instance(health), Some(held))))
            }
            Err(e) => Err(self.failure(e, started, instance.try_recv().ok().map(|(h, _)| h))),
        }
    }

    /// Why `e` left a request without a response; logged here.
    fn failure(
        &self,
        e: wasmtime::Error,
        started: Instant,
        health: Option<Arc<Health>>,
    ) -> Failure {
        if e.is::<ExpirationError>() {
            let Err(failure) = self.timed_out() else {
                unreachable!("timed_out is a failure")
            };
            return failure;
        }
        if e.is::<TrapOrPanicError>() {
            // The instance went down under this request: a loop cut off at
            // the timeout, or another request's trap.
            if started.elapsed() >= self.timeout {
                let Err(failure) = self.timed_out() else {
                    unreachable!("timed_out is a failure")
                };
                return failure;
            }
            span::log(|| {
                tracing::error!(
                    "its instance failed (a trap, memory exhausted or a loop cut off, \
                     in this or another request it was serving)"
                )
            });
            return Failure::Internal;
        }
        if e.is::<wasmtime::Trap>() {
            // This request's own trap: its instance must take no more.
            if let Some(health) = health {
                health.fail();
            }
            self.metrics.trapped();
        }
        span::log(|| tracing::error!("request failed: {e:?}"));
        Failure::Internal
    }

    fn timed_out(&self) -> Answer {
        self.metrics.timed_out();
        span::log(|| tracing::warn!("no response after {:?}: cut off", self.timeout));
        Err(Failure::Timeout)
    }
}

impl ServiceGuest {
    /// Takes no more requests: idle instances go at once, busy ones once
    /// their requests are done.
    pub(crate) fn retire(&self) {
        self.retired.retire();
    }
}

impl Drop for ServiceGuest {
    fn drop(&mut self) {
        // Replaced, and no request is on its way to it any more.
        self.retire();
    }
}

/// How this host makes and runs the instances of one 0.3 component.
struct Instances {
    pre: ServicePre<Host>,
    sandbox: Arc<Sandbox>,
    reuse: Reuse,
    timeout: Duration,
    metrics: Metrics,
    retired: Retired,
}

impl HandlerState for Instances {
    type StoreData = Host;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<Host, Expiry, Worker>> {
        let started = Instant::now();
        let mut store = sandbox::new_store(self.pre.engine(), &self.sandbox);
        let service = self.pre.instantiate_async(&mut store).await?;
        self.metrics.instantiated(started.elapsed());
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
                health: Arc::default(),
            },
        })
    }
}

fn http_view(host: &mut Host) -> WasiHttpCtxView<'_> {
    host.http()
}

/// One instance's worker, as this host steers it.
struct Worker {
    reuse: Reuse,
    timeout: Duration,
    metrics: Metrics,
    retired: Retired,
    health: Arc<Health>,
}

impl WorkerState for Worker {
    type StoreData = Host;
    /// Where the instance's health and output go, for the request's
    /// response body.
    type RequestData = oneshot::Sender<(Arc<Health>, Output)>;

    fn should_accept_request(&self, at_once: usize, served: usize) -> ShouldAccept {
        if self.health.failed()
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
        store: StoreContextMut<'_, Host>,
        taken: Self::RequestData,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let _ = taken.send((self.health.clone(), store.data().output().clone()));
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
struct Expiry {
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
