//! Response bodies as this host sends them ([`ReplyBody`]): the guest's, the
//! host's own (a JSON error), or the guest's checked at its end.
//!
//! `wasmtime-wasi-http` ends a response body normally when the guest's side
//! of it goes away unfinished, as it does when the guest traps or is cut off
//! after sending the head (0.2: an `outgoing-body` dropped without `finish`;
//! 0.3: a trailers future dropped unresolved). hyper would then write a
//! complete response (the last chunk of a chunked body), and a client or load
//! balancer would take a failed request for a good 200. Checked, such a body
//! ends with an error instead, so hyper closes the connection without
//! completing the response.
//!
//! The same goes for a guest that answers after its request's body was cut
//! at `--max-body-bytes` or under `--min-body-rate` (its read failed there,
//! and it answered anyway, an echo of the first megabyte, say): if the head
//! has not gone out, the client gets a 413 or 408 instead
//! (`serve/handler.rs`); if it has, the body is cut short.
//!
//! An enum rather than a boxed body: one allocation less for every response.

use crate::guest::results::slot::Slot;
use crate::guest::sandbox::cli::output::Output;
use crate::guest::sandbox::health::Health;
use crate::telemetry::span::RequestSpan;
use crate::telemetry::traces::Child;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::CONTENT_LENGTH;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// A response body.
pub(crate) enum ReplyBody {
    /// The guest's, as it came: its guest has already finished cleanly.
    Guest(HyperOutgoingBody),
    /// The guest's, judged at its end.
    Checked(Checked),
    /// The host's own.
    Own(Full<Bytes>),
    /// Either, with its request's trace span, which ends with it (boxed:
    /// only traced requests pay for its size).
    Traced(Box<TracedBody>),
}

/// A body, and the request whose trace span lasts until it is sent.
pub(crate) struct TracedBody {
    body: ReplyBody,
    request: Arc<RequestSpan>,
}

impl ReplyBody {
    /// `response` with its body ending cleanly only if it is whole (all
    /// the bytes of its declared content-length), or `verdict` says its
    /// guest finished cleanly, holding `held` until it is dropped.
    pub(crate) fn checked(
        response: Response<HyperOutgoingBody>,
        verdict: Verdict,
        held: Option<UntilSent>,
    ) -> Response<Self> {
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        response.map(|body| {
            ReplyBody::Checked(Checked {
                body,
                verdict: Some(verdict),
                cut: None,
                remaining: declared,
                failing: false,
                _held: held,
            })
        })
    }

    /// This body, holding `request`'s trace span until it is sent, and
    /// marking it failed if it is cut short.
    pub(crate) fn traced(self, request: Arc<RequestSpan>) -> Self {
        ReplyBody::Traced(Box::new(TracedBody {
            body: self,
            request,
        }))
    }

    /// This body, cut short as well if `cut` says its request's body was cut.
    pub(crate) fn whole(self, cut: Cut) -> Self {
        match self {
            ReplyBody::Checked(mut checked) => {
                checked.cut = Some(cut);
                ReplyBody::Checked(checked)
            }
            ReplyBody::Guest(body) => ReplyBody::Checked(Checked {
                body,
                verdict: None,
                cut: Some(cut),
                remaining: None,
                failing: false,
                _held: None,
            }),
            other @ (ReplyBody::Own(_) | ReplyBody::Traced(_)) => other,
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match self.get_mut() {
            ReplyBody::Guest(body) => Pin::new(body).poll_frame(cx),
            ReplyBody::Checked(checked) => Pin::new(checked).poll_frame(cx),
            ReplyBody::Own(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            ReplyBody::Traced(traced) => {
                let frame = ready!(Pin::new(&mut traced.body).poll_frame(cx));
                if let Some(Err(_)) = &frame {
                    traced.request.failed("response_cut");
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplyBody::Guest(body) => body.is_end_stream(),
            ReplyBody::Checked(checked) => checked.is_end_stream(),
            ReplyBody::Own(body) => body.is_end_stream(),
            ReplyBody::Traced(traced) => traced.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplyBody::Guest(body) => body.size_hint(),
            ReplyBody::Checked(checked) => checked.body.size_hint(),
            ReplyBody::Own(body) => body.size_hint(),
            ReplyBody::Traced(traced) => traced.body.size_hint(),
        }
    }
}

/// How to tell, at the end of a body, whether its guest finished cleanly.
pub(crate) enum Verdict {
    /// Sent when the guest call that writes the body returns (0.2): `true`
    /// if it finished cleanly; waited for.
    Call(oneshot::Receiver<bool>),
    /// The instance the body comes from (0.3), which goes on serving other
    /// requests: the body is cut short if the instance has failed.
    Instance(Arc<Health>),
}

/// Whether a request's body was cut, and why.
#[derive(Clone, Default)]
pub(crate) struct Cut(Arc<AtomicU8>);

/// Why a request's body was cut before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    /// Over `--max-body-bytes`.
    TooLarge,
    /// Slower than `--min-body-rate`.
    TooSlow,
}

impl Cut {
    pub(crate) fn cut(&self, why: Why) {
        let code = match why {
            Why::TooLarge => 1,
            Why::TooSlow => 2,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Why the body was cut, if it was: the first reason found.
    pub(crate) fn why(&self) -> Option<Why> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Why::TooLarge),
            2 => Some(Why::TooSlow),
            _ => None,
        }
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.why().is_some()
    }
}

/// What a 0.3 response holds until its body has been sent: its request's
/// place under `--max-concurrency`, its instance's output, whose
/// unterminated last line is logged then, and the span of its guest's call.
pub(crate) struct UntilSent {
    pub(crate) _slot: Slot,
    pub(crate) output: Option<Output>,
    pub(crate) _span: Child,
}

impl Drop for UntilSent {
    fn drop(&mut self) {
        if let Some(output) = &self.output {
            output.flush();
        }
    }
}

/// A guest's body, judged at its end: cut short (an error, so hyper closes
/// the connection) unless its request's body was read whole, and it is whole
/// itself (as long as it declared) or its guest finished cleanly. A body
/// whose declared bytes have all been written is delivered whatever its
/// instance does afterwards (a 0.3 instance may fail after the response was
/// complete, in another request or a task of its own). Before a body is cut
/// short, what was written goes out: hyper is given a turn to flush it.
pub(crate) struct Checked {
    body: HyperOutgoingBody,
    /// Taken once the end of the body has been judged.
    verdict: Option<Verdict>,
    cut: Option<Cut>,
    /// What is left of its declared content-length, if it declared one.
    remaining: Option<u64>,
    /// Whether it ends with an error, once hyper has had its turn to flush.
    failing: bool,
    _held: Option<UntilSent>,
}

impl Checked {
    fn is_end_stream(&self) -> bool {
        // Never claim the end before the verdict is in.
        self.verdict.is_none() && self.cut.is_none() && self.body.is_end_stream()
    }

    /// Whether every byte the body declared has gone by.
    fn is_whole(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Ends the body with an error, once hyper has flushed what it holds:
    /// this turn, it is told to wait (and woken at once).
    fn fail(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.failing = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for Checked {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.failing {
            return Poll::Ready(Some(Err(HttpError::InternalError(Some(
                "the guest failed, or its request's body was cut, after the response head was \
                 sent"
                    .into(),
            )))));
        }
        match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(remaining), Some(data)) = (this.remaining.as_mut(), frame.data_ref()) {
                    *remaining = remaining.saturating_sub(data.len() as u64);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Some(Err(error)) => {
                tracing::debug!("a guest's response body failed: {error}");
                return this.fail(cx);
            }
            None => {}
        }
        let finished = this.is_whole()
            || match this.verdict.as_mut() {
                None => true,
                // A guest that went away without a word failed too.
                Some(Verdict::Call(call)) => ready!(Pin::new(call).poll(cx)).unwrap_or(false),
                Some(Verdict::Instance(health)) => !health.failed(),
            };
        this.verdict = None;
        let whole = this.cut.take().is_none_or(|cut| !cut.is_cut());
        if finished && whole {
            return Poll::Ready(None);
        }
        this.fail(cx)
    }

    fn is_end_stream(&self) -> bool {
        Checked::is_end_stream(self)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A guest's response of `text`, declaring its length if `declared`.
    fn response(text: &'static str, declared: bool) -> Response<HyperOutgoingBody> {
        let body = Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut response = Response::new(body);
        if declared {
            response.headers_mut().insert(
                CONTENT_LENGTH,
                text.len().to_string().parse().expect("a length"),
            );
        }
        response
    }

    fn checked(text: &'static str, declared: bool, verdict: Verdict) -> ReplyBody {
        ReplyBody::checked(response(text, declared), verdict, None).into_body()
    }

    fn guest(text: &'static str) -> ReplyBody {
        ReplyBody::Guest(response(text, false).into_body())
    }

    fn call(clean: Option<bool>) -> Verdict {
        let (sender, verdict) = oneshot::channel();
        if let Some(clean) = clean {
            let _ = sender.send(clean);
        }
        Verdict::Call(verdict)
    }

    fn instance(failed: bool) -> Verdict {
        let health = Arc::new(Health::default());
        if failed {
            health.fail();
        }
        Verdict::Instance(health)
    }

    fn cut(cut: bool) -> Cut {
        let whole = Cut::default();
        if cut {
            whole.cut(Why::TooLarge);
        }
        whole
    }

    #[tokio::test]
    async fn a_clean_guest_or_a_whole_body_ends_normally() {
        for reply in [
            checked("all", false, call(Some(true))),
            checked("all", false, instance(false)),
            guest("all").whole(cut(false)),
            checked("all", false, call(Some(true))).whole(cut(false)),
            // Every declared byte written: whatever the instance did after.
            checked("all", true, instance(true)),
            checked("all", true, call(Some(false))),
        ] {
            let collected = reply.collect().await;
            assert_eq!(
                collected.map(|c| c.to_bytes()).ok(),
                Some(Bytes::from("all"))
            );
        }
    }

    #[tokio::test]
    async fn a_failed_or_vanished_guest_or_a_cut_request_cuts_the_body_short_after_its_data() {
        for mut cut_short in [
            checked("part", false, call(Some(false))),
            checked("part", false, call(None)),
            checked("part", false, instance(true)),
            guest("part").whole(cut(true)),
            checked("part", false, instance(false)).whole(cut(true)),
            checked("part", true, instance(false)).whole(cut(true)),
        ] {
            let first = cut_short.frame().await.expect("a frame").expect("data");
            assert_eq!(first.into_data().ok(), Some(Bytes::from("part")));
            assert!(matches!(cut_short.frame().await, Some(Err(_))));
        }
    }
}
