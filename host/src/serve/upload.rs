//! A request's body on its way to the guest ([`Upload`]): bounded by
//! `--max-body-bytes`, timed by a rate floor, and holding an upload place
//! until it has all arrived.
//!
//! Waiting on a client must not cost the capacity a load balancer's health
//! check needs. So:
//!
//! - a request whose body is still arriving holds, besides its place under
//!   `--max-concurrency`, an upload place, of which there are half as many
//!   (`guest/results/slot.rs`): however many clients upload slowly, half the places
//!   are left to requests that wait on no client (`/heartbeat`), and an
//!   upload past them gets the fast 503;
//! - a body slower than the floor is cut (as Apache's mod_reqtimeout does:
//!   after a grace period, each `--min-body-rate` bytes buy a second more),
//!   and the client gets a 408 (or, if the guest's head went out, a response
//!   cut short).
//!
//! The body is not read ahead of the guest: a guest may answer before it
//! has arrived (a 405 for a POST, an echo as it comes), and a client may wait
//! for that answer before it sends the rest.

use crate::guest::results::reply::{Cut, Why};
use crate::guest::results::slot::UploadPlace;
use crate::serve::drain::Drained;
use bytes::Bytes;
use hyper::Version;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::Error as HttpError;

/// The slowest a body may arrive, after a grace period.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Floor {
    /// Bytes a second; 0 turns the floor off.
    pub(crate) rate: u64,
    pub(crate) grace: Duration,
}

/// A request's body as the guest reads it.
pub(crate) struct Upload {
    /// What is still to arrive; `None` once it has all arrived (or if there
    /// was never any).
    rest: Option<Drained<Incoming>>,
    max_bytes: u64,
    received: u64,
    /// Boxed: most requests have no body, and every request's body is
    /// moved into the guest's request.
    timer: Option<Box<Timer>>,
    cut: Option<Cut>,
    place: Option<UploadPlace>,
}

/// When the body must have arrived by, as it goes.
struct Timer {
    started: Instant,
    floor: Floor,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// The deadline for the next bytes, having received `received`: the
    /// grace period, then a second per `rate` bytes.
    fn deadline(&self, received: u64) -> Instant {
        let bought = Duration::from_secs_f64(received as f64 / self.floor.rate as f64);
        self.started + self.floor.grace + bought
    }

    /// Whether the body, still waiting with `received` bytes, is late.
    fn is_late(&mut self, received: u64, cx: &mut Context<'_>) -> bool {
        let deadline = self.deadline(received);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

impl Upload {
    /// `body`, still arriving, bounded by `max_bytes` and timed by `floor`,
    /// read on after the guest is done with it if it came over HTTP/1; `cut`
    /// says why it ended early, if it does.
    pub(crate) fn new(
        body: Incoming,
        version: Version,
        max_bytes: u64,
        floor: Floor,
        cut: Cut,
    ) -> Self {
        let timer = (floor.rate > 0).then(|| {
            Box::new(Timer {
                started: Instant::now(),
                floor,
                sleep: None,
            })
        });
        Self {
            rest: Some(Drained::new(body, version)),
            max_bytes,
            received: 0,
            timer,
            cut: Some(cut),
            place: None,
        }
    }

    /// The body of a request that has none.
    pub(crate) fn none() -> Self {
        Self {
            rest: None,
            max_bytes: 0,
            received: 0,
            timer: None,
            cut: None,
            place: None,
        }
    }

    /// Holds `place` until the body has all arrived.
    pub(crate) fn hold(&mut self, place: UploadPlace) {
        self.place = Some(place);
    }

    /// The next frame of the body.
    fn poll_rest(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let Some(rest) = self.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.received += frame.data_ref().map_or(0, |data| data.len() as u64);
                if self.received > self.max_bytes {
                    return Poll::Ready(Some(Err(self.ended(Why::TooLarge))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => {
                // All arrived: the upload place is free for another.
                self.rest = None;
                self.place = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let received = self.received;
                if self
                    .timer
                    .as_mut()
                    .is_some_and(|timer| timer.is_late(received, cx))
                {
                    return Poll::Ready(Some(Err(self.ended(Why::TooSlow))));
                }
                Poll::Pending
            }
        }
    }

    /// Ends the body early for `why`: the error the guest's read gets.
    fn ended(&mut self, why: Why) -> HttpError {
        if let Some(cut) = &self.cut {
            cut.cut(why);
        }
        self.timer = None;
        self.place = None;
        match why {
            Why::TooLarge => HttpError::HttpRequestBodySize(Some(self.max_bytes)),
            Why::TooSlow => HttpError::ConnectionReadTimeout,
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.cut.as_ref().is_some_and(Cut::is_cut) {
            return Poll::Ready(None);
        }
        self.poll_rest(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.rest
            .as_ref()
            .map(Body::size_hint)
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}
