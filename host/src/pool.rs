//! Guest instances kept warm between requests.
//!
//! An instance that served a request without failing goes back to the pool and
//! serves the next one, up to `--max-instance-reuse` requests and while it has
//! been idle less than `--idle-instance-timeout`. An instance whose request
//! failed (a trap, a timeout) is dropped, never reused. With a reuse of 1
//! every request gets a fresh instance (strict mode).
//!
//! The component can be replaced while serving ([`Pool::replace`]): requests
//! already running finish on the old component's instances, which are then
//! dropped; every request that starts afterwards gets the new one.
//!
//! Why not upstream's `wasmtime_wasi_http::handler::ProxyHandler`, which
//! reuses instances too: it drives every call through wasmtime's concurrent
//! call machinery, which needs wasmtime's `component-model-async` feature.
//! Compiled in, that feature put bookkeeping on every host call; leaving it
//! out took the default mode from 67k to 85k requests/s. A wasi:http 0.2 guest
//! serves one request at a time anyway, so a stack of idle instances is all
//! it needs. Should that machinery cost nothing when a guest does not use it,
//! this pool should give way to `ProxyHandler`.

use crate::metrics::Metrics;
use crate::sandbox::{self, Host, Sandbox};
use replica_config::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

/// How long and how often an instance may be reused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reuse {
    /// Requests one instance serves; 1 in strict mode.
    pub(crate) max_requests: u32,
    pub(crate) idle_timeout: Duration,
}

impl From<&Config> for Reuse {
    fn from(config: &Config) -> Self {
        Self {
            max_requests: config.instance_reuse(),
            idle_timeout: config.idle_instance_timeout,
        }
    }
}

/// An instantiated guest and the store it lives in.
pub(crate) struct Instance {
    pub(crate) store: Store<Host>,
    pub(crate) proxy: Proxy,
    served: u32,
    generation: u64,
}

/// One loaded component; the number grows with every replacement.
struct Generation {
    pre: ProxyPre<Host>,
    number: u64,
}

pub(crate) struct Pool {
    current: RwLock<Arc<Generation>>,
    /// `current`'s number, readable without the lock on the reuse path.
    generation: AtomicU64,
    sandbox: Sandbox,
    metrics: Metrics,
    reuse: Reuse,
    shelf: Mutex<Shelf<Instance>>,
}

impl Pool {
    pub(crate) fn new(
        pre: ProxyPre<Host>,
        sandbox: Sandbox,
        reuse: Reuse,
        metrics: Metrics,
    ) -> Self {
        Self {
            current: RwLock::new(Arc::new(Generation { pre, number: 0 })),
            generation: AtomicU64::new(0),
            sandbox,
            metrics,
            reuse,
            shelf: Mutex::new(Shelf::default()),
        }
    }

    /// The most recently used idle instance of the current component that is
    /// still fresh, or a new one.
    pub(crate) async fn take(&self) -> wasmtime::Result<Instance> {
        let generation = self.generation.load(Ordering::Acquire);
        // A stale instance is dropped after the lock is released.
        while let Some(idle) = self.shelf().pop() {
            if idle.is_fresh(generation, self.reuse.idle_timeout, Instant::now()) {
                return Ok(idle.item);
            }
        }
        let current = self.current();
        let started = Instant::now();
        let mut store = sandbox::new_store(current.pre.engine(), &self.sandbox);
        let proxy = current.pre.instantiate_async(&mut store).await?;
        self.metrics.instantiated(started.elapsed());
        Ok(Instance {
            store,
            proxy,
            served: 0,
            generation: current.number,
        })
    }

    /// Returns an instance whose request succeeded; it is kept for the next
    /// request unless it has served its share or its component was replaced.
    pub(crate) fn put_back(&self, mut instance: Instance) {
        instance.served += 1;
        let generation = instance.generation;
        if instance.served < self.reuse.max_requests
            && generation == self.generation.load(Ordering::Acquire)
        {
            self.shelf().push(instance, generation, Instant::now());
        }
    }

    /// Serves `pre` from now on; returns its generation number.
    pub(crate) fn replace(&self, pre: ProxyPre<Host>) -> u64 {
        let number = {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            let number = current.number + 1;
            *current = Arc::new(Generation { pre, number });
            self.generation.store(number, Ordering::Release);
            number
        };
        // Idle instances of the old component go now; busy ones when they finish.
        let old = self.shelf().take_all();
        drop(old);
        number
    }

    /// Drops instances idle for longer than the idle timeout, freeing their
    /// memory; called periodically.
    pub(crate) fn sweep(&self) {
        let stale = self
            .shelf()
            .take_stale(self.reuse.idle_timeout, Instant::now());
        drop(stale);
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.reuse.idle_timeout
    }

    fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn shelf(&self) -> MutexGuard<'_, Shelf<Instance>> {
        // The lock guards a plain Vec with no invariant a panic could break.
        self.shelf
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Idle items, each with its generation and when it went idle; the most
/// recently used is taken first, the longest idle swept first.
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
    generation: u64,
    since: Instant,
}

impl<T> Idle<T> {
    /// Of the current generation and idle for less than `timeout`.
    fn is_fresh(&self, generation: u64, timeout: Duration, now: Instant) -> bool {
        self.generation == generation && now.saturating_duration_since(self.since) < timeout
    }
}

impl<T> Shelf<T> {
    fn push(&mut self, item: T, generation: u64, now: Instant) {
        self.idle.push(Idle {
            item,
            generation,
            since: now,
        });
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

    fn take_all(&mut self) -> Vec<Idle<T>> {
        std::mem::take(&mut self.idle)
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
        shelf.push("old", 0, now);
        shelf.push("new", 0, now + Duration::from_secs(1));
        assert_eq!(shelf.pop().map(|i| i.item), Some("new"));
        assert_eq!(shelf.pop().map(|i| i.item), Some("old"));
        assert!(shelf.pop().is_none());
    }

    #[test]
    fn an_item_of_another_generation_or_idle_too_long_is_not_fresh() {
        let now = Instant::now();
        let idle = Idle {
            item: (),
            generation: 3,
            since: now,
        };
        assert!(idle.is_fresh(3, TIMEOUT, now + Duration::from_secs(9)));
        assert!(!idle.is_fresh(4, TIMEOUT, now));
        assert!(!idle.is_fresh(3, TIMEOUT, now + TIMEOUT));
    }

    #[test]
    fn a_sweep_takes_the_stale_and_keeps_the_fresh_in_order() {
        let now = Instant::now();
        let mut shelf = Shelf::default();
        shelf.push("a", 0, now);
        shelf.push("b", 0, now + Duration::from_secs(5));
        shelf.push("c", 0, now + Duration::from_secs(8));
        let stale = shelf.take_stale(TIMEOUT, now + Duration::from_secs(15));
        assert_eq!(items(&stale), ["a", "b"]);
        assert_eq!(items(&shelf.idle), ["c"]);
        assert!(shelf.take_stale(TIMEOUT, now).is_empty());
        assert_eq!(items(&shelf.take_all()), ["c"]);
        assert!(shelf.idle.is_empty());
    }
}
