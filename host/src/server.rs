//! Serving a listener: the accept loop, HTTP/1.1 connections with their
//! timeouts and size limits, and the graceful drain. Each worker's socket on
//! the replica's port and the metrics port are all served by [`serve`].

use crate::listeners;
use crate::shutdown::Stop;
use futures::FutureExt as _;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use replica_config::Config;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

/// How connections are served.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// After SIGTERM/SIGINT, how long in-flight requests may take.
    pub(crate) grace: Duration,
    /// Slowloris guard, and the idle keep-alive timeout: hyper times both
    /// from when it starts waiting for a request's head.
    pub(crate) header_read_timeout: Duration,
    /// The handler answers past this with a JSON 431; hyper itself cuts off
    /// (with a bare 431) at four times this.
    pub(crate) max_header_bytes: usize,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Self {
            grace: config.shutdown_grace,
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes as usize,
        }
    }
}

/// Serves `listener` with `service` until `stop` says to drain; then refuses
/// new connections, serves those the kernel had already taken (see
/// listeners.rs), closes the socket, and lets in-flight requests finish for
/// up to the grace period, or until `stop` says to end at once. Returns
/// whether every connection finished.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    settings: Settings,
    mut stop: Stop,
) -> bool
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connections = TaskTracker::new();
    // What each connection watches; `stop` is the accept loop's own.
    let drain = stop.clone();
    let hyper_header_cap = settings.max_header_bytes.saturating_mul(4);
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(hyper_header_cap)
        .max_buf_size(hyper_header_cap.max(64 * 1024));
    let serve_connection = |stream: TcpStream, peer: SocketAddr| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        let asked = Asked::default();
        let service = Marking {
            inner: service.clone(),
            asked: asked.clone(),
        };
        let conn = http.serve_connection(TokioIo::new(stream), service);
        connections.spawn(until_drained(conn, asked, drain.clone(), peer));
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

/// Serves one connection; once the drain starts, lets it finish the request
/// it is serving and closes it. A connection that has not yet asked anything
/// is first given its request (bounded by the header read timeout): hyper
/// would close it as idle, though the kernel accepted it and its client is
/// sending a request, or has sent it already.
async fn until_drained<S, B>(
    conn: http1::Connection<TokioIo<TcpStream>, Marking<S>>,
    asked: Asked,
    mut stop: Stop,
    peer: SocketAddr,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stop.draining() => {
            if !asked.yet() {
                tokio::select! {
                    served = conn.as_mut() => return closed(served, peer),
                    () = asked.wait() => {}
                }
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    closed(served, peer);
}

fn closed(served: hyper::Result<()>, peer: SocketAddr) {
    if let Err(e) = served {
        tracing::debug!(%peer, "connection closed with an error: {e}");
    }
}

/// Whether a connection has been asked a request yet, and a wake-up when it is.
#[derive(Clone, Default)]
struct Asked(Arc<AskedState>);

#[derive(Default)]
struct AskedState {
    yet: AtomicBool,
    wake: Notify,
}

impl Asked {
    fn yet(&self) -> bool {
        self.0.yet.load(Ordering::Acquire)
    }

    /// Marks the connection as asked; cheap after the first request.
    fn mark(&self) {
        if !self.0.yet.load(Ordering::Relaxed) && !self.0.yet.swap(true, Ordering::AcqRel) {
            self.0.wake.notify_one();
        }
    }

    async fn wait(&self) {
        self.0.wake.notified().await;
    }
}

/// A service that marks its connection as asked on its first request.
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
