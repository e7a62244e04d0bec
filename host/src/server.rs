//! Serving a listener: the accept loop, connections in HTTP/1.1 or HTTP/2
//! (told apart by what the client sends first; over TLS, offered by ALPN),
//! their timeouts and limits, and the graceful drain. Each worker's socket on
//! the replica's port and the metrics port are all served by [`serve`].

use crate::listeners;
use crate::shutdown::Stop;
use crate::tls::Tls;
use futures::FutureExt as _;
use futures::future::Either;
use hyper::body::{Body, Incoming};
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use replica_config::Config;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tokio_util::task::TaskTracker;

/// HTTP/2 streams reset by a client that a connection takes before it is
/// closed: the rapid-reset flood (CVE-2023-44487) opens and cancels streams
/// at once, costing the server work the client never waits for.
const MAX_PENDING_RESETS: usize = 20;

/// HTTP/2 streams this host resets itself (for errors a client provokes)
/// before it closes the connection.
const MAX_LOCAL_RESETS: usize = 64;

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// After SIGTERM/SIGINT, how long in-flight requests may take.
    pub(crate) grace: Duration,
    /// Slowloris guard and idle timeout: a connection that has not started
    /// a request this long after it opened, or since its last one, is closed
    /// (hyper also times an HTTP/1.1 request head it is reading).
    pub(crate) header_read_timeout: Duration,
    /// The handler answers past this with a JSON 431; hyper itself cuts off
    /// (with a bare 431, or a stream reset in HTTP/2) at four times this.
    pub(crate) max_header_bytes: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub(crate) max_streams: u32,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Self {
            grace: config.shutdown_grace,
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes as usize,
            max_streams: config.max_streams,
        }
    }
}

/// The opening of every HTTP/2 connection without TLS (RFC 9113, 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How connections are built: HTTP/1.1 and HTTP/2, with the same limits.
///
/// Not hyper-util's `auto` builder, which tells the two apart for us: the
/// future it makes is sized for either protocol and holds what it read
/// ahead, and with it an idle keep-alive connection (the kind a load
/// balancer holds by the hundred) cost 22.5 KB instead of 14.1 KB.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(settings: Settings) -> Self {
        let header_cap = settings.max_header_bytes.saturating_mul(4);
        let mut http1 = http1::Builder::new();
        http1
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            // The head of a request must fit in the read buffer: its bound is
            // the header limit (hyper's floor for it is 8 KiB).
            .max_buf_size(header_cap.max(8 * 1024));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(settings.max_streams)
            .max_header_list_size(u32::try_from(header_cap).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            .max_local_error_reset_streams(MAX_LOCAL_RESETS)
            // A peer that stops answering pings is gone.
            .keep_alive_interval(settings.header_read_timeout)
            .keep_alive_timeout(settings.header_read_timeout);
        Self { http1, http2 }
    }
}

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// What a connection that opened with `first` speaks, once that is
    /// known: HTTP/2 if it is the whole preface, HTTP/1.1 as soon as it is
    /// not the preface's start.
    fn opening_with(first: &[u8]) -> Option<Protocol> {
        if !HTTP2_PREFACE.starts_with(first) {
            Some(Protocol::Http1)
        } else if first.len() == HTTP2_PREFACE.len() {
            Some(Protocol::Http2)
        } else {
            None
        }
    }

    /// What a cleartext connection speaks, from its first bytes, looked at
    /// without taking them. A client that has sent only the start of the
    /// preface is looked at again a little later (clients send it whole).
    async fn spoken(stream: &TcpStream) -> Protocol {
        let mut first = [0u8; HTTP2_PREFACE.len()];
        let mut pause = Duration::from_millis(1);
        loop {
            match stream.peek(&mut first).await {
                // Closed, or failed: hyper finds that out for itself.
                Ok(0) | Err(_) => return Protocol::Http1,
                Ok(seen) => {
                    if let Some(protocol) = Self::opening_with(&first[..seen]) {
                        return protocol;
                    }
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// What a TLS connection speaks: what its client chose by ALPN.
    fn chosen<I>(stream: &tokio_rustls::server::TlsStream<I>) -> Protocol {
        match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }
}

/// Serves `listener` with `service` (over TLS when `tls` is given) until
/// `stop` says to drain; then refuses new connections, serves those the
/// kernel had already taken (see listeners.rs), closes the socket, and lets
/// in-flight requests finish for up to the grace period, or until `stop` says
/// to end at once. Returns whether every connection finished.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    settings: Settings,
    tls: Option<Arc<Tls>>,
    stop: Stop,
) -> bool
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = TaskTracker::new();
    let builders = Arc::new(Builders::new(settings));
    // What each connection watches; `stop` is the accept loop's own.
    let drain = stop.clone();
    let serve_connection = |stream: TcpStream, peer: SocketAddr| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let service = service.clone();
        let builders = builders.clone();
        let idle = settings.header_read_timeout;
        let watch = Watch {
            asked: Asked::default(),
            stop: drain.clone(),
            idle,
            peer,
        };
        // Two kinds of task, so that a plain connection's is not sized for TLS.
        let Some(tls) = tls.clone() else {
            connections.spawn(async move {
                let Ok(protocol) = tokio::time::timeout(idle, Protocol::spoken(&stream)).await
                else {
                    tracing::debug!(%peer, "nothing sent in {idle:?}");
                    return;
                };
                serve_in(protocol, &builders, TokioIo::new(stream), service, watch).await;
            });
            return;
        };
        connections.spawn(async move {
            let handshake = tokio::time::timeout(idle, tls.acceptor().accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let protocol = Protocol::chosen(&stream);
                    serve_in(protocol, &builders, TokioIo::new(stream), service, watch).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(%peer, "TLS handshake still unfinished after {idle:?}"),
            }
        });
    };

    // Serves an accepted connection; says whether to back off instead.
    let take = |accepted: std::io::Result<(TcpStream, SocketAddr)>| match accepted {
        Ok((stream, peer)) => {
            serve_connection(stream, peer);
            false
        }
        Err(e) => {
            // Typically out of file descriptors: back off, keep serving.
            tracing::warn!("accept failed: {e}");
            true
        }
    };
    let back_off = || tokio::time::sleep(Duration::from_millis(10));
    loop {
        tokio::select! {
            accepted = listener.accept() => if take(accepted) { back_off().await },
            () = stop.draining() => break,
        }
    }
    // Draining: no new connection, but those whose handshake is under way
    // are still accepted and served.
    listeners::refuse_new(&listener);
    let settle = tokio::time::sleep(listeners::SETTLE);
    tokio::pin!(settle);
    loop {
        tokio::select! {
            biased;
            () = &mut settle => break,
            accepted = listener.accept() => if take(accepted) { back_off().await },
        }
    }
    // Connections the kernel has already accepted are served too, not reset.
    while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        serve_connection(stream, peer);
    }
    drop(listener);

    let grace = settings.grace;
    connections.close();
    tokio::select! {
        () = connections.wait() => true,
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period of {grace:?} over; exiting with requests in flight");
            false
        }
        () = stop.now() => false,
    }
}

/// What a connection is watched with: its requests, the drain, the idle
/// timeout, and its peer for the log.
struct Watch {
    asked: Asked,
    stop: Stop,
    idle: Duration,
    peer: SocketAddr,
}

/// Serves one connection in `protocol` until it closes or is drained. Not an
/// `async fn`: the connection goes straight into the future that serves it,
/// which is in the task of every open connection, so its size is what an
/// idle keep-alive connection costs.
fn serve_in<I, S, B>(
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
        // hyper's header read timeout closes an HTTP/1.1 connection idle
        // that long (it runs while waiting for the next request, too).
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
    /// Serves `conn` until it closes. It is closed (gracefully: what is in
    /// flight finishes; in HTTP/2, with a GOAWAY) when it has started no
    /// request for `idle` (if given), or once the drain starts. A connection
    /// that has not asked anything yet when the drain starts is first given
    /// its request (within the idle timeout): the kernel accepted it and its
    /// client is sending a request, or has sent it already.
    struct Serving<C> {
        #[pin]
        conn: C,
        #[pin]
        draining: WaitForCancellationFutureOwned,
        // The idle timeout (HTTP/2), or the wait for a first request.
        timer: Option<Pin<Box<Sleep>>>,
        idle: Option<Duration>,
        idle_timeout: Duration,
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
            idle: idle_timeout,
            peer,
        } = watch;
        Self {
            conn,
            draining: stop.draining_owned(),
            timer: idle.map(|idle| Box::pin(tokio::time::sleep(idle))),
            idle,
            idle_timeout,
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
            match *this.phase {
                Phase::Closing => return Poll::Pending,
                Phase::Serving if this.draining.as_mut().poll(cx).is_ready() => {
                    if this.asked.count() == 0 {
                        *this.phase = Phase::AwaitingFirst;
                        *this.timer = Some(Box::pin(tokio::time::sleep(*this.idle_timeout)));
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
                    if now == *this.seen {
                        this.conn.as_mut().graceful_shutdown();
                        *this.phase = Phase::Closing;
                    } else if let Some(idle) = *this.idle {
                        *this.seen = now;
                        timer.as_mut().reset(tokio::time::Instant::now() + idle);
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
                    this.conn.as_mut().graceful_shutdown();
                    *this.phase = Phase::Closing;
                }
            }
        }
    }
}

fn closed(served: hyper::Result<()>, peer: SocketAddr) {
    if let Err(e) = served {
        tracing::debug!(%peer, "connection closed with an error: {e}");
    }
}

/// How many requests a connection has been asked.
#[derive(Clone, Default)]
struct Asked(Arc<AtomicU64>);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_the_protocol_once_they_can() {
        assert_eq!(
            Protocol::opening_with(b"GET / HTTP/1.1"),
            Some(Protocol::Http1)
        );
        // POST, PUT, PATCH and PROPFIND part from the preface at their second
        // or fourth byte.
        for request in [&b"PO"[..], b"PU", b"PA", b"PROP"] {
            assert_eq!(Protocol::opening_with(request), Some(Protocol::Http1));
        }
        for start in [&b""[..], b"P", b"PRI", b"PRI * HTTP/2.0\r\n"] {
            assert_eq!(Protocol::opening_with(start), None);
        }
        assert_eq!(Protocol::opening_with(HTTP2_PREFACE), Some(Protocol::Http2));
    }
}
