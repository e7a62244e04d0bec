//! Each request's `tracing` span (`request{id method path}`), which every log
//! line about the request is written in, so that none repeats those fields.
//!
//! The span is made only when the first such line is: a span made for every
//! request cost 2.6% of the default mode's requests/s (A/B, `bench/ab.py`),
//! and most requests log nothing. While a request's future is polled its span
//! is this thread's current one ([`InRequest`]), so that a line written deep
//! inside the guest's call (its stdout, say) lands in it too ([`log`]).

use hyper::{Method, Uri};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tracing::Span;

/// Who a request is, and its span once made.
pub(crate) struct RequestSpan {
    id: u64,
    method: Method,
    uri: Uri,
    span: OnceLock<Span>,
}

impl RequestSpan {
    pub(crate) fn new(id: u64, method: Method, uri: Uri) -> Arc<Self> {
        Arc::new(Self {
            id,
            method,
            uri,
            span: OnceLock::new(),
        })
    }

    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }

    fn span(&self) -> &Span {
        self.span.get_or_init(|| {
            tracing::info_span!(
                "request",
                id = self.id,
                method = %self.method,
                path = self.uri.path(),
            )
        })
    }
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
