//! One request: a guest instance from the pool, its response or a JSON
//! error, and nothing a guest does escaping this request.

use crate::body;
use crate::metrics::{Metrics, ReasonLabels};
use crate::pool::{Instance, Pool};
use anyhow::anyhow;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode, Uri};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

/// Everything a request needs, built once before the accept loop.
pub(crate) struct Handler {
    pool: Arc<Pool>,
    limits: Limits,
    metrics: Option<Arc<Metrics>>,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// What one request may ask of the host.
pub(crate) struct Limits {
    pub(crate) max_concurrency: u32,
    pub(crate) request_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: u64,
}

/// Who a request is, for its log lines and metrics.
#[derive(Clone)]
struct Context {
    id: u64,
    method: Method,
    /// The request's URI (a cheap clone of hyper's parsed bytes); its path is
    /// what the log lines show.
    uri: Uri,
    metrics: Option<Arc<Metrics>>,
}

impl Context {
    fn path(&self) -> &str {
        self.uri.path()
    }
}

/// Why a request got no response from the guest; already logged.
enum Failure {
    Timeout,
    Internal,
}

type GuestResponse = Result<Response<HyperOutgoingBody>, ErrorCode>;

/// A request body as the guest reads it.
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error = HttpError> + Send + 'static
{
}
impl<B: hyper::body::Body<Data = Bytes, Error = HttpError> + Send + 'static> RequestBody for B {}

impl Handler {
    pub(crate) fn new(pool: Arc<Pool>, limits: Limits, metrics: Option<Arc<Metrics>>) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_concurrency as usize));
        Self {
            pool,
            limits,
            metrics,
            slots,
            next_id: AtomicU64::new(0),
        }
    }

    /// Serves one request; every failure becomes a JSON error response.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        // Timed only when someone looks: the access log or the metrics.
        let timed =
            self.metrics.is_some() || tracing::enabled!(target: "access", tracing::Level::INFO);
        let start = timed.then(Instant::now);
        let cx = Context {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            method: req.method().clone(),
            uri: req.uri().clone(),
            metrics: self.metrics.clone(),
        };
        let response = self.respond(&cx, req).await;
        if let Some(start) = start {
            let (status, latency) = (response.status().as_u16(), start.elapsed());
            tracing::info!(
                target: "access",
                id = cx.id,
                method = %cx.method,
                path = cx.path(),
                status,
                latency_us = latency.as_micros() as u64,
            );
            if let Some(metrics) = &cx.metrics {
                metrics.observe_request(cx.path(), status, latency);
            }
        }
        Ok(response)
    }

    async fn respond(&self, cx: &Context, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        if let Some((reason, rejection)) = self.refusal(&req) {
            tracing::warn!(id = cx.id, method = %cx.method, path = cx.path(), "request refused ({reason})");
            cx.reject(reason);
            return rejection;
        }
        // A body sent without a length is cut off at the limit: the guest's
        // read fails there.
        let max_body = self.limits.max_body_bytes;
        let req = req.map(|body| {
            Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).map_err(move |e| {
                match e.downcast::<hyper::Error>() {
                    Ok(e) => HttpError::from(*e),
                    Err(_) => HttpError::HttpRequestBodySize(Some(max_body)),
                }
            })
        });
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => self.call_guest(permit, cx, req).await,
            Err(_) => {
                tracing::warn!(id = cx.id, method = %cx.method, path = cx.path(), "at --max-concurrency: answering 503");
                cx.reject("busy");
                let mut busy = json_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
                busy.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                busy
            }
        }
    }

    /// A JSON 400, 431 or 413 for a request the guest cannot be given: no
    /// usable authority, or over the limits. Decided before any guest work.
    fn refusal(
        &self,
        req: &Request<Incoming>,
    ) -> Option<(&'static str, Response<HyperOutgoingBody>)> {
        // wasi:http gives every request an authority: from the URI, or from
        // a Host header (which HTTP/1.1 requires anyway: RFC 9112, 3.2).
        let authority = req.uri().authority().is_some()
            || req
                .headers()
                .get(HOST)
                .is_some_and(|host| host.to_str().is_ok());
        if !authority {
            return Some(("host", json_error(StatusCode::BAD_REQUEST, "Bad Request")));
        }
        // As counted on the wire: "name: value\r\n".
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.limits.max_header_bytes {
            let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return Some((
                "headers",
                json_error(status, "Request Header Fields Too Large"),
            ));
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.limits.max_body_bytes) {
            return Some((
                "body",
                json_error(StatusCode::PAYLOAD_TOO_LARGE, "Content Too Large"),
            ));
        }
        None
    }

    async fn call_guest(
        &self,
        permit: OwnedSemaphorePermit,
        cx: &Context,
        req: Request<impl RequestBody>,
    ) -> Response<HyperOutgoingBody> {
        let (sender, mut receiver) = oneshot::channel();
        // The guest may go on writing the body after it has handed over the
        // response head, so it cannot simply be awaited here. It is polled here
        // until it finishes, as a small guest usually does at once, or until the
        // head comes back first, and then moved to a task of its own. It logs
        // its own failures, so one after the head was sent is not lost.
        let mut guest = Box::pin(run_guest(
            self.pool.clone(),
            self.limits.request_timeout,
            permit,
            req,
            sender,
            cx.clone(),
        ));
        let (answer, outcome) = tokio::select! {
            biased;
            outcome = &mut guest => (receiver.try_recv().ok(), Some(outcome)),
            answer = &mut receiver => (answer.ok(), None),
        };
        let failure = match (answer, outcome) {
            // Finished cleanly, response and all.
            (Some(Ok(response)), Some(Ok(()))) => return response,
            // Failed before the host sent anything: the client gets a plain
            // error, not the head of a response that will never complete.
            (Some(Ok(_)), Some(Err(failure))) => failure,
            // The head came first and goes out now; the body ends cleanly only
            // if the guest does.
            (Some(Ok(response)), None) => {
                let (verdict, checked) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let _ = verdict.send(guest.await.is_ok());
                });
                return response.map(|b| body::checked(b, checked));
            }
            (Some(Err(code)), outcome) => {
                if outcome.is_none() {
                    tokio::spawn(guest);
                }
                tracing::error!(id = cx.id, method = %cx.method, path = cx.path(), "guest answered with an error: {code:?}");
                Failure::Internal
            }
            (None, outcome) => match outcome {
                Some(outcome) => outcome,
                None => guest.await,
            }
            .err()
            .unwrap_or_else(|| {
                tracing::error!(id = cx.id, method = %cx.method, path = cx.path(), "guest returned without setting a response");
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

impl Context {
    fn reject(&self, reason: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .rejections
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }
}

/// Counts a guest instance as in use while it lives.
struct InUse(Option<Arc<Metrics>>);

impl InUse {
    fn new(metrics: Option<Arc<Metrics>>) -> Self {
        if let Some(metrics) = &metrics {
            metrics.instances_in_use.inc();
        }
        Self(metrics)
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(metrics) = &self.0 {
            metrics.instances_in_use.dec();
        }
    }
}

/// Runs one request in a pooled instance, putting the instance back only if
/// the request succeeded within the timeout.
async fn run_guest(
    pool: Arc<Pool>,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
    req: Request<impl RequestBody>,
    sender: oneshot::Sender<GuestResponse>,
    cx: Context,
) -> Result<(), Failure> {
    let _in_use = InUse::new(cx.metrics.clone());
    let run = async {
        let mut instance: Instance = pool.take().await?;
        // The guest's log lines name this request.
        instance
            .store
            .data()
            .request
            .store(cx.id, Ordering::Relaxed);
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
            if let Some(metrics) = &cx.metrics
                && e.downcast_ref::<wasmtime::Trap>().is_some()
            {
                metrics.traps.inc();
            }
            tracing::error!(id = cx.id, method = %cx.method, path = cx.path(), "request failed: {:?}", anyhow!(e));
            Err(Failure::Internal)
        }
        Err(_elapsed) => {
            if let Some(metrics) = &cx.metrics {
                metrics.timeouts.inc();
            }
            tracing::warn!(id = cx.id, method = %cx.method, path = cx.path(), "guest still running after {timeout:?}: cut off");
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
