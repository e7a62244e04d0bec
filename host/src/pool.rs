//! Guest instances kept warm between requests.
//!
//! An instance that served a request without failing goes back to the pool and
//! serves the next one, up to `max_reuse` requests and while it has been idle
//! less than `idle_timeout`. An instance whose request failed (a trap, a
//! timeout) is dropped, never reused. With `max_reuse` 1 every request gets a
//! fresh instance (strict mode).
//!
//! The component can be replaced while serving ([`Pool::replace`]): requests
//! already running finish on the old component's instances, which are then
//! dropped; every request that starts afterwards gets the new one.

use crate::metrics::Metrics;
use crate::runtime::{self, Sandbox};
use crate::state::Host;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

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

struct Idle {
    instance: Instance,
    since: Instant,
}

pub(crate) struct Pool {
    current: RwLock<Arc<Generation>>,
    /// `current`'s number, readable without the lock on the reuse path.
    generation: AtomicU64,
    sandbox: Sandbox,
    metrics: Option<Arc<Metrics>>,
    max_reuse: u32,
    idle_timeout: Duration,
    /// Oldest first: instances are pushed and popped at the end.
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub(crate) fn new(
        pre: ProxyPre<Host>,
        sandbox: Sandbox,
        max_reuse: u32,
        idle_timeout: Duration,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            current: RwLock::new(Arc::new(Generation { pre, number: 0 })),
            generation: AtomicU64::new(0),
            sandbox,
            metrics,
            max_reuse,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle instance of the current component that is
    /// still fresh, or a new one.
    pub(crate) async fn take(&self) -> wasmtime::Result<Instance> {
        let generation = self.generation.load(Ordering::Acquire);
        loop {
            let Some(idle) = self.idle().pop() else { break };
            if idle.since.elapsed() < self.idle_timeout && idle.instance.generation == generation {
                return Ok(idle.instance);
            }
            // Stale or replaced: dropped here, outside the lock.
        }
        let current = self.current();
        let started = Instant::now();
        let mut store = runtime::new_store(current.pre.engine(), &self.sandbox);
        let proxy = current.pre.instantiate_async(&mut store).await?;
        if let Some(metrics) = &self.metrics {
            metrics.instantiations.inc();
            metrics
                .instantiation_duration
                .observe(started.elapsed().as_secs_f64());
        }
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
        if instance.served < self.max_reuse
            && instance.generation == self.generation.load(Ordering::Acquire)
        {
            self.idle().push(Idle {
                instance,
                since: Instant::now(),
            });
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
        let old: Vec<Idle> = self.idle().drain(..).collect();
        drop(old);
        number
    }

    /// Drops instances idle for longer than the idle timeout, freeing their
    /// memory; called periodically.
    pub(crate) fn sweep(&self) {
        let stale: Vec<Idle> = {
            let mut idle = self.idle();
            let fresh_from = idle
                .iter()
                .position(|i| i.since.elapsed() < self.idle_timeout)
                .unwrap_or(idle.len());
            idle.drain(..fresh_from).collect()
        };
        drop(stale);
    }

    pub(crate) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    fn current(&self) -> Arc<Generation> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // The lock guards a plain Vec with no invariant a panic could break.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
