//! A request that comes without a `traceparent` starts a trace: the
//! configured sampler decides about it before anything else is made, so that
//! a request it drops (most health checks, at a ratio) costs a random id and
//! one call, not a span the SDK builds only to find it unsampled.
//!
//! The SDK's own sampler then sees the same trace id (the SDK asks
//! [`Ids`] for it) and decides the same: every sampler
//! `OTEL_TRACES_SAMPLER` can name decides on the trace id and the parent
//! alone.

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample};
use std::cell::Cell;

thread_local! {
    /// The trace id decided for the root span about to be built on this
    /// thread, taken by the SDK's next call for one.
    static DECIDED: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The SDK's id generator: random ids, but a root span gets the trace id
/// its sampling was decided on.
#[derive(Debug, Default)]
pub(super) struct Ids(RandomIdGenerator);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        DECIDED
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

/// Forgets a decision the SDK did not take (it always does for a root).
pub(super) fn forget() {
    DECIDED.with(|decided| decided.set(None));
}

/// Whether a request without a caller's trace is sampled by `sampler`: if
/// it is, the span built next on this thread gets the trace id decided on.
pub(super) fn sampled(sampler: &dyn ShouldSample, method: &str) -> bool {
    let trace_id = RandomIdGenerator::default().new_trace_id();
    let result = sampler.should_sample(None, trace_id, method, &SpanKind::Server, &[], &[]);
    let sampled = !matches!(result.decision, SamplingDecision::Drop);
    if sampled {
        DECIDED.with(|decided| decided.set(Some(trace_id)));
    }
    sampled
}
