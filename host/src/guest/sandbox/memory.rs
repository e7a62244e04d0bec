//! What one instance may make this host hold: its linear memory, and what
//! its calls leave in the host (wasi:http fields, requests, responses, bodies
//! in flight, outgoing requests, every resource in its table), counted
//! together against `--max-memory-mib`.
//!
//! Upstream bounds each `fields` resource (128 KiB) but not how many there
//! are: a guest that made fields in a loop took a host from 19 MB to 998 MB.
//! Here each instance has a [`Budget`]. Linear memory is counted as it grows
//! (the store's limiter); what the host holds is measured from the resource
//! table, each resource at the most it can hold ([`held`]), and between two
//! measurements every host call is taken to have added the most one call can
//! add ([`PER_HTTP_CALL`], [`PER_CALL`]). A call that could take the instance
//! past its budget is measured for; if the instance is past it, the call and
//! every later one fails (the guest traps), and the instance is never used
//! again: dropped with its store, it gives its memory back.
//!
//! The bound is the budget itself: before a call goes ahead, what is held
//! plus the most that call can add fits in it. (The one thing a call can add
//! beyond that is a string it sets on an outgoing request, a method or a
//! path, counted at the next call.) Measuring is a walk of the table, each
//! resource at a constant cost, and happens only when the estimate nears the
//! budget: for a guest that holds little, once every few hundred calls.

use crate::guest::sandbox::health::Health;
use crate::telemetry::span;
use std::any::Any;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::bindings::http::types::Method;
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
};

/// What a resource costs beyond its contents: its table entry and the boxed
/// object behind it (a pollable or a stream holds a few hundred bytes; this
/// also bounds how many a measurement walks).
pub(crate) const ENTRY: usize = 1024;

/// The largest write into a 0.2 outgoing body (a hook of ours): with one
/// chunk buffered and one more in the channel, a body in flight holds at
/// most twice this.
pub(crate) const BODY_CHUNK: usize = 64 * 1024;

/// What one `fields` may hold (upstream's limit, kept).
const FIELDS: usize = 128 * 1024;

/// What a body in flight can hold: its channel, and the trailers it may end
/// with.
const BODY: usize = 2 * BODY_CHUNK + FIELDS;

/// What an outgoing request in flight may hold: its connection's buffers.
const OUTGOING: usize = 256 * 1024;

/// The most one wasi:http call can add: the largest of a `fields` filled, a
/// body opened and a request sent, and the resources it makes.
pub(crate) const PER_HTTP_CALL: usize = largest(largest(FIELDS, BODY), OUTGOING) + 2 * ENTRY;

const fn largest(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// The most any other call can add: a resource (a pollable, a stream).
pub(crate) const PER_CALL: usize = ENTRY;

/// What the host holds for every instance whatever it does: its WASI
/// context, its output's line buffers.
const BASE: usize = 160 * 1024;

/// One instance's memory: linear and held by the host, against one limit.
pub(crate) struct Budget {
    limit: usize,
    /// Its linear memories' sizes, as the limiter let them grow.
    linear: usize,
    /// At least what the host holds for it: measured, plus what the calls
    /// since could have added.
    charged: usize,
    /// What may be charged before measuring: the limit less linear memory;
    /// 0 once spent. (One compare on every host call.)
    room: usize,
    /// Past its limit: its calls fail from now on.
    spent: bool,
    /// Told when it goes past its limit.
    health: Option<Arc<Health>>,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            linear: 0,
            charged: BASE,
            room: limit,
            spent: false,
            health: None,
        }
    }

    /// Tells `health` when the instance goes past its limit.
    pub(crate) fn report_to(&mut self, health: Arc<Health>) {
        self.health = Some(health);
    }

    /// Whether a call that can add up to `most` may go ahead, measuring what
    /// `table` holds if the estimate says it might not. Once it may not, no
    /// call may.
    #[inline]
    pub(crate) fn call(&mut self, most: usize, table: &mut ResourceTable) -> bool {
        self.charged = self.charged.saturating_add(most);
        if self.charged <= self.room {
            return true;
        }
        self.measure(most, table)
    }

    #[cold]
    fn measure(&mut self, most: usize, table: &mut ResourceTable) -> bool {
        if self.spent {
            return false;
        }
        let held = BASE + held(table);
        self.charged = held.saturating_add(most);
        if self.linear.saturating_add(self.charged) <= self.limit {
            return true;
        }
        self.spent = true;
        self.room = 0;
        if let Some(health) = self.health.take() {
            health.spend();
        }
        let (limit, linear) = (self.limit >> 20, self.linear >> 10);
        span::log(|| {
            tracing::warn!(
                "a guest instance is past --max-memory-mib ({limit} MiB): {linear} KiB of linear \
                 memory, {} KiB held by the host for its resources; its calls fail from now on, \
                 and it is not used again",
                held >> 10,
            )
        });
        false
    }

    /// Whether a linear memory may grow from `current` to `desired` bytes,
    /// measuring what `table` holds if the estimate says it might not.
    pub(crate) fn grow(
        &mut self,
        current: usize,
        desired: usize,
        table: &mut ResourceTable,
    ) -> bool {
        let linear = self.linear.saturating_sub(current).saturating_add(desired);
        if self.spent {
            return false;
        }
        if linear.saturating_add(self.charged) > self.limit {
            self.charged = BASE + held(table);
            if linear.saturating_add(self.charged) > self.limit {
                return false;
            }
        }
        self.linear = linear;
        self.room = self.limit.saturating_sub(linear);
        true
    }

    /// Whether the instance holds more than half its limit (measuring
    /// `table` only if the estimate says it might): between requests, one
    /// that keeps what it made, request after request, is let go before it
    /// fails one.
    pub(crate) fn is_heavy(&mut self, table: &mut ResourceTable) -> bool {
        let half = self.limit / 2;
        if self.spent {
            return true;
        }
        if self.linear.saturating_add(self.charged) <= half {
            return false;
        }
        self.charged = BASE + held(table);
        self.linear.saturating_add(self.charged) > half
    }
}

/// What the resources in `table` make the host hold: each at its contents,
/// or at what it can hold at most where those are out of reach (a body's
/// channel, a request's connection). (`iter_mut` is the table's only way
/// through its entries; nothing is changed.)
pub(crate) fn held(table: &mut ResourceTable) -> usize {
    table.iter_mut().map(|entry| cost(entry)).sum()
}

/// What one resource makes the host hold, at most: each is counted at what
/// it can grow to, so that measuring is a walk of the table, never of each
/// resource's contents (a `fields` counts as full, a body in flight as its
/// channel and trailers, an outgoing request as its connection's buffers,
/// with the strings a request carries). An incoming request is the host's
/// own, within the request limits; the `fields` of its headers that a guest
/// asks for count as any other.
fn cost(entry: &(dyn Any + Send)) -> usize {
    let contents = if entry.is::<FieldMap>() {
        FIELDS
    } else if let Some(response) = entry.downcast_ref::<HostOutgoingResponse>() {
        FIELDS + if response.body.is_some() { BODY } else { 0 }
    } else if let Some(request) = entry.downcast_ref::<HostOutgoingRequest>() {
        FIELDS
            + match &request.method {
                Method::Other(method) => method.len(),
                _ => 0,
            }
            + request.authority.as_ref().map_or(0, String::len)
            + request.path_with_query.as_ref().map_or(0, String::len)
            + if request.body.is_some() { BODY } else { 0 }
    } else if entry.is::<HostOutgoingBody>() {
        BODY
    } else if entry.is::<HostIncomingResponse>() || entry.is::<HostFutureIncomingResponse>() {
        OUTGOING
    } else if let Some(request) = entry.downcast_ref::<wasmtime_wasi_http::p3::Request>() {
        FIELDS
            + request.method.as_str().len()
            + request.authority.as_ref().map_or(0, |a| a.as_str().len())
            + request
                .path_with_query
                .as_ref()
                .map_or(0, |p| p.as_str().len())
    } else if entry.is::<wasmtime_wasi_http::p3::Response>() {
        FIELDS
    } else {
        0
    };
    ENTRY + contents
}
