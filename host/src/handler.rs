//! One request: a guest instance from the pool, its response or a JSON
//! error, and nothing a guest does escaping this request.

use crate::pool::{Instance, Pool};
use anyhow::anyhow;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Everything a request needs, built once before the accept loop.
pub(crate) struct Handler {
    pool: Arc<Pool>,
    request_timeout: Duration,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// Why a request got no response from the guest; already logged.
enum Failure {
    Timeout,
    Internal,
}

type GuestResponse = Result<Response<HyperOutgoingBody>, ErrorCode>;

impl Handler {
    pub(crate) fn new(pool: Arc<Pool>, max_concurrency: u32, request_timeout: Duration) -> Self {
        let slots = Arc::new(Semaphore::new(max_concurrency as usize));
        Self {
            pool,
            request_timeout,
            slots,
            next_id: AtomicU64::new(0),
        }
    }

    /// Serves one request; every failure becomes a JSON error response.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        let start = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let path: Arc<str> = req.uri().path().into();
        let response = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => self.call_guest(permit, id, &method, &path, req).await,
            Err(_) => {
                tracing::warn!(id, %method, %path, "at --max-concurrency: answering 503");
                let mut busy = json_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
                busy.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                busy
            }
        };
        tracing::debug!(id, %method, %path, status = response.status().as_u16(), latency = ?start.elapsed(), "served");
        Ok(response)
    }

    async fn call_guest(
        &self,
        permit: OwnedSemaphorePermit,
        id: u64,
        method: &Method,
        path: &Arc<str>,
        req: Request<Incoming>,
    ) -> Response<HyperOutgoingBody> {
        let (sender, mut receiver) = oneshot::channel();
        // The guest may go on writing the body after it has handed over the
        // response head, so it cannot simply be awaited here. It is polled here
        // until it finishes, as a small guest usually does at once, or until the
        // head comes back first, and then moved to a task of its own. It logs
        // its own failures, so one after the head was sent is not lost.
        let mut guest = Box::pin(run_guest(
            self.pool.clone(),
            self.request_timeout,
            permit,
            req,
            sender,
            (id, method.clone(), path.clone()),
        ));
        let (answer, outcome) = tokio::select! {
            biased;
            outcome = &mut guest => (receiver.try_recv().ok(), Some(outcome)),
            answer = &mut receiver => (answer.ok(), None),
        };
        let failure = match answer {
            Some(answer) => {
                if outcome.is_none() {
                    tokio::spawn(guest);
                }
                match answer {
                    Ok(response) => return response,
                    Err(code) => {
                        tracing::error!(id, %method, %path, "guest answered with an error: {code:?}");
                        Failure::Internal
                    }
                }
            }
            None => match outcome {
                Some(outcome) => outcome,
                None => guest.await,
            }
            .err()
            .unwrap_or_else(|| {
                tracing::error!(id, %method, %path, "guest returned without setting a response");
                Failure::Internal
            }),
        };
        match failure {
            Failure::Timeout => json_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout"),
            Failure::Internal => {
                json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

/// Runs one request in a pooled instance, putting the instance back only if
/// the request succeeded within the timeout.
async fn run_guest(
    pool: Arc<Pool>,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
    req: Request<Incoming>,
    sender: oneshot::Sender<GuestResponse>,
    (id, method, path): (u64, Method, Arc<str>),
) -> Result<(), Failure> {
    let run = async {
        let mut instance: Instance = pool.take().await?;
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
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(instance)) => {
            pool.put_back(instance);
            Ok(())
        }
        // A failed instance is dropped here, never reused.
        Ok(Err(e)) => {
            tracing::error!(id, %method, %path, "request failed: {:?}", anyhow!(e));
            Err(Failure::Internal)
        }
        Err(_elapsed) => {
            tracing::warn!(id, %method, %path, "guest still running after {timeout:?}: cut off");
            Err(Failure::Timeout)
        }
    }
}

/// A JSON error in the shape FastAPI uses: `{"detail": "..."}`.
pub(crate) fn json_error(status: StatusCode, detail: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
