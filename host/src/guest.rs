//! Calling the guest for one request: an instance from the pool, the call
//! within the request timeout, the instance put back only if the call
//! succeeded, and how it came out, decided in one place ([`Guest::respond`]).

use crate::body;
use crate::metrics::Metrics;
use crate::pool::Pool;
use crate::span::{self, InRequest};
use anyhow::anyhow;
use bytes::Bytes;
use hyper::{Request, Response};
use replica_config::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

/// A request body as the guest reads it.
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error = HttpError> + Send + 'static
{
}
impl<B: hyper::body::Body<Data = Bytes, Error = HttpError> + Send + 'static> RequestBody for B {}

/// What the guest hands over through its response outparam.
type GuestResponse = Result<Response<HyperOutgoingBody>, ErrorCode>;

/// Why a request got no response from the guest; already logged.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Still running after the request timeout: cut off.
    Timeout,
    /// Trapped, ran out of memory, answered with an error, or set no response.
    Internal,
}

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

/// The guest, as the handler calls it.
pub(crate) struct Guest {
    pool: Arc<Pool>,
    timeout: Duration,
    metrics: Metrics,
}

impl Guest {
    pub(crate) fn new(pool: Arc<Pool>, config: &Config, metrics: Metrics) -> Self {
        Self {
            pool,
            timeout: config.request_timeout,
            metrics,
        }
    }

    /// Runs `req` in a guest instance while `permit` is held, and returns
    /// its response, or why there is none.
    pub(crate) async fn respond(
        self: &Arc<Self>,
        req: Request<impl RequestBody>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Response<HyperOutgoingBody>, Failure> {
        let (sender, mut receiver) = oneshot::channel();
        // Polled here, inline, as long as it runs: a small guest usually
        // finishes in the first poll, and a task of its own would cost a
        // cross-thread wake-up. Once the head is out it may go on writing the
        // body, so from then it runs in a task of its own.
        let mut guest = Box::pin(self.clone().run(req, sender, permit));
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
            } => Ok(response),
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
                Ok(response.map(|b| body::checked(b, checked)))
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
        _permit: OwnedSemaphorePermit,
    ) -> Result<(), Failure> {
        let _in_use = self.metrics.in_use();
        let call = async {
            let mut instance = self.pool.take().await?;
            let mut http = instance.store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, req)?;
            let out = http.new_response_outparam(sender)?;
            instance.store.set_epoch_deadline(1);
            instance
                .proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut instance.store, req, out)
                .await?;
            Ok::<_, wasmtime::Error>(instance)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(instance)) => {
                self.pool.put_back(instance);
                Ok(())
            }
            // A failed instance is dropped here, never reused.
            Ok(Err(e)) => {
                if e.downcast_ref::<wasmtime::Trap>().is_some() {
                    self.metrics.trapped();
                }
                span::log(|| tracing::error!("request failed: {:?}", anyhow!(e)));
                Err(Failure::Internal)
            }
            Err(_elapsed) => {
                self.metrics.timed_out();
                span::log(|| {
                    tracing::warn!("guest still running after {:?}: cut off", self.timeout)
                });
                Err(Failure::Timeout)
            }
        }
    }
}
