//! How connections are served: the timeouts and limits every listener
//! applies, from the configuration.

use replica_config::Config;
use std::time::Duration;

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
    /// A connection whose writes make no progress this long is closed.
    pub(crate) write_timeout: Duration,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Self {
            grace: config.shutdown_grace,
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes as usize,
            max_streams: config.max_streams,
            write_timeout: config.write_timeout,
        }
    }
}
