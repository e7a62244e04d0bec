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

use crate::guest::calls::p3::worker::{Instances, Taken};
use crate::guest::calls::reuse::Reuse;
use crate::guest::results::answer::{Answer, Failure};
use crate::guest::results::reply::{ReplyBody, UntilSent, Verdict};
use crate::guest::results::slot::Slot;
use crate::guest::sandbox::health::Health;
use crate::guest::sandbox::{Host, Sandbox};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::span;
use crate::telemetry::traces::Child;
use hyper::Request;
use opentelemetry::trace::SpanKind;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{ExpirationError, ProxyHandler, TrapOrPanicError};
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// A 0.3 component's instances, as requests use them.
pub(crate) struct ServiceGuest {
    handler: ProxyHandler<Instances>,
}

impl ServiceGuest {
    pub(crate) fn new(
        pre: ServicePre<Host>,
        sandbox: Arc<Sandbox>,
        reuse: Reuse,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        let instances = Instances::new(pre, sandbox, reuse, timeout, metrics);
        Self {
            handler: ProxyHandler::new(instances),
        }
    }

    /// The instances' settings and state, shared with upstream's handler.
    fn instances(&self) -> &Instances {
        self.handler.state()
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
        let (sender, mut instance) = oneshot::channel();
        // The guest's call, under the request's span, until its response's
        // body has been sent; what the guest calls goes under it.
        let guest_span = Child::under(span::trace().as_ref(), SpanKind::Internal, || {
            Cow::Borrowed("wasi:http/handler.handle")
        });
        let taken = Taken {
            sender,
            trace: guest_span.context().cloned(),
        };
        match self.handler.handle(taken, req).await {
            Ok(response) => {
                let (health, output) = match instance.try_recv() {
                    Ok((health, output)) => (health, Some(output)),
                    Err(_) => (Arc::default(), None),
                };
                let held = UntilSent {
                    _slot: slot,
                    output,
                    _span: guest_span,
                };
                Ok(ReplyBody::checked(
                    response,
                    Verdict::Instance(health),
                    Some(held),
                ))
            }
            Err(e) => {
                let health = instance.try_recv().ok().map(|(h, _)| h);
                let (failure, kind) = self.failure(&e, started, health);
                guest_span.fail(kind, || format!("{e:#}"));
                span::failed(kind);
                Err(failure)
            }
        }
    }

    /// Why `e` left a request without a response, and how its span names
    /// that; logged here.
    fn failure(
        &self,
        e: &wasmtime::Error,
        started: Instant,
        health: Option<Arc<Health>>,
    ) -> (Failure, &'static str) {
        if e.is::<ExpirationError>() {
            return (self.timed_out(), "timeout");
        }
        if e.is::<TrapOrPanicError>() {
            // The instance went down under this request: a loop cut off at
            // the timeout, or another request's trap.
            if started.elapsed() >= self.instances().timeout {
                return (self.timed_out(), "timeout");
            }
            span::log(|| {
                tracing::error!(
                    "its instance failed (a trap, memory exhausted or a loop cut off, \
                     in this or another request it was serving)"
                )
            });
            return (Failure::Internal, "instance_failed");
        }
        let kind = if e.is::<wasmtime::Trap>() {
            // This request's own trap: its instance must take no more.
            if let Some(health) = health {
                health.fail();
            }
            self.instances().metrics.trapped();
            "trap"
        } else {
            "guest_error"
        };
        span::log(|| tracing::error!("request failed: {e:?}"));
        (Failure::Internal, kind)
    }

    fn timed_out(&self) -> Failure {
        let timeout = self.instances().timeout;
        self.instances().metrics.timed_out();
        span::log(|| tracing::warn!("no response after {timeout:?}: cut off"));
        Failure::Timeout
    }
}

impl ServiceGuest {
    /// Takes no more requests: idle instances go at once, busy ones once
    /// their requests are done.
    pub(crate) fn retire(&self) {
        self.instances().retired.retire();
    }
}

impl Drop for ServiceGuest {
    fn drop(&mut self) {
        // Replaced, and no request is on its way to it any more.
        self.retire();
    }
}
