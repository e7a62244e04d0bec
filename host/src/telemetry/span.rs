//! Each request's `tracing` span (`request{id method path}`), which every log
//! line about the request is written in, so that none repeats those fields,
//! and its OpenTelemetry span when tracing is on (`traces/`), under which
//! what runs for the request makes its own ([`child`]).
//!
//! The span is made only when the first such line is: a span made for every
//! request cost 2.6% of the default mode's requests/s (A/B, `bench/ab.py`),
//! and most requests log nothing. While a request's future is polled its span
//! is this thread's current one ([`InRequest`]), so that a line written deep
//! inside the guest's call (its stdout, say) lands in it too ([`log`]).

use crate::telemetry::traces;
use hyper::{Method, Uri};
use opentelemetry::Context as TraceContext;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tracing::Span;

/// Who a request is, its log span once made, and its trace span (the
/// OpenTelemetry SERVER span) if tracing is on: it ends when the last of the
/// request's tasks and its response's body let go of this.
pub(crate) struct RequestSpan {
    id: u64,
    method: Method,
    uri: Uri,
    span: OnceLock<Span>,
    trace: Option<Traced>,
}

/// A request's trace span, and how the request came out, for its end.
struct Traced {
    cx: TraceContext,
    /// The status answered, 0 until then.
    status: AtomicU16,
    /// How the request failed, the first failure found.
    failure: OnceLock<&'static str>,
}

impl RequestSpan {
    pub(crate) fn new(id: u64, method: Method, uri: Uri, trace: Option<TraceContext>) -> Arc<Self> {
        Arc::new(Self {
            id,
            method,
            uri,
            span: OnceLock::new(),
            trace: trace.map(|cx| Traced {
                cx,
                status: AtomicU16::new(0),
                failure: OnceLock::new(),
            }),
        })
    }

    /// The request's trace span, if it has one.
    pub(crate) fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_ref().map(|traced| &traced.cx)
    }

    /// Whether the request has a trace span.
    pub(crate) fn is_traced(&self) -> bool {
        self.trace.is_some()
    }

    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }

    /// The request was answered `status`.
    pub(crate) fn answered(&self, status: u16) {
        if let Some(traced) = &self.trace {
            traced.status.store(status, Ordering::Relaxed);
        }
    }

    /// The request failed, `kind` saying how (`trap`, `timeout`,
    /// `body_too_large`, `response_cut`, ...): its trace span says so.
    pub(crate) fn failed(&self, kind: &'static str) {
        if let Some(traced) = &self.trace {
            let _ = traced.failure.set(kind);
        }
    }

    fn span(&self) -> &Span {
        self.span.get_or_init(|| match &self.trace {
            // Each line of a traced request names its trace and span.
            Some(traced) => {
                let (trace_id, span_id) = traces::ids(&traced.cx);
                tracing::info_span!(
                    "request",
                    id = self.id,
                    method = %self.method,
                    path = self.uri.path(),
                    trace_id,
                    span_id,
                )
            }
            None => tracing::info_span!(
                "request",
                id = self.id,
                method = %self.method,
                path = self.uri.path(),
            ),
        })
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if let Some(traced) = &self.trace {
            let status = traced.status.load(Ordering::Relaxed);
            traces::end(&traced.cx, status, traced.failure.get().copied());
        }
    }
}

/// The trace span of the request being served on this thread, if tracing is
/// on and there is one: the parent of what runs for it.
pub(crate) fn trace() -> Option<TraceContext> {
    if !traces::is_on() {
        return None;
    }
    CURRENT.with(|current| current.borrow().as_ref()?.trace().cloned())
}

/// The request being served on this thread failed, `kind` saying how.
pub(crate) fn failed(kind: &'static str) {
    if !traces::is_on() {
        return;
    }
    CURRENT.with(|current| {
        if let Some(request) = current.borrow().as_ref() {
            request.failed(kind);
        }
    });
}

thread_local! {
    /// The request whose future this thread is polling, if any.
    static CURRENT: RefCell<Option<Arc<RequestSpan>>> = const { RefCell::new(None) };
}

/// Writes a log line (`tracing` events, in `write`) in the span of the request
/// being served on this thread, if there is one.
pub(crate) fn log(write: impl FnOnce()) {
    let current = CURRENT.with(|current| current.borrow().clone());
    match current {
        Some(request) => request.span().in_scope(write),
        None => write(),
    }
}

/// Runs `f` with `request` as this thread's current request.
pub(crate) fn within<T>(request: &Arc<RequestSpan>, f: impl FnOnce() -> T) -> T {
    let _current = Current::set(Some(request.clone()));
    f()
}

/// The request being served on this thread, to carry into a task it spawns.
pub(crate) fn current() -> Option<Arc<RequestSpan>> {
    CURRENT.with(|current| current.borrow().clone())
}

pin_project_lite::pin_project! {
    /// A future that is polled as `request`'s.
    pub(crate) struct InRequest<F> {
        request: Option<Arc<RequestSpan>>,
        #[pin]
        future: F,
    }
}

impl<F: Future> InRequest<F> {
    pub(crate) fn new(request: Option<Arc<RequestSpan>>, future: F) -> Self {
        Self { request, future }
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = Current::set(this.request.clone());
        this.future.poll(cx)
    }
}

/// Makes a request this thread's current one until dropped (even by a panic),
/// then restores the one before.
struct Current(Option<Arc<RequestSpan>>);

impl Current {
    fn set(request: Option<Arc<RequestSpan>>) -> Self {
        Self(CURRENT.with(|current| current.replace(request)))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let outer = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = outer);
    }
}
