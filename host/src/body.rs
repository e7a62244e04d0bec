//! A response body that ends cleanly only if its guest finished cleanly.
//!
//! `wasmtime-wasi-http` ends a response body normally when the guest's
//! `outgoing-body` goes away without `finish`, as it does when the guest traps
//! or is cut off after sending the head. hyper would then write a complete
//! response (the last chunk of a chunked body), and a client or load balancer
//! would take a failed request for a good 200. Wrapped in [`Checked`], such a
//! body ends with an error instead, so hyper closes the connection without
//! completing the response.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::sync::oneshot;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// How the guest behind a body came out: `true` if it finished cleanly.
pub(crate) type Verdict = oneshot::Receiver<bool>;

/// `body`, ending cleanly only once `verdict` says the guest finished cleanly.
pub(crate) fn checked(body: HyperOutgoingBody, verdict: Verdict) -> HyperOutgoingBody {
    Checked {
        body,
        verdict: Some(verdict),
    }
    .boxed_unsync()
}

struct Checked {
    body: HyperOutgoingBody,
    /// Taken once the end of the body has been judged.
    verdict: Option<Verdict>,
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
                let Some(verdict) = this.verdict.as_mut() else {
                    return Poll::Ready(None);
                };
                // A guest that went away without a word failed too.
                let clean = ready!(Pin::new(verdict).poll(cx)).unwrap_or(false);
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

    fn verdict(clean: Option<bool>) -> Verdict {
        let (sender, verdict) = oneshot::channel();
        if let Some(clean) = clean {
            let _ = sender.send(clean);
        }
        verdict
    }

    #[tokio::test]
    async fn a_clean_guest_ends_the_body_normally() {
        let collected = checked(body("all"), verdict(Some(true))).collect().await;
        assert_eq!(
            collected.map(|c| c.to_bytes()).ok(),
            Some(Bytes::from("all"))
        );
    }

    #[tokio::test]
    async fn a_failed_or_vanished_guest_cuts_the_body_short_after_its_data() {
        for mut cut in [
            checked(body("part"), verdict(Some(false))),
            checked(body("part"), verdict(None)),
        ] {
            let first = cut.frame().await.expect("a frame").expect("data");
            assert_eq!(first.into_data().ok(), Some(Bytes::from("part")));
            assert!(matches!(cut.frame().await, Some(Err(_))));
        }
    }
}
