//! One HTTP request: its span, the checks made before any guest work, a
//! concurrency slot, the guest's response or a JSON error, and its line in
//! the access log and the metrics.

use crate::guest::answer::{Answer, Failure};
use crate::guest::generation::LocalGuests;
use crate::guest::reply::{Cut, ReplyBody};
use crate::guest::slot::Slots;
use crate::serve::drain::Drained;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::span::{self, InRequest, RequestSpan};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use replica_config::Config;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use wasmtime_wasi_http::Error as HttpError;

/// What one request may ask of the host.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLimits {
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: u64,
}

impl From<&Config> for RequestLimits {
    fn from(config: &Config) -> Self {
        Self {
            max_header_bytes: config.max_header_bytes as usize,
            max_body_bytes: config.max_body_bytes,
        }
    }
}

/// What a request came to when it was handled: a refusal, or a guest's call
/// under way (with what tells whether its body was cut at the limit).
enum Started<F> {
    Answered(Response<ReplyBody>),
    Guest(F, Option<Cut>),
}

/// Everything a worker's requests need, built once before its accept loop.
pub(crate) struct Handler {
    guests: LocalGuests,
    limits: RequestLimits,
    metrics: Metrics,
    /// Shared by every worker: `--max-concurrency` bounds the whole process.
    slots: Arc<Slots>,
    ids: Ids,
}

/// Request ids, unique in the process: worker `index` of `count` gives out
/// `index`, `index + count`, ... with a counter of its own.
pub(crate) struct Ids {
    index: u64,
    count: u64,
    next: AtomicU64,
}

impl Ids {
    pub(crate) fn new(index: usize, count: usize) -> Self {
        Self {
            index: index as u64,
            count: count.max(1) as u64,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) * self.count + self.index
    }
}

impl Handler {
    pub(crate) fn new(
        guests: LocalGuests,
        slots: Arc<Slots>,
        ids: Ids,
        limits: RequestLimits,
        metrics: Metrics,
    ) -> Self {
        Self {
            guests,
            slots,
            ids,
            limits,
            metrics,
        }
    }

    pub(crate) fn guests(&self) -> &LocalGuests {
        &self.guests
    }

    /// Serves one request; every failure becomes a JSON error response.
    /// Everything logged about it (the guest's output too) is in its span.
    ///
    /// The checks, and the start of the guest's call, happen here, in the
    /// call; the future only waits for the guest and finishes the answer, and
    /// holds no request: hyper keeps one such future per connection, sized
    /// for the largest, so every idle keep-alive connection pays for its size.
    pub(crate) fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<ReplyBody>, Infallible>> + Send + 'static + use<>
    {
        let id = self.ids.next();
        let request = RequestSpan::new(id, req.method().clone(), req.uri().clone());
        // Timed only when someone looks: the access log or the metrics.
        let timed =
            self.metrics.is_on() || tracing::enabled!(target: "access", tracing::Level::INFO);
        let start = timed.then(Instant::now);
        let started = span::within(&request, || self.start(req));
        let handler = self.clone();
        let span = request.clone();
        InRequest::new(Some(request), async move {
            let response = match started {
                Started::Answered(response) => response,
                Started::Guest(call, cut) => handler.finish(call.await, cut),
            };
            if let Some(start) = start {
                let (status, latency) = (response.status().as_u16(), start.elapsed());
                span::log(|| {
                    tracing::info!(
                        target: "access",
                        status,
                        latency_us = latency.as_micros() as u64
                    )
                });
                handler.metrics.request(span.path(), status, latency);
            }
            Ok(response)
        })
    }

    /// A refusal, or the guest's call started.
    fn start(
        &self,
        req: Request<Incoming>,
    ) -> Started<impl Future<Output = Answer> + Send + 'static + use<>> {
        if let Some((reason, rejection)) = self.refusal(&req) {
            span::log(|| tracing::warn!("request refused ({reason})"));
            self.metrics.rejected(reason);
            return Started::Answered(rejection);
        }
        // A body sent without a length is cut off at the limit: the guest's
        // read fails there, and whatever it answers, the client is told (a
        // 413 if nothing was sent yet, a response cut short otherwise).
        let max_body = self.limits.max_body_bytes;
        let version = req.version();
        let cut = (!req.body().is_end_stream() && !req.headers().contains_key(CONTENT_LENGTH))
            .then(Cut::default);
        let cutting = cut.clone();
        let req = req.map(|body| {
            let body = Drained::new(body, version);
            Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)).map_err(move |e| {
                match e.downcast::<hyper::Error>() {
                    Ok(e) => HttpError::from(*e),
                    Err(_) => {
                        if let Some(cut) = &cutting {
                            cut.cut();
                        }
                        HttpError::HttpRequestBodySize(Some(max_body))
                    }
                }
            })
        });
        let Some(slot) = self.slots.try_take() else {
            span::log(|| tracing::warn!("at --max-concurrency: answering 503"));
            self.metrics.rejected("busy");
            let mut busy = json_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            busy.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return Started::Answered(busy);
        };
        Started::Guest(self.guests.call(req, slot), cut)
    }

    /// The guest's answer as the client gets it.
    fn finish(&self, answer: Answer, cut: Option<Cut>) -> Response<ReplyBody> {
        let response = match answer {
            Ok(response) => response,
            Err(Failure::Timeout) => {
                return json_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
            }
            Err(Failure::Internal) => {
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        let Some(cut) = cut else {
            return response;
        };
        if cut.is_cut() {
            span::log(|| tracing::warn!("request body over --max-body-bytes: answering 413"));
            self.metrics.rejected("body");
            return too_large();
        }
        response.map(|body| body.whole(cut))
    }

    /// A JSON 400, 431 or 413 for a request the guest cannot be given: no
    /// usable authority, or over the limits. Decided before any guest work.
    fn refusal(&self, req: &Request<Incoming>) -> Option<(&'static str, Response<ReplyBody>)> {
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
            return Some(("body", too_large()));
        }
        None
    }
}

fn too_large() -> Response<ReplyBody> {
    json_error(StatusCode::PAYLOAD_TOO_LARGE, "Content Too Large")
}

/// A JSON error in the shape FastAPI uses: `{"detail": "..."}`.
pub(crate) fn json_error(status: StatusCode, detail: &str) -> Response<ReplyBody> {
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut response = Response::new(ReplyBody::Own(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
