//! The guest's stdout and stderr, sent to the log one line at a time (target
//! `guest`). A line is logged within the span of the request being served, so
//! it carries that request's id, method and path.
//!
//! Each stream of an instance keeps one line buffer, whatever handles the
//! guest writes through: many toolchains ask for a new stdout or stderr
//! handle for every `print!`, and a line written in six pieces through six
//! handles is still one line. A last line left without its newline is logged
//! when the request ends ([`Output::flush`]) or the instance goes. What a line
//! holds is escaped as the log format needs (`logging::escaped`): a guest
//! cannot forge a line of the host's.

use crate::telemetry::{logging, span};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line kept whole; a guest that never ends its line cannot make
/// the host hold more than this.
const MAX_LINE: usize = 64 * 1024;

/// One instance's stdout and stderr.
#[derive(Clone)]
pub(crate) struct Output(Arc<Streams>);

struct Streams {
    stdout: Mutex<Lines>,
    stderr: Mutex<Lines>,
    /// Whether anything was written since the last flush: most requests
    /// print nothing, and their flush then takes no lock.
    written: AtomicBool,
}

impl Output {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Streams {
            stdout: Mutex::default(),
            stderr: Mutex::default(),
            written: AtomicBool::new(false),
        }))
    }

    pub(crate) fn stdout(&self) -> GuestOutput {
        GuestOutput {
            stream: Stream::Stdout,
            output: self.clone(),
        }
    }

    pub(crate) fn stderr(&self) -> GuestOutput {
        GuestOutput {
            stream: Stream::Stderr,
            output: self.clone(),
        }
    }

    /// Logs the last line of each stream if it is still unterminated: the
    /// request that wrote it is over.
    pub(crate) fn flush(&self) {
        self.0.flush();
    }
}

impl Streams {
    fn lines(&self, stream: Stream) -> std::sync::MutexGuard<'_, Lines> {
        let lines = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        // A line buffer has no invariant a panic could break.
        lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        self.written.store(true, Ordering::Relaxed);
        self.lines(stream).push(bytes, |line| log(stream, line));
    }

    fn flush(&self) {
        if !self.written.swap(false, Ordering::Relaxed) {
            return;
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.lines(stream).finish(|line| log(stream, line));
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        self.flush();
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A guest's stdout or stderr, as WASI hands it out: every handle writes into
/// its instance's one buffer for that stream.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    stream: Stream,
    output: Output,
}

impl GuestOutput {
    fn write(&self, bytes: &[u8]) {
        self.output.0.write(self.stream, bytes);
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
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Splits bytes written in any pieces into lines, without their `\n` (or
/// `\r\n`), cutting a line that grows past [`MAX_LINE`].
#[derive(Default)]
struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Hands every line that `bytes` completes to `emit`, keeping the rest.
    fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, after) = rest.split_at(end);
            if self.partial.is_empty() {
                emit(trim_cr(line));
            } else {
                self.partial.extend_from_slice(line);
                emit(trim_cr(&std::mem::take(&mut self.partial)));
            }
            rest = &after[1..];
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() > MAX_LINE {
            emit(&std::mem::take(&mut self.partial));
        }
    }

    /// Hands over a last line that never got its newline.
    fn finish(&mut self, emit: impl FnOnce(&[u8])) {
        if !self.partial.is_empty() {
            emit(trim_cr(&std::mem::take(&mut self.partial)));
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn log(stream: Stream, line: &[u8]) {
    let lossy = String::from_utf8_lossy(line);
    let text = logging::escaped(&lossy);
    let stream = stream.name();
    span::log(|| tracing::info!(target: "guest", stream, "{text}"));
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    // Logging never blocks: always ready.
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    // A stream's end is not its line's: the guest may go on writing the line
    // through another stream.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `writes` make, then what `finish` hands over.
    fn split(writes: &[&[u8]]) -> Vec<String> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for bytes in writes {
            lines.push(bytes, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        lines.finish(|l| out.push(String::from_utf8_lossy(l).into_owned()));
        out
    }

    #[test]
    fn one_write_may_hold_several_lines() {
        assert_eq!(split(&[b"a\nb\n"]), ["a", "b"]);
    }

    #[test]
    fn a_line_may_come_in_several_writes() {
        assert_eq!(
            split(&[b"hel", b"lo", b" world\nnext"]),
            ["hello world", "next"]
        );
    }

    #[test]
    fn carriage_returns_before_newlines_are_dropped() {
        assert_eq!(split(&[b"dos\r\n", b"split\r", b"\n"]), ["dos", "split"]);
    }

    #[test]
    fn empty_lines_are_kept_and_nothing_pending_adds_none() {
        assert_eq!(split(&[b"\n\n"]), ["", ""]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn an_endless_line_is_cut_at_the_limit() {
        let long = vec![b'x'; MAX_LINE + 10];
        let out = split(&[&long, b"tail\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE + 10);
        assert_eq!(out[1], "tail");
    }
}
