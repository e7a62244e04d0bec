//! A response body that ends cleanly only if its guest finished cleanly.
//!
//! `wasmtime-wasi-http` ends a response body normally when the guest's side
//! of it goes away unfinished, as it does when the guest traps or is cut off
//! after sending the head (0.2: an `outgoing-body` dropped without `finish`;
//! 0.3: a trailers future dropped unresolved). hyper would then write a
//! complete response (the last chunk of a chunked body), and a client or load
//! balancer would take a failed request for a good 200. Wrapped in
//! [`Checked`], such a body ends with an error instead, so hyper closes the
//! connection without completing the response.

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
/// holding `slot` until it is dropped.
pub(crate) fn checked(
    body: HyperOutgoingBody,
    verdict: Verdict,
    slot: Option<Slot>,
) -> HyperOutgoingBody {
    Checked {
        body,
        verdict: Some(verdict),
        _slot: slot,
    }
    .boxed_unsync()
}

struct Checked {
    body: HyperOutgoingBody,
    /// Taken once the end of the body has been judged.
    verdict: Option<Verdict>,
    _slot: Option<Slot>,
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
                };
                this.verdict = None;
                if clean {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(HttpError::InternalError(Some(
                        "the guest failed after sending the response head".into(),
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

    #[tokio::test]
    async fn a_clean_guest_ends_the_body_normally() {
        for verdict in [call(Some(true)), instance(false)] {
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
        ] {
            let first = cut.frame().await.expect("a frame").expect("data");
            assert_eq!(first.into_data().ok(), Some(Bytes::from("part")));
            assert!(matches!(cut.frame().await, Some(Err(_))));
        }
    }
}
