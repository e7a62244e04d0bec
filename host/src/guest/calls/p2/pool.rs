//! Instances of a wasi:http 0.2 component kept warm between requests.
//!
//! An instance that served a request without failing goes back to the pool and
//! serves the next one, up to `--max-instance-reuse` requests and while it has
//! been idle less than `--idle-instance-timeout`. An instance whose request
//! failed (a trap, a timeout) is dropped, never reused. With a reuse of 1
//! every request gets a fresh instance (strict mode). A pool serves one loaded
//! component; a hot swap starts a new pool, and the old one goes with the last
//! request that still uses it.
//!
//! Why not upstream's `wasmtime_wasi_http::handler::ProxyHandler`, which
//! reuses instances too, and which this host does use for 0.3 components
//! (`p3/`): it drives every call through wasmtime's concurrent call
//! machinery, which needs an engine with concurrency support, and that puts
//! bookkeeping on every host call (3.3% more instructions per request,
//! measured with callgrind; before, with the feature compiled out entirely,
//! 67k against 85k requests/s). A 0.2 guest serves one request at a time
//! anyway, so a stack of idle instances is all it needs. Should concurrency
//! support cost nothing when a guest does not use it, this pool should give
//! way to `ProxyHandler`.

use crate::guest::calls::reuse::Reuse;
use crate::guest::sandbox::{self, Host, Sandbox};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Child;
use opentelemetry::Context as TraceContext;
use opentelemetry::trace::SpanKind;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

/// An instantiated guest and the store it lives in.
pub(crate) struct Instance {
    pub(crate) store: Store<Host>,
    pub(crate) proxy: Proxy,
    served: u32,
}

pub(crate) struct Pool {
    pre: ProxyPre<Host>,
    sandbox: Arc<Sandbox>,
    metrics: Metrics,
    reuse: Reuse,
    shelf: Mutex<Shelf<Instance>>,
}

impl Pool {
    pub(crate) fn new(
        pre: ProxyPre<Host>,
        sandbox: Arc<Sandbox>,
        reuse: Reuse,
        metrics: Metrics,
    ) -> Self {
        Self {
            pre,
            sandbox,
            metrics,
            reuse,
            shelf: Mutex::new(Shelf::default()),
        }
    }

    /// The most recently used idle instance that is still fresh, or a new
    /// one (its instantiation a span under `trace`, if given).
    pub(crate) async fn take(&self, trace: Option<&TraceContext>) -> wasmtime::Result<Instance> {
        // A stale instance is dropped after the lock is released.
        while let Some(idle) = self.shelf().pop() {
            if idle.is_fresh(self.reuse.idle_timeout, Instant::now()) {
                return Ok(idle.item);
            }
        }
        let _span = Child::under(trace, SpanKind::Internal, || Cow::Borrowed("instantiate"));
        let started = Instant::now();
        let mut store = sandbox::new_store(self.pre.engine(), &self.sandbox);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        self.metrics.instantiated(started.elapsed());
        Ok(Instance {
            store,
            proxy,
            served: 0,
        })
    }

    /// Returns an instance whose request succeeded; it is kept for the next
    /// request unless it has served its share, holds half its memory budget
    /// or more, or enough are idle already.
    pub(crate) fn put_back(&self, mut instance: Instance) {
        instance.served += 1;
        // Past its memory budget, or holding half of it, it goes (and gives
        // its memory back).
        if instance.served < self.reuse.max_requests && !instance.store.data_mut().is_heavy() {
            let mut shelf = self.shelf();
            if shelf.idle.len() < self.reuse.max_idle {
                shelf.push(instance, Instant::now());
            }
        }
    }

    /// Drops instances idle for longer than the idle timeout, freeing their
    /// memory; called periodically.
    pub(crate) fn sweep(&self) {
        let stale = self
            .shelf()
            .take_stale(self.reuse.idle_timeout, Instant::now());
        drop(stale);
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf<Instance>> {
        // The lock guards a plain Vec with no invariant a panic could break.
        self.shelf
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Idle items, each with when it went idle; the most recently used is taken
/// first, the longest idle swept first.
struct Shelf<T> {
    /// Oldest first: pushed and popped at the end.
    idle: Vec<Idle<T>>,
}

impl<T> Default for Shelf<T> {
    fn default() -> Self {
        Self { idle: Vec::new() }
    }
}

struct Idle<T> {
    item: T,
    since: Instant,
}

impl<T> Idle<T> {
    /// Idle for less than `timeout`.
    fn is_fresh(&self, timeout: Duration, now: Instant) -> bool {
        now.saturating_duration_since(self.since) < timeout
    }
}

impl<T> Shelf<T> {
    fn push(&mut self, item: T, now: Instant) {
        self.idle.push(Idle { item, since: now });
    }

    fn pop(&mut self) -> Option<Idle<T>> {
        self.idle.pop()
    }

    /// Takes those idle for `timeout` or longer (all at the front).
    fn take_stale(&mut self, timeout: Duration, now: Instant) -> Vec<Idle<T>> {
        let fresh_from = self
            .idle
            .iter()
            .position(|i| now.saturating_duration_since(i.since) < timeout)
            .unwrap_or(self.idle.len());
        self.idle.drain(..fresh_from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn items(shelf: &[Idle<&'static str>]) -> Vec<&'static str> {
        shelf.iter().map(|i| i.item).collect()
    }

    #[test]
    fn the_most_recently_used_is_taken_first() {
        let now = Instant::now();
        let mut shelf = Shelf::default();
        shelf.push("old", now);
        shelf.push("new", now + Duration::from_secs(1));
        assert_eq!(shelf.pop().map(|i| i.item), Some("new"));
        assert_eq!(shelf.pop().map(|i| i.item), Some("old"));
        assert!(shelf.pop().is_none());
    }

    #[test]
    fn an_item_idle_for_the_timeout_is_no_longer_fresh() {
        let now = Instant::now();
        let idle = Idle {
            item: (),
            since: now,
        };
        assert!(idle.is_fresh(TIMEOUT, now + Duration::from_secs(9)));
        assert!(!idle.is_fresh(TIMEOUT, now + TIMEOUT));
    }

    #[test]
    fn a_sweep_takes_the_stale_and_keeps_the_fresh_in_order() {
        let now = Instant::now();
        let mut shelf = Shelf::default();
        shelf.push("a", now);
        shelf.push("b", now + Duration::from_secs(5));
        shelf.push("c", now + Duration::from_secs(8));
        let stale = shelf.take_stale(TIMEOUT, now + Duration::from_secs(15));
        assert_eq!(items(&stale), ["a", "b"]);
        assert_eq!(items(&shelf.idle), ["c"]);
        assert!(shelf.take_stale(TIMEOUT, now).is_empty());
    }
}
