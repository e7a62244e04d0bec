//! Guest instances kept warm between requests.
//!
//! An instance that served a request without failing goes back to the pool and
//! serves the next one, up to `max_reuse` requests and while it has been idle
//! less than `idle_timeout`. An instance whose request failed (a trap, a
//! timeout) is dropped, never reused. With `max_reuse` 1 every request gets a
//! fresh instance (strict mode).

use crate::runtime::{self, Limits};
use crate::state::Host;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

/// An instantiated guest and the store it lives in.
pub(crate) struct Instance {
    pub(crate) store: Store<Host>,
    pub(crate) proxy: Proxy,
    served: u32,
}

struct Idle {
    instance: Instance,
    since: Instant,
}

pub(crate) struct Pool {
    pre: ProxyPre<Host>,
    env: Vec<(String, String)>,
    limits: Limits,
    max_reuse: u32,
    idle_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub(crate) fn new(
        pre: ProxyPre<Host>,
        env: Vec<(String, String)>,
        limits: Limits,
        max_reuse: u32,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            pre,
            env,
            limits,
            max_reuse,
            idle_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The most recently used idle instance that is still fresh, or a new one.
    pub(crate) async fn take(&self) -> wasmtime::Result<Instance> {
        loop {
            let Some(idle) = self.lock().pop() else { break };
            if idle.since.elapsed() < self.idle_timeout {
                return Ok(idle.instance);
            }
            // Stale: dropped here, outside the lock.
        }
        let mut store = runtime::new_store(self.pre.engine(), &self.env, self.limits);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            served: 0,
        })
    }

    /// Returns an instance whose request succeeded; it is kept for the next
    /// request unless it has served its share.
    pub(crate) fn put_back(&self, mut instance: Instance) {
        instance.served += 1;
        if instance.served < self.max_reuse {
            self.lock().push(Idle {
                instance,
                since: Instant::now(),
            });
        }
    }

    /// Drops instances idle for longer than the idle timeout, freeing their
    /// memory; called periodically.
    pub(crate) fn sweep(&self) {
        let stale: Vec<Idle> = {
            let mut idle = self.lock();
            // Oldest first: the stale ones are a prefix.
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // The lock guards a plain Vec with no invariant a panic could break.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
