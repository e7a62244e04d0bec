//! Serving a listener: the accept loop, connections in HTTP/1.1 or HTTP/2
//! (told apart by what the client sends first; over TLS, offered by ALPN),
//! their timeouts and limits, and the graceful drain. Each worker's socket on
//! the replica's port and the metrics port are all served by [`serve`].

use crate::listeners;
use crate::shutdown::Stop;
use crate::tls::Tls;
use futures::FutureExt as _;
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use replica_config::Config;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
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

/// How connections are built: HTTP/1.1 and HTTP/2, with the same limits.
fn builder(settings: Settings) -> auto::Builder<TokioExecutor> {
    let header_cap = settings.max_header_bytes.saturating_mul(4);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        // The head of a request must fit in the read buffer: its bound is
        // the header limit (hyper's floor for it is 8 KiB).
        .max_buf_size(header_cap.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams)
        .max_header_list_size(u32::try_from(header_cap).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_RESETS)
        // A peer that stops answering pings is gone.
        .keep_alive_interval(settings.header_read_timeout)
        .keep_alive_timeout(settings.header_read_timeout);
    builder
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
    mut stop: Stop,
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
    let builder = Arc::new(builder(settings));
    // What each connection watches; `stop` is the accept loop's own.
    let drain = stop.clone();
    let serve_connection = |stream: TcpStream, peer: SocketAddr| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let asked = Asked::default();
        let service = Marking {
            inner: service.clone(),
            asked: asked.clone(),
        };
        let (builder, drain) = (builder.clone(), drain.clone());
        let idle = settings.header_read_timeout;
        // Two kinds of task, so that a plain connection's is not sized for TLS.
        let Some(tls) = tls.clone() else {
            let io = TokioIo::new(stream);
            connections.spawn(async move {
                until_drained(&builder, io, service, asked, drain, idle, peer).await;
            });
            return;
        };
        connections.spawn(async move {
            let handshake = tokio::time::timeout(idle, tls.acceptor().accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let io = TokioIo::new(stream);
                    until_drained(&builder, io, service, asked, drain, idle, peer).await;
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

/// Serves one connection, in HTTP/1.1 or HTTP/2 as the client speaks. It is
/// closed (gracefully: what is in flight finishes; in HTTP/2, with a GOAWAY)
/// when it has started no request for `idle`, or once the drain starts. A
/// connection that has not asked anything yet when the drain starts is first
/// given its request (within `idle`): the kernel accepted it and its client
/// is sending a request, or has sent it already.
async fn until_drained<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: Marking<S>,
    asked: Asked,
    mut stop: Stop,
    idle: Duration,
    peer: SocketAddr,
) where
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
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut seen = asked.count();
    loop {
        tokio::select! {
            served = conn.as_mut() => return closed(served, peer),
            () = stop.draining() => break,
            () = tokio::time::sleep(idle) => {
                let now = asked.count();
                if now == seen {
                    conn.as_mut().graceful_shutdown();
                    return closed(conn.await, peer);
                }
                seen = now;
            }
        }
    }
    if asked.count() == 0 {
        tokio::select! {
            served = conn.as_mut() => return closed(served, peer),
            () = asked.first() => {}
            () = tokio::time::sleep(idle) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    closed(conn.await, peer);
}

fn closed(served: Result<(), Box<dyn std::error::Error + Send + Sync>>, peer: SocketAddr) {
    if let Err(e) = served {
        tracing::debug!(%peer, "connection closed with an error: {e}");
    }
}

/// How many requests a connection has been asked, and a wake-up on the first.
#[derive(Clone, Default)]
struct Asked(Arc<AskedState>);

#[derive(Default)]
struct AskedState {
    count: AtomicU64,
    first: Notify,
}

impl Asked {
    fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// Counts a request; wakes whoever waits for the first.
    fn mark(&self) {
        if self.0.count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.0.first.notify_one();
        }
    }

    async fn first(&self) {
        self.0.first.notified().await;
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
