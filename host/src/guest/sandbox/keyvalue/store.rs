//! The store every instance's wasi:keyvalue calls go to: the bounds they are
//! held to, the metrics they are counted in, and the backend that keeps the
//! data (`memory.rs` or `redis.rs`).

use super::keys::shorten;
use super::{memory, redis};
use crate::telemetry::metrics::Metrics;
use anyhow::Result;
use replica_config::Config;

/// The longest key (and bucket identifier), in bytes.
const MAX_KEY_BYTES: usize = 64 * 1024;

/// The store every instance's calls go to, and the bounds they are held to.
pub(crate) struct KeyValue {
    pub(super) backend: Backend,
    max_value_bytes: usize,
    pub(super) metrics: Metrics,
}

pub(super) enum Backend {
    Memory(memory::Memory),
    Redis(redis::Redis),
}

impl KeyValue {
    /// The store `config` asks for: Redis at `--keyvalue-url` (checked now,
    /// reached later if it is down), or memory, preloaded with `--keyvalue`.
    pub(crate) fn new(config: &Config, metrics: Metrics) -> Result<Self> {
        let max_value_bytes =
            usize::try_from(config.keyvalue_max_value_bytes).unwrap_or(usize::MAX);
        let backend = match &config.keyvalue_url {
            Some(url) => Backend::Redis(redis::Redis::connect(
                url,
                config.keyvalue_timeout,
                &config.keyvalue_preload(),
            )?),
            None => Backend::Memory(memory::Memory::new(
                config.keyvalue_max_bytes,
                &config.keyvalue_preload(),
            )?),
        };
        Ok(Self {
            backend,
            max_value_bytes,
            metrics,
        })
    }

    /// Where the store lives, for the start-up log line.
    pub(crate) fn describe(&self) -> String {
        match &self.backend {
            Backend::Memory(memory) => memory.describe(),
            Backend::Redis(redis) => redis.describe(),
        }
    }

    /// Why `key` (or a bucket identifier) cannot be used, if it cannot.
    pub(super) fn check_key(&self, key: &str) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "a key of {} bytes is over this host's limit of {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        Ok(())
    }

    /// Why `key` cannot hold `value`, if it cannot.
    pub(super) fn check_value(&self, key: &str, value: &[u8]) -> Result<(), String> {
        self.check_key(key)?;
        if value.len() > self.max_value_bytes {
            return Err(format!(
                "the value for `{}` is {} bytes, over --keyvalue-max-value-bytes ({})",
                shorten(key),
                value.len(),
                self.max_value_bytes
            ));
        }
        Ok(())
    }

    /// Counts `outcome` as one `operation`, and hands it on.
    pub(super) fn counted<T>(
        &self,
        operation: &'static str,
        outcome: Result<T, String>,
    ) -> Result<T, String> {
        self.metrics.keyvalue(operation, outcome.is_ok());
        outcome
    }
}
