//! What a connection speaks, HTTP/1.1 or HTTP/2 (told apart by what the
//! client sends first; over TLS, chosen by ALPN), and how connections of
//! each are built, with the same limits and the flood defences.

use crate::serve::settings::Settings;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use tokio::net::TcpStream;

/// HTTP/2 streams reset by a client that a connection takes before it is
/// closed: the rapid-reset flood (CVE-2023-44487) opens and cancels streams
/// at once, costing the server work the client never waits for.
const MAX_PENDING_RESETS: usize = 20;

/// HTTP/2 streams this host resets itself (for errors a client provokes)
/// before it closes the connection.
const MAX_LOCAL_RESETS: usize = 64;

/// The opening of every HTTP/2 connection without TLS (RFC 9113, 3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How connections are built: HTTP/1.1 and HTTP/2, with the same limits.
///
/// Not hyper-util's `auto` builder, which tells the two apart for us: the
/// future it makes is sized for either protocol and holds what it read
/// ahead, and with it an idle keep-alive connection (the kind a load
/// balancer holds by the hundred) cost 22.5 KB instead of 14.1 KB.
pub(crate) struct Builders {
    pub(crate) http1: http1::Builder,
    pub(crate) http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub(crate) fn new(settings: Settings) -> Self {
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
pub(crate) enum Protocol {
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
    pub(crate) async fn spoken(stream: &TcpStream) -> Protocol {
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
    pub(crate) fn chosen<I>(stream: &tokio_rustls::server::TlsStream<I>) -> Protocol {
        match stream.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
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
