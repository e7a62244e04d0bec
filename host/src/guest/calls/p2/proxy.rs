//! Calling a wasi:http 0.2 guest for one request: an instance from the pool,
//! the call within the request timeout, the instance put back only if the
//! call succeeded, and how it came out, decided in one place
//! ([`ProxyGuest::respond`]).

use crate::guest::calls::p2::pool::Pool;
use crate::guest::results::answer::{Answer, Failure, RequestBody};
use crate::guest::results::reply::{ReplyBody, Verdict};
use crate::guest::results::slot::Slot;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::span::{self, InRequest};
use crate::telemetry::traces::Child;
use anyhow::anyhow;
use hyper::{Request, Response};
use opentelemetry::trace::SpanKind;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// What the guest hands over through its response outparam.
type GuestResponse = Result<Response<HyperOutgoingBody>, ErrorCode>;

/// How the race between the guest finishing and its response head came out.
enum Outcome {
    /// The guest finished (or failed) first; `head` is what it had set.
    Finished {
        result: Result<(), Failure>,
        head: Option<GuestResponse>,
    },
    /// The head came while the guest still runs (writing the body, say).
    HeadFirst(GuestResponse),
}

/// A 0.2 component's instances, as requests use them.
pub(crate) struct ProxyGuest {
    pool: Pool,
    timeout: Duration,
    metrics: Metrics,
}

impl ProxyGuest {
    pub(crate) fn new(pool: Pool, timeout: Duration, metrics: Metrics) -> Self {
        Self {
            pool,
            timeout,
            metrics,
        }
    }

    /// Starts `req` in a guest instance while `slot` is held; the future is
    /// its response, or why there is none. The request goes into the guest's
    /// call now, so the future does not hold it (it sits in hyper's per
    /// connection slot, sized for the largest).
    pub(crate) fn call<B: RequestBody>(
        self: &Arc<Self>,
        req: Request<B>,
        slot: Slot,
    ) -> impl Future<Output = Answer> + Send + 'static + use<B> {
        let (sender, receiver) = oneshot::channel();
        // Polled inline, as long as it runs: a small guest usually finishes
        // in the first poll, and a task of its own would cost a wake-up.
        // Once the head is out it may go on writing the body, so from then it
        // runs in a task of its own.
        let guest = Box::pin(self.clone().run(req, sender, slot));
        Self::answer(guest, receiver)
    }

    /// How the guest's call came out, decided in one place.
    async fn answer(
        mut guest: Pin<Box<impl Future<Output = Result<(), Failure>> + Send + 'static>>,
        mut receiver: oneshot::Receiver<GuestResponse>,
    ) -> Answer {
        let outcome = tokio::select! {
            biased;
            result = &mut guest => Outcome::Finished { result, head: receiver.try_recv().ok() },
            head = &mut receiver => match head {
                Ok(head) => Outcome::HeadFirst(head),
                // The outparam went away unset: the guest is about to return.
                Err(_) => Outcome::Finished { result: (&mut guest).await, head: None },
            },
        };
        match outcome {
            Outcome::Finished {
                result: Ok(()),
                head: Some(Ok(response)),
            } => Ok(response.map(ReplyBody::Guest)),
            // Failed before the host sent anything: the client gets a plain
            // error, not the head of a response that could never complete.
            Outcome::Finished {
                result: Err(failure),
                ..
            } => Err(failure),
            Outcome::Finished {
                result: Ok(()),
                head: None,
            } => {
                span::log(|| tracing::error!("guest returned without setting a response"));
                Err(Failure::Internal)
            }
            Outcome::Finished {
                result: Ok(()),
                head: Some(Err(code)),
            } => {
                span::log(|| tracing::error!("guest answered with an error: {code:?}"));
                Err(Failure::Internal)
            }
            Outcome::HeadFirst(Err(code)) => {
                tokio::spawn(InRequest::new(span::current(), guest));
                span::log(|| tracing::error!("guest answered with an error: {code:?}"));
                Err(Failure::Internal)
            }
            // The head goes out now; the body ends cleanly only if the guest
            // finishes cleanly.
            Outcome::HeadFirst(Ok(response)) => {
                let (verdict, checked) = oneshot::channel();
                tokio::spawn(InRequest::new(span::current(), async move {
                    let _ = verdict.send(guest.await.is_ok());
                }));
                Ok(ReplyBody::checked(response, Verdict::Call(checked), None))
            }
        }
    }

    /// Runs one request in a pooled instance, putting the instance back only
    /// if the request succeeded within the timeout. Logs its own failures, so
    /// that one after the head was sent is not lost.
    async fn run(
        self: Arc<Self>,
        req: Request<impl RequestBody>,
        sender: oneshot::Sender<GuestResponse>,
        _slot: Slot,
    ) -> Result<(), Failure> {
        // The guest's call, its instantiation included, under the request's
        // span; what the guest calls goes under it.
        let guest_span = Child::under(span::trace().as_ref(), SpanKind::Internal, || {
            Cow::Borrowed("wasi:http/incoming-handler.handle")
        });
        let call = async {
            let mut instance = self.pool.take(guest_span.context()).await?;
            let host = instance.store.data_mut();
            host.serve(
                req.method() == hyper::Method::HEAD,
                guest_span.context().cloned(),
            );
            let mut http = host.http();
            let req = http.new_incoming_request(Scheme::Http, req)?;
            let out = http.new_response_outparam(sender)?;
            instance.store.set_epoch_deadline(1);
            instance
                .proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut instance.store, req, out)
                .await?;
            // The request is over: a line it left unterminated is logged now.
            instance.store.data().output().flush();
            Ok::<_, wasmtime::Error>(instance)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(instance)) => {
                self.pool.put_back(instance);
                Ok(())
            }
            // A failed instance is dropped here, never reused.
            Ok(Err(e)) => {
                let kind = if e.downcast_ref::<wasmtime::Trap>().is_some() {
                    self.metrics.trapped();
                    "trap"
                } else {
                    "guest_error"
                };
                guest_span.fail(kind, || format!("{e:#}"));
                span::failed(kind);
                span::log(|| tracing::error!("request failed: {:?}", anyhow!(e)));
                Err(Failure::Internal)
            }
            Err(_elapsed) => {
                guest_span.fail("timeout", || {
                    format!("still running after {:?}", self.timeout)
                });
                span::failed("timeout");
                self.metrics.timed_out();
                span::log(|| {
                    tracing::warn!("guest still running after {:?}: cut off", self.timeout)
                });
                Err(Failure::Timeout)
            }
        }
    }
    /// Frees instances idle past their timeout.
    pub(crate) fn sweep(&self) {
        self.pool.sweep();
    }
}
