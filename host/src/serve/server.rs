//! Serving a listener: the accept loop and the graceful drain. Each worker's
//! socket on the replica's port and the metrics port are all served by
//! [`serve`]; each connection, once accepted, by `connection.rs`.

use crate::serve::connection::{self, Asked, Watch};
use crate::serve::listeners;
use crate::serve::protocol::{Builders, Protocol};
use crate::serve::settings::Settings;
use crate::serve::shutdown::Stop;
use crate::serve::stall::Stalled;
use crate::serve::tls::Tls;
use futures::FutureExt as _;
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

/// A connection, as the service made for it knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conn {
    /// The address it came in on.
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
}

/// Serves `listener` with the service `serving` makes for each connection
/// ([`Conn`]), over TLS when `tls` is given, until
/// `stop` says to drain; then refuses new connections, serves those the
/// kernel had already taken (see listeners.rs), closes the socket, and lets
/// in-flight requests finish for up to the grace period, or until `stop` says
/// to end at once. Returns whether every connection finished.
pub(crate) async fn serve<M, S, B>(
    listener: TcpListener,
    serving: M,
    settings: Settings,
    tls: Option<Arc<Tls>>,
    stop: Stop,
) -> bool
where
    M: Fn(Conn) -> S,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
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
        let conn = Conn {
            local: stream.local_addr().unwrap_or(peer),
            peer,
            tls: tls.is_some(),
        };
        let service = serving(conn);
        let builders = builders.clone();
        let idle = settings.header_read_timeout;
        let write_timeout = settings.write_timeout;
        // One window for the first request, from the accept: the look at
        // its first bytes (or the TLS handshake) and the read of its head.
        let first_by = tokio::time::Instant::now() + idle;
        let watch = Watch {
            asked: Asked::default(),
            stop: drain.clone(),
            idle,
            first_by,
            peer,
        };
        // Two kinds of task, so that a plain connection's is not sized for TLS.
        let Some(tls) = tls.clone() else {
            connections.spawn(async move {
                let Ok(protocol) =
                    tokio::time::timeout_at(first_by, Protocol::spoken(&stream)).await
                else {
                    tracing::debug!(%peer, "nothing sent in {idle:?}");
                    return;
                };
                let io = Stalled::new(TokioIo::new(stream), write_timeout);
                connection::serve_in(protocol, &builders, io, service, watch).await;
            });
            return;
        };
        connections.spawn(async move {
            let handshake = tokio::time::timeout_at(first_by, tls.acceptor().accept(stream));
            match handshake.await {
                Ok(Ok(stream)) => {
                    let protocol = Protocol::chosen(&stream);
                    let io = Stalled::new(TokioIo::new(stream), write_timeout);
                    connection::serve_in(protocol, &builders, io, service, watch).await;
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
