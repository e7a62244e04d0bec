//! A request body its guest did not read to the end is read on, so that the
//! HTTP/1.1 connection can serve the next request.
//!
//! A guest may answer without reading the body (the replica's 405 for a
//! POST), or answer before the last of it has arrived. hyper then finds the
//! body dropped unfinished; if the rest is not already in its buffer it
//! closes the connection after the response. By then the response head has
//! gone out without `connection: close`, so a client or load balancer that
//! sends its next request on the connection finds it closed, and a request
//! that is not idempotent cannot be retried. Go's `net/http` reads up to
//! 256 KiB of an unread body for the same reason; so do we, for up to
//! [`WAIT`]. A longer or slower body still closes the connection.
//!
//! HTTP/2 needs none of this: a stream's unread body is reset on its own.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::Version;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The most bytes of an unread body read on after its guest is done.
pub(crate) const MAX_BYTES: usize = 256 * 1024;

/// How long the rest of an unread body is waited for.
pub(crate) const WAIT: Duration = Duration::from_secs(1);

/// A request's body, read on to its end (within the bounds above) when
/// dropped unfinished, if the request came over HTTP/1.
pub(crate) struct Drained<B: Unread> {
    /// Taken when dropped.
    body: Option<B>,
    read_on: bool,
}

/// A body that can be read on in a task of its own.
pub(crate) trait Unread: Body<Data = Bytes> + Unpin + Send + 'static {}
impl<B: Body<Data = Bytes> + Unpin + Send + 'static> Unread for B {}

impl<B: Unread> Drained<B> {
    pub(crate) fn new(body: B, version: Version) -> Self {
        Self {
            body: Some(body),
            read_on: version < Version::HTTP_2,
        }
    }
}

impl<B: Unread> Body for Drained<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl<B: Unread> Drop for Drained<B> {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else { return };
        if !self.read_on || body.is_end_stream() {
            return;
        }
        // Dropped outside a runtime, the body goes as hyper decides.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(read_on(body));
        }
    }
}

/// Reads `body` to its end, or until it is over [`MAX_BYTES`], fails, or
/// takes longer than [`WAIT`]; then drops it.
async fn read_on(mut body: impl Unread) {
    let mut read = 0;
    let to_the_end = async {
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, Bytes::len);
            if read > MAX_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(WAIT, to_the_end).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;
    use futures::channel::mpsc;
    use futures::sink::SinkExt as _;
    use http_body_util::StreamBody;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Chunk = Result<Frame<Bytes>, Infallible>;

    /// A body fed through a channel, and the count of its chunks taken.
    fn fed() -> (mpsc::Sender<Chunk>, Drained<impl Unread>, Arc<AtomicUsize>) {
        let (sender, receiver) = mpsc::channel(4);
        let taken = Arc::new(AtomicUsize::new(0));
        let counted = taken.clone();
        let stream = receiver.map(move |chunk| {
            counted.fetch_add(1, Ordering::SeqCst);
            chunk
        });
        (
            sender,
            Drained::new(StreamBody::new(stream), Version::HTTP_11),
            taken,
        )
    }

    fn chunk(bytes: usize) -> Chunk {
        Ok(Frame::data(Bytes::from(vec![b'x'; bytes])))
    }

    #[tokio::test]
    async fn an_unread_body_is_read_on_to_its_end_after_it_is_dropped() {
        let (mut sender, body, taken) = fed();
        drop(body);
        for _ in 0..3 {
            sender.send(chunk(10)).await.expect("still read");
        }
        drop(sender);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(taken.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn reading_on_stops_past_the_byte_bound() {
        let (mut sender, body, _) = fed();
        drop(body);
        let mut sent = 0;
        let until_refused = async {
            while sender.send(chunk(64 * 1024)).await.is_ok() {
                sent += 64 * 1024;
            }
        };
        let given_up = tokio::time::timeout(Duration::from_secs(5), until_refused).await;
        assert!(given_up.is_ok(), "still reading after {sent} bytes");
        assert!(sent > MAX_BYTES);
    }

    #[tokio::test]
    async fn an_http2_body_is_left_to_hyper() {
        let (mut sender, mut body, _) = fed();
        let body = Drained::new(body.body.take().expect("a body"), Version::HTTP_2);
        drop(body);
        assert!(sender.send(chunk(1)).await.is_err(), "read on");
    }

    #[tokio::test]
    async fn reading_on_stops_after_the_wait() {
        let (mut sender, body, _) = fed();
        drop(body);
        tokio::time::sleep(WAIT + Duration::from_millis(100)).await;
        assert!(sender.send(chunk(1)).await.is_err(), "still waiting");
    }
}
