//! The accept loop, HTTP/1.1 connections, and graceful shutdown.

use crate::handler::Handler;
use anyhow::{Context as _, Result};
use futures::FutureExt as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

/// Binds `addr`, saying what to do when it cannot.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "it is already in use; stop the other server or pass --addr to choose another"
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied; use a port above 1023 or pass --addr to choose another"
            }
            _ => "pass --addr to choose another address",
        };
        anyhow::Error::new(e).context(format!("cannot listen on {addr}: {hint}"))
    })
}

/// How connections are served.
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

/// Serves until SIGTERM or SIGINT, then stops accepting and lets in-flight
/// requests finish for up to the grace period. A second signal ends the wait
/// at once.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    settings: Settings,
) -> Result<()> {
    let mut signals = Signals::new()?;
    let addr = listener
        .local_addr()
        .context("cannot read the bound address")?;
    // One stable line, on stdout, that scripts and tests wait for. A closed
    // stdout costs the line, not the server.
    announce(&format!("listening on http://{addr}"));

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
        let handler = handler.clone();
        let service = service_fn(move |req| handler.clone().handle(req));
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
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
            signal = signals.next() => {
                tracing::info!("{signal} received: draining for up to {:?}", settings.grace);
                break;
            }
        }
    }
    // Connections the kernel has already accepted are served too, not reset.
    while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
        serve_connection(stream, peer);
    }
    drop(listener);

    let grace = settings.grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained; exiting"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period of {grace:?} over; exiting with requests in flight"),
        signal = signals.next() => tracing::warn!("second {signal}: exiting without waiting"),
    }
    Ok(())
}

/// Prints a line on stdout; a stdout that cannot be written to is logged,
/// never a panic (as `println!` would be).
pub(crate) fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!("cannot write to stdout ({e}): {line}");
    }
}

/// SIGTERM (what `docker stop` sends) and SIGINT (Ctrl-C).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
