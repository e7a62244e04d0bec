//! The replica's listening sockets: one per worker, all on one port
//! (`SO_REUSEPORT`), so that the kernel spreads new connections over the
//! workers and each accepts its own without waking another.
//!
//! Closing a listening socket resets the connections the kernel queued on it
//! and the host has not accepted yet; with clients connecting all the time,
//! some always arrive between the last `accept` and the close. So a socket is
//! closed in two steps ([`refuse_new`], then [`SETTLE`] later the close): first
//! its new connection requests are dropped (a classic BPF filter on the
//! socket: a SYN without ACK), while the handshakes under way complete and are
//! accepted; then it is closed with an empty queue. A client that tried to
//! connect meanwhile retries its SYN (after a second) and is refused: it never
//! sees a connection that is accepted and then reset.

use anyhow::{Context as _, Result};
use socket2::{Domain, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// Connections the kernel may queue per socket before the host accepts them.
const BACKLOG: i32 = 1024;

/// Binds `count` sockets to `addr` as one group (the first one fixes the
/// port when `addr` asks for any), saying what to do when it cannot. `flag`
/// is the setting that chooses the address.
pub(crate) fn bind(addr: SocketAddr, count: usize, flag: &str) -> Result<Vec<TcpListener>> {
    let failed = |e: std::io::Error| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "it is already in use; stop the other server or pass {flag} to choose another"
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("permission denied; use a port above 1023 or pass {flag} to choose another")
            }
            _ => format!("pass {flag} to choose another address"),
        };
        anyhow::Error::new(e).context(format!("cannot listen on {addr}: {hint}"))
    };
    // SO_REUSEPORT would let this host share a port with another server of
    // the same user that also asked for it: refuse a port in use first.
    if addr.port() != 0 {
        drop(TcpListener::bind(addr).map_err(failed)?);
    }
    let first = reuse_port_socket(addr).map_err(failed)?;
    let bound = first
        .local_addr()
        .context("cannot read the bound address")?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(reuse_port_socket(bound).map_err(failed)?);
    }
    Ok(listeners)
}

fn reuse_port_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std's own listeners: a restarted host rebinds at once.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// How long a socket that refuses new connections stays open, accepting
/// those whose handshake had begun, before it closes.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// Drops every new connection request (a TCP segment with SYN and without ACK)
/// that reaches `listener`; segments that complete a handshake pass. Best
/// effort: where the kernel refuses the filter, a connection arriving just as
/// the socket closes may be reset.
pub(crate) fn refuse_new(listener: &tokio::net::TcpListener) {
    use socket2::{SockFilter, SockRef};
    // The filter sees the TCP header: byte 13 holds its flags.
    const LOAD_FLAGS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JUMP_IF_SET: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
    const RETURN: u16 = 0x06; // BPF_RET | BPF_K
    const ACK: u32 = 0x10;
    let program = [
        SockFilter::new(LOAD_FLAGS, 0, 0, 13),
        // With ACK: part of a handshake (or later), let it through.
        SockFilter::new(JUMP_IF_SET, 1, 0, ACK),
        SockFilter::new(RETURN, 0, 0, 0),
        SockFilter::new(RETURN, 0, 0, u32::MAX),
    ];
    if let Err(e) = SockRef::from(listener).attach_filter(&program) {
        tracing::warn!("cannot refuse new connections before closing a listener: {e}");
    }
}
