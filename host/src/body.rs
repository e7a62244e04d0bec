//! A response body that ends cleanly only if its guest finished cleanly, and
//! read its request's body whole.
//!
//! `wasmtime-wasi-http` ends a response body normally when the guest's side
//! of it goes away unfinished, as it does when the guest traps or is cut off
//! after sending the head (0.2: an `outgoing-body` dropped without `finish`;
//! 0.3: a trailers future dropped unresolved). hyper would then write a
//! complete response (the last chunk of a chunked body), and a client or load
//! balancer would take a failed request for a good 200. Wrapped in
//! [`Checked`], such a body ends with an error instead, so hyper closes the
//! connection without completing the response.
//!
//! The same goes for a guest that answers after its request's body was cut
//! at `--max-body-bytes` (its read failed there, and it answered anyway, an
//! echo of the first megabyte, say): if the head has not gone out, the
//! client gets a 413 instead (`handler.rs`); if it has, the body is cut short.

use crate::guest_output::Output;
use crate::slot::Slot;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How to tell, at the end of a body, whether its guest finished cleanly.
pub(crate) enum Verdict {
    /// Sent when the guest call that writes the body returns (0.2): `true`
    /// if it finished cleanly; waited for.
    Call(oneshot::Receiver<bool>),
    /// The instance the body comes from (0.3), which goes on serving other
    /// requests: the body is cut short if the instance has failed.
    Instance(Arc<Health>),
    /// The request's body, which the guest may have found cut at the limit:
    /// the response is cut short if it was.
    Whole(Cut),
}

/// Whether a request's body was cut at `--max-body-bytes`.
#[derive(Clone, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    pub(crate) fn cut(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What a 0.3 response holds until its body has been sent: its request's
/// place under `--max-concurrency`, and its instance's output, whose
/// unterminated last line is logged then.
pub(crate) struct UntilSent {
    pub(crate) _slot: Slot,
    pub(crate) output: Option<Output>,
}

impl Drop for UntilSent {
    fn drop(&mut self) {
        if let Some(output) = &self.output {
            output.flush();
        }
    }
}

/// Whether an instance has failed (trapped, run out of memory, been cut off).
#[derive(Default)]
pub(crate) struct Health(AtomicBool);

impl Health {
    pub(crate) fn fail(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `body`, ending cleanly only if `verdict` says its guest finished cleanly,
/// holding `held` until it is dropped.
pub(crate) fn checked(
    body: HyperOutgoingBody,
    verdict: Verdict,
    held: Option<UntilSent>,
) -> HyperOutgoingBody {
    Checked {
        body,
        verdict: Some(verdict),
        _held: held,
    }
    .boxed_unsync()
}

struct Checked {
    body: HyperOutgoingBody,
    /// Taken once the end of the body has been judged.
    verdict: Option<Verdict>,
    _held: Option<UntilSent>,
}

impl Body for Checked {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        match ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            Some(frame) => Poll::Ready(Some(frame)),
            None => {
                let clean = match this.verdict.as_mut() {
                    None => return Poll::Ready(None),
                    // A guest that went away without a word failed too.
                    Some(Verdict::Call(call)) => ready!(Pin::new(call).poll(cx)).unwrap_or(false),
                    Some(Verdict::Instance(health)) => !health.failed(),
                    Some(Verdict::Whole(cut)) => !cut.is_cut(),
                };
                this.verdict = None;
                if clean {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(HttpError::InternalError(Some(
                        "the guest failed, or its request's body was cut, after the response \
                         head was sent"
                            .into(),
                    )))))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end before the verdict is in.
        self.verdict.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn body(text: &'static str) -> HyperOutgoingBody {
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync()
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

    fn whole(cut: bool) -> Verdict {
        let whole = Cut::default();
        if cut {
            whole.cut();
        }
        Verdict::Whole(whole)
    }

    #[tokio::test]
    async fn a_clean_guest_ends_the_body_normally() {
        for verdict in [call(Some(true)), instance(false), whole(false)] {
            let collected = checked(body("all"), verdict, None).collect().await;
            assert_eq!(
                collected.map(|c| c.to_bytes()).ok(),
                Some(Bytes::from("all"))
            );
        }
    }

    #[tokio::test]
    async fn a_failed_or_vanished_guest_cuts_the_body_short_after_its_data() {
        for mut cut in [
            checked(body("part"), call(Some(false)), None),
            checked(body("part"), call(None), None),
            checked(body("part"), instance(true), None),
            checked(body("part"), whole(true), None),
        ] {
            let first = cut.frame().await.expect("a frame").expect("data");
            assert_eq!(first.into_data().ok(), Some(Bytes::from("part")));
            assert!(matches!(cut.frame().await, Some(Err(_))));
        }
    }
}
