//! How long and how often a guest instance may be reused, in either world.

use replica_config::Config;
use std::time::Duration;

/// How long and how often an instance may be reused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reuse {
    /// Requests one instance serves; 1 in strict mode.
    pub(crate) max_requests: u32,
    /// Idle instances one worker keeps: its share of `--max-concurrency`,
    /// so that all the workers' together fit in the engine's pool.
    pub(crate) max_idle: usize,
    /// Requests one instance serves at once (0.3 only; 1 in strict mode).
    pub(crate) max_at_once: u32,
    pub(crate) idle_timeout: Duration,
}

impl From<&Config> for Reuse {
    fn from(config: &Config) -> Self {
        Self {
            max_requests: config.instance_reuse(),
            max_idle: (config.max_concurrency as usize).div_ceil(config.worker_count()),
            max_at_once: config.instance_concurrency(),
            idle_timeout: config.idle_instance_timeout,
        }
    }
}
