//! One connection, served until it closes or is drained: what it is watched
//! with, the future that serves it, and the count of its requests.

use crate::serve::protocol::{Builders, Protocol};
use crate::serve::shutdown::Stop;
use futures::future::Either;
use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

/// What a connection is watched with: its requests, the drain, the idle
/// timeout, when its first request must have come (one window from the
/// accept, whatever was read before), and its peer for the log.
pub(crate) struct Watch {
    pub(crate) asked: Asked,
    pub(crate) stop: Stop,
    pub(crate) idle: Duration,
    pub(crate) first_by: Instant,
    pub(crate) peer: SocketAddr,
}

/// Serves one connection in `protocol` until it closes or is drained. Not an
/// `async fn`: the connection goes straight into the future that serves it,
/// which is in the task of every open connection, so its size is what an
/// idle keep-alive connection costs.
pub(crate) fn serve_in<I, S, B>(
    protocol: Protocol,
    builders: &Builders,
    io: I,
    service: S,
    watch: Watch,
) -> impl Future<Output = ()> + Send + use<I, S, B>
where
    I: Read + Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = Marking {
        inner: service,
        asked: watch.asked.clone(),
    };
    match protocol {
        // After the first request, hyper's header read timeout closes an
        // HTTP/1.1 connection idle that long (it runs while waiting for the
        // next request, too).
        Protocol::Http1 => Either::Left(Serving::new(
            builders.http1.serve_connection(io, service),
            watch,
            None,
        )),
        // Boxed, so that the task of an HTTP/1.1 connection, by far the more
        // common, is not sized for an HTTP/2 one.
        Protocol::Http2 => {
            let idle = watch.idle;
            Either::Right(Box::pin(Serving::new(
                builders.http2.serve_connection(io, service),
                watch,
                Some(idle),
            )))
        }
    }
}

/// A connection being served, in either protocol.
trait Connection: Future<Output = hyper::Result<()>> {
    /// Lets what is in flight finish, takes nothing new, then closes.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Connection for http1::Connection<I, S>
where
    I: Read + Write + Unpin,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> Connection for http2::Connection<I, S, E>
where
    I: Read + Write + Unpin,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

pin_project_lite::pin_project! {
    /// Serves `conn` until it closes. It is dropped if its first request has
    /// not come by `first_by`; it is closed (gracefully: what is in flight
    /// finishes; in HTTP/2, with a GOAWAY) when it has started no request for
    /// `idle` (if given), or once the drain starts. A connection that has not
    /// asked anything yet when the drain starts is first given its request
    /// (within its window): the kernel accepted it and its client is sending
    /// a request, or has sent it already.
    struct Serving<C> {
        #[pin]
        conn: C,
        #[pin]
        draining: WaitForCancellationFutureOwned,
        // The wait for the first request, then the idle timeout (HTTP/2).
        timer: Option<Pin<Box<Sleep>>>,
        idle: Option<Duration>,
        asked: Asked,
        // Requests asked when the timer was last set.
        seen: u64,
        phase: Phase,
        peer: SocketAddr,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Serving,
    /// Drained before its first request: waiting for it.
    AwaitingFirst,
    /// Shut down gracefully: what is in flight finishes.
    Closing,
}

impl<C: Connection> Serving<C> {
    fn new(conn: C, watch: Watch, idle: Option<Duration>) -> Self {
        let Watch {
            asked,
            stop,
            first_by,
            peer,
            ..
        } = watch;
        Self {
            conn,
            draining: stop.draining_owned(),
            timer: Some(Box::pin(tokio::time::sleep_until(first_by))),
            idle,
            seen: asked.count(),
            asked,
            phase: Phase::Serving,
            peer,
        }
    }
}

impl<C: Connection> Future for Serving<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            if let Poll::Ready(served) = this.conn.as_mut().poll(cx) {
                closed(served, *this.peer);
                return Poll::Ready(());
            }
            // An HTTP/1.1 connection needs its timer only until its first
            // request: hyper times the rest.
            if this.idle.is_none() && this.timer.is_some() && this.asked.count() > 0 {
                *this.timer = None;
            }
            match *this.phase {
                Phase::Closing => return Poll::Pending,
                Phase::Serving if this.draining.as_mut().poll(cx).is_ready() => {
                    if this.asked.count() == 0 {
                        // Its timer is still the wait for the first request.
                        *this.phase = Phase::AwaitingFirst;
                    } else {
                        this.conn.as_mut().graceful_shutdown();
                        *this.phase = Phase::Closing;
                    }
                }
                Phase::Serving => {
                    let Some(timer) = this.timer.as_mut() else {
                        return Poll::Pending;
                    };
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let now = this.asked.count();
                    if now == 0 {
                        tracing::debug!(peer = %this.peer, "no request within the first window: closed");
                        abandon(this.conn.as_mut(), cx);
                        return Poll::Ready(());
                    }
                    if now == *this.seen {
                        this.conn.as_mut().graceful_shutdown();
                        *this.phase = Phase::Closing;
                    } else if let Some(idle) = *this.idle {
                        *this.seen = now;
                        timer.as_mut().reset(tokio::time::Instant::now() + idle);
                    } else {
                        *this.timer = None;
                    }
                }
                // The first request is counted as hyper hands it over, in
                // the connection's poll above.
                Phase::AwaitingFirst => {
                    let waited = this
                        .timer
                        .as_mut()
                        .is_none_or(|timer| timer.as_mut().poll(cx).is_ready());
                    if this.asked.count() == 0 && !waited {
                        return Poll::Pending;
                    }
                    if this.asked.count() == 0 {
                        abandon(this.conn.as_mut(), cx);
                        return Poll::Ready(());
                    }
                    this.conn.as_mut().graceful_shutdown();
                    *this.phase = Phase::Closing;
                }
            }
        }
    }
}

/// Gives up on a connection that asked nothing in its window, at once: an
/// HTTP/2 one is sent its GOAWAY first (the one poll after the shutdown
/// writes it); an HTTP/1.1 one is just closed (hyper would go on reading a
/// request head begun, and wait for a GOAWAY's acknowledgement).
fn abandon<C: Connection>(mut conn: Pin<&mut C>, cx: &mut Context<'_>) {
    conn.as_mut().graceful_shutdown();
    let _ = conn.poll(cx);
}

fn closed(served: hyper::Result<()>, peer: SocketAddr) {
    if let Err(e) = served {
        tracing::debug!(%peer, "connection closed with an error: {e}");
    }
}

/// How many requests a connection has been asked.
#[derive(Clone, Default)]
pub(crate) struct Asked(Arc<AtomicU64>);

impl Asked {
    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn mark(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A service that counts its connection's requests.
#[derive(Clone)]
struct Marking<S> {
    inner: S,
    asked: Asked,
}

impl<S: Service<Request<Incoming>>> Service<Request<Incoming>> for Marking<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.asked.mark();
        self.inner.call(req)
    }
}
