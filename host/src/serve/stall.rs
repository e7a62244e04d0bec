//! A client that stops reading is cut off: a connection whose writes make no
//! progress for `--write-timeout` fails with a timeout, so hyper closes it
//! and drops what it held (the response body, and with it the guest's side
//! of it, the guest's place under `--max-concurrency`).
//!
//! Without it, a client that asks for a large response and never reads it
//! holds its connection, the response's buffers and, while the guest still
//! writes, an instance: hyper has no write timeout, and the kernel's send
//! buffer only fills.

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// An I/O stream whose writes may wait at most `timeout` for progress.
pub(crate) struct Stalled<I> {
    io: I,
    timeout: Duration,
    /// Armed while a write waits; gone once it makes progress.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<I> Stalled<I> {
    pub(crate) fn new(io: I, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            waiting: None,
        }
    }

    /// What a write's `polled` outcome comes to: progress disarms the
    /// timer; waiting arms it, and fails once it has waited too long.
    fn judge<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if waiting.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.waiting = None;
        tracing::debug!("the client stopped reading for {timeout:?}: connection closed");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no progress writing for {timeout:?}"),
        )))
    }
}

impl<I: Read + Unpin> Read for Stalled<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for Stalled<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.judge(polled, cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.judge(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.judge(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.judge(polled, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A write into a pipe nobody reads fails after the timeout; one that
    /// waits less, because the other end read, goes on.
    #[tokio::test]
    async fn a_write_that_waits_too_long_fails_and_progress_resets_the_wait() {
        use tokio::io::AsyncReadExt as _;
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut stalled = Stalled::new(TokioIo::new(ours), Duration::from_millis(100));
        let chunk = [0u8; 64];
        let written =
            std::future::poll_fn(|cx| Pin::new(&mut stalled).poll_write(cx, &chunk)).await;
        assert_eq!(written.ok(), Some(64));
        // The pipe is full; it is read 60 ms later, within the timeout.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut buf = [0u8; 64];
            let _ = theirs.read_exact(&mut buf).await;
            theirs
        });
        let written =
            std::future::poll_fn(|cx| Pin::new(&mut stalled).poll_write(cx, &chunk)).await;
        assert_eq!(written.ok(), Some(64));
        let theirs = reader.await.expect("the reader");
        let started = std::time::Instant::now();
        let failed = std::future::poll_fn(|cx| Pin::new(&mut stalled).poll_write(cx, &chunk))
            .await
            .expect_err("a stalled write");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(theirs);
    }
}
