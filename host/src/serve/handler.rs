//! One HTTP request: its span, the checks made before any guest work, its
//! body on its way (`upload.rs`), a concurrency slot, the guest's response or
//! a JSON error, and its line in the access log and the metrics.

use crate::guest::results::answer::{Answer, Failure};
use crate::guest::results::reply::{Cut, ReplyBody, Why};
use crate::guest::results::slot::Slots;
use crate::guest::serving::LocalGuests;
use crate::serve::authority::{self, Fallback};
use crate::serve::response;
use crate::serve::server::Conn;
use crate::serve::upload::{Floor, Upload};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::span::{self, InRequest, RequestSpan};
use crate::telemetry::traces::{self, Asker};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode, Version};
use replica_config::Config;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What one request may ask of the host, how slowly its body may come, and
/// what it is given if it names no authority.
#[derive(Clone, Debug)]
pub(crate) struct RequestLimits {
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: u64,
    pub(crate) floor: Floor,
    pub(crate) authority: Fallback,
}

impl From<&Config> for RequestLimits {
    fn from(config: &Config) -> Self {
        let authority = config
            .authority
            .as_ref()
            .and_then(|given| HeaderValue::from_str(&given.to_string()).ok())
            .map_or(Fallback::Local, Fallback::Configured);
        Self {
            max_header_bytes: config.max_header_bytes as usize,
            max_body_bytes: config.max_body_bytes,
            floor: Floor {
                rate: config.min_body_rate,
                grace: config.body_rate_grace,
            },
            authority,
        }
    }
}

/// What a request came to when it was handled: a refusal, or a guest's call
/// under way. Kept by the request's future until it is answered: a refusal
/// is rare and boxed, so the future is sized for the guest's call.
enum Started<F> {
    Answered(Box<Response<ReplyBody>>),
    Guest(F, Asked),
}

/// What the answer to a guest's call depends on besides the call: whether
/// the request's body was cut (and why), what the request was.
struct Asked {
    cut: Option<Cut>,
    head: bool,
    version: Version,
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
        conn: Conn,
    ) -> impl Future<Output = Result<Response<ReplyBody>, Infallible>> + Send + 'static + use<>
    {
        let id = self.ids.next();
        let trace = if traces::is_on() {
            self.server_span(&req, conn)
        } else {
            None
        };
        let request = RequestSpan::new(id, req.method().clone(), req.uri().clone(), trace);
        // Timed only when someone looks: the access log or the metrics.
        let timed =
            self.metrics.is_on() || tracing::enabled!(target: "access", tracing::Level::INFO);
        let start = timed.then(Instant::now);
        let started = span::within(&request, || self.start(req, conn.local));
        let handler = self.clone();
        let span = request.clone();
        InRequest::new(Some(request), async move {
            let mut response = match started {
                Started::Answered(response) => *response,
                Started::Guest(call, asked) => handler.finish(call.await, asked),
            };
            span.answered(response.status().as_u16());
            if span.is_traced() {
                // The request's span lasts as long as its response's body.
                let traced = span.clone();
                response = response.map(|body| body.traced(traced));
            }
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

    /// The SERVER span of `req`, in its caller's trace.
    fn server_span(&self, req: &Request<Incoming>, conn: Conn) -> Option<opentelemetry::Context> {
        traces::server(&Asker {
            method: req.method().as_str(),
            path: req.uri().path(),
            version: req.version(),
            headers: req.headers(),
            local: conn.local,
            peer: conn.peer,
            tls: conn.tls,
            serving: &|| self.guests.serving(),
        })
    }

    /// A refusal, or the guest's call started, in a place under
    /// `--max-concurrency` (and an upload place while its body is still
    /// arriving), or a 503 without one.
    fn start(
        &self,
        mut req: Request<Incoming>,
        local: SocketAddr,
    ) -> Started<impl Future<Output = Answer> + Send + 'static + use<>> {
        if let Some(Refusal { label, why, answer }) = self.refusal(&mut req, local) {
            span::log(|| tracing::warn!("request refused: {why}"));
            self.metrics.rejected(label);
            return Started::Answered(Box::new(answer));
        }
        let version = req.version();
        let head = req.method() == Method::HEAD;
        let arriving = !req.body().is_end_stream();
        // Whatever the guest answers after its body was cut (at the limit,
        // or under the floor), the client is told.
        let cut = arriving.then(Cut::default);
        let limits = &self.limits;
        let mut req = req.map(|body| match &cut {
            Some(cut) => Upload::new(
                body,
                version,
                limits.max_body_bytes,
                limits.floor,
                cut.clone(),
            ),
            None => Upload::none(),
        });
        let places = if arriving {
            self.slots
                .try_upload()
                .map(|place| req.body_mut().hold(place))
        } else {
            Some(())
        };
        let Some(slot) = places.and_then(|()| self.slots.try_take()) else {
            span::log(|| tracing::warn!("at --max-concurrency: answering 503"));
            self.metrics.rejected("busy");
            let mut busy = json_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
            busy.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return Started::Answered(Box::new(busy));
        };
        let asked = Asked { cut, head, version };
        Started::Guest(self.guests.call(req, slot), asked)
    }

    /// The answer to a request whose body was cut: a 413 over the limit, a
    /// 408 under the floor (closing the connection: the rest of the body is
    /// not waited for).
    fn cut_short(&self, why: Why, version: Version) -> Response<ReplyBody> {
        match why {
            Why::TooLarge => {
                span::failed("body_too_large");
                span::log(|| tracing::warn!("request body over --max-body-bytes: answering 413"));
                self.metrics.rejected("body");
                too_large()
            }
            Why::TooSlow => {
                span::failed("body_too_slow");
                span::log(|| {
                    tracing::warn!("request body slower than --min-body-rate: answering 408")
                });
                self.metrics.rejected("slow");
                let mut late = json_error(StatusCode::REQUEST_TIMEOUT, "Request Timeout");
                if version < Version::HTTP_2 {
                    late.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                late
            }
        }
    }

    /// The guest's answer as the client gets it.
    fn finish(&self, answer: Answer, asked: Asked) -> Response<ReplyBody> {
        let mut response = match answer {
            Ok(response) => response,
            Err(Failure::Timeout) => {
                span::failed("timeout");
                return json_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout");
            }
            Err(Failure::Internal) => {
                return json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
            }
        };
        if let Some(status) = response::not_final(&response) {
            span::failed("invalid_status");
            span::log(|| {
                tracing::error!(
                    "guest answered {status}, which is not a final status: answering 502"
                )
            });
            self.metrics.rejected("status");
            return json_error(StatusCode::BAD_GATEWAY, "Bad Gateway");
        }
        if response::is_bodiless(&response, asked.head) {
            response = response::emptied(response);
        }
        let Some(cut) = asked.cut else {
            return response;
        };
        if let Some(why) = cut.why() {
            return self.cut_short(why, asked.version);
        }
        response.map(|body| body.whole(cut))
    }

    /// A JSON 400, 431 or 413 for a request the guest cannot be given: no
    /// usable authority, or over the limits. Decided before any guest work;
    /// a request that may name no authority is given one here.
    fn refusal(&self, req: &mut Request<Incoming>, local: SocketAddr) -> Option<Refusal> {
        if let Err(refused) = authority::settle(req, &self.limits.authority, local) {
            return Some(Refusal {
                label: "host",
                why: refused.reason(),
                answer: json_error(StatusCode::BAD_REQUEST, "Bad Request"),
            });
        }
        // As counted on the wire: "name: value\r\n".
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.limits.max_header_bytes {
            let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            return Some(Refusal {
                label: "headers",
                why: "headers over --max-header-bytes",
                answer: json_error(status, "Request Header Fields Too Large"),
            });
        }
        if declared_length(req).is_some_and(|length| length > self.limits.max_body_bytes) {
            return Some(Refusal {
                label: "body",
                why: "a declared body over --max-body-bytes",
                answer: too_large(),
            });
        }
        None
    }
}

/// The body length a request declares, if it does.
fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok())
}

/// A request refused before any guest work: its label in the metrics, why
/// (for the log), and the answer.
struct Refusal {
    label: &'static str,
    why: &'static str,
    answer: Response<ReplyBody>,
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
