//! The guest's stdout and stderr, sent to the log one line at a time (target
//! `guest`). A line is logged within the span of the request being served, so
//! it carries that request's id, method and path.

use crate::span;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line kept whole; a guest that never ends its line cannot make
/// the host hold more than this.
const MAX_LINE: usize = 64 * 1024;

/// A guest's stdout or stderr.
#[derive(Clone, Copy)]
pub(crate) struct GuestOutput {
    stream: &'static str,
}

impl GuestOutput {
    pub(crate) fn new(stream: &'static str) -> Self {
        Self { stream }
    }

    fn logger(self) -> LineLogger {
        LineLogger {
            output: self,
            lines: Lines::default(),
        }
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

/// One stream of one instance, logging its lines.
struct LineLogger {
    output: GuestOutput,
    lines: Lines,
}

impl LineLogger {
    fn write(&mut self, bytes: &[u8]) {
        let stream = self.output.stream;
        self.lines.push(bytes, |line| log(stream, line));
    }

    fn flush_partial(&mut self) {
        let stream = self.output.stream;
        self.lines.finish(|line| log(stream, line));
    }
}

fn log(stream: &'static str, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    span::log(|| tracing::info!(target: "guest", stream, "{text}"));
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
        LineLogger::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        LineLogger::write(&mut self, bytes);
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
