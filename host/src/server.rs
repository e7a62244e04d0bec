//! Serving a listener: the accept loop, HTTP/1.1 connections with their
//! timeouts and size limits, and the graceful drain. The replica's port and
//! the metrics port are both served by [`serve`].

use crate::shutdown::Stop;
use anyhow::Result;
use futures::FutureExt as _;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use replica_config::Config;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Binds `addr`, saying what to do when it cannot. `flag` is the setting
/// that chooses the address.
pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!(
                    "it is already in use; stop the other server or pass {flag} to choose another"
                )
            }
            std::io::ErrorKind::PermissionDenied => {
                format!("permission denied; use a port above 1023 or pass {flag} to choose another")
            }
            _ => format!("pass {flag} to choose another address"),
        };
        anyhow::Error::new(e).context(format!("cannot listen on {addr}: {hint}"))
    })
}

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

/// Serves `listener` with `service` until `stop` says to drain; then stops
/// accepting (serving the connections the kernel had already queued) and
/// lets in-flight requests finish for up to the grace period, or until
/// `stop` says to end at once. Returns whether every connection finished.
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
    let graceful = GracefulShutdown::new();
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
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection closed with an error: {e}");
            }
        });
    };

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => serve_connection(stream, peer),
                Err(e) => {
                    // Typically out of file descriptors: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = stop.draining() => break,
        }
    }
    // Connections the kernel has already accepted are served too, not reset.
    while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        serve_connection(stream, peer);
    }
    drop(listener);

    let grace = settings.grace;
    tokio::select! {
        () = graceful.shutdown() => true,
        () = tokio::time::sleep(grace) => {
            tracing::warn!("grace period of {grace:?} over; exiting with requests in flight");
            false
        }
        () = stop.now() => false,
    }
}
