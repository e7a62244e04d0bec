//! Logs: text or JSON lines on stderr through `tracing`, filtered by RUST_LOG;
//! the access log (target `access`); and the guest's stdout and stderr, line
//! by line, tagged with the request being served (target `guest`).

use replica_config::LogFormat;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tracing_subscriber::EnvFilter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Installs the global subscriber. Without RUST_LOG (or with an empty one):
/// `info`, with the access log off unless asked for.
pub fn init_logging(format: LogFormat, access_log: bool) {
    let default = if access_log {
        "info"
    } else {
        "info,access=off"
    };
    let mut filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| match EnvFilter::try_new(&directives) {
            Ok(filter) => Some(filter),
            Err(e) => {
                eprintln!(
                    "warning: ignoring RUST_LOG={directives:?} ({e}); logging at `{default}`"
                );
                None
            }
        })
        .unwrap_or_else(|| EnvFilter::new(default));
    if access_log && let Ok(directive) = "access=info".parse() {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The request an instance is serving now, shared with its output streams.
pub(crate) type CurrentRequest = Arc<AtomicU64>;

/// A guest's stdout or stderr, sent to the log one line at a time.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    stream: &'static str,
    request: CurrentRequest,
}

impl GuestOutput {
    pub(crate) fn new(stream: &'static str, request: CurrentRequest) -> Self {
        Self { stream, request }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    // A direct stream: the default adapter would start a task per stream, that
    // is, per instance.
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.logger())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.logger())
    }
}

impl GuestOutput {
    fn logger(&self) -> LineLogger {
        LineLogger {
            output: self.clone(),
            partial: Vec::new(),
        }
    }
}

/// Buffers a partial line until its newline, then logs it.
struct LineLogger {
    output: GuestOutput,
    partial: Vec<u8>,
}

impl LineLogger {
    /// Logs every complete line of `bytes` and keeps the rest for later.
    fn push(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end);
            if self.partial.is_empty() {
                self.emit(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.emit(&whole);
            }
            rest = &after[1..];
        }
        // Bound what a guest that never ends its line can make the host hold.
        if self.partial.len() + rest.len() > 64 * 1024 {
            let mut whole = std::mem::take(&mut self.partial);
            whole.extend_from_slice(rest);
            self.emit(&whole);
        } else {
            self.partial.extend_from_slice(rest);
        }
    }

    fn emit(&self, line: &[u8]) {
        let id = self.output.request.load(Ordering::Relaxed);
        let text = String::from_utf8_lossy(line);
        tracing::info!(target: "guest", id, stream = self.output.stream, "{}", text.trim_end_matches('\r'));
    }
}

impl LineLogger {
    /// Logs a last line that never got its newline.
    fn flush_partial(&mut self) {
        if !self.partial.is_empty() {
            let whole = std::mem::take(&mut self.partial);
            self.emit(&whole);
        }
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        self.flush_partial();
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    // Logging never blocks: always ready.
    async fn ready(&mut self) {}
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.flush_partial();
        Poll::Ready(Ok(()))
    }
}
