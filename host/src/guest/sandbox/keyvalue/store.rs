//! The store every instance's wasi:keyvalue calls go to: the bounds they are
//! held to, the metrics they are counted in, and the backend that keeps the
//! data (`memory.rs` or `redis.rs`).

use super::keys::{Page, shorten};
use super::{memory, redis};
use crate::telemetry::metrics::Metrics;
use anyhow::Result;
use replica_config::Config;

/// The longest key (and bucket identifier), in bytes.
const MAX_KEY_BYTES: usize = 64 * 1024;

/// The most keys one call lists at once (Spin's `get-keys`, which has no
/// pages).
const MAX_ALL_KEYS: usize = 100_000;

/// The store every instance's calls go to, and the bounds they are held to.
pub(crate) struct KeyValue {
    backend: Backend,
    max_value_bytes: usize,
    metrics: Metrics,
}

enum Backend {
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
    fn check_key(&self, key: &str) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "a key of {} bytes is over this host's limit of {MAX_KEY_BYTES}",
                key.len()
            ));
        }
        Ok(())
    }

    /// Why `key` cannot hold `value`, if it cannot.
    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), String> {
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
    fn counted<T>(&self, operation: &'static str, outcome: Result<T, String>) -> Result<T, String> {
        self.metrics.keyvalue(operation, outcome.is_ok());
        outcome
    }

    // What every binding calls (wasi:keyvalue's drafts, Spin's key-value):
    // the bounds checked, the backend reached, the call counted.

    /// Opening `bucket`: only its name is checked (buckets need no making).
    pub(super) fn open(&self, bucket: &str) -> Result<(), String> {
        let outcome = self.check_key(bucket);
        self.counted("open", outcome)
    }

    pub(super) async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.check_key(key)?;
        let outcome = match &self.backend {
            Backend::Memory(m) => m.get(bucket, key),
            Backend::Redis(r) => r.get(bucket, key).await,
        };
        self.counted("get", outcome)
    }

    pub(super) async fn set(
        &self,
        bucket: &str,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), String> {
        self.set_many_as("set", bucket, vec![(key, value)]).await
    }

    pub(super) async fn delete(&self, bucket: &str, key: String) -> Result<(), String> {
        self.delete_many_as("delete", bucket, vec![key]).await
    }

    pub(super) async fn exists(&self, bucket: &str, key: &str) -> Result<bool, String> {
        self.check_key(key)?;
        let outcome = match &self.backend {
            Backend::Memory(m) => m.exists(bucket, key),
            Backend::Redis(r) => r.exists(bucket, key).await,
        };
        self.counted("exists", outcome)
    }

    /// One page of `bucket`'s keys, from `cursor`.
    pub(super) async fn list_keys(
        &self,
        bucket: &str,
        cursor: Option<u64>,
    ) -> Result<Page, String> {
        let outcome = match &self.backend {
            Backend::Memory(m) => m.list_keys(bucket, cursor),
            Backend::Redis(r) => r.list_keys(bucket, cursor).await,
        };
        self.counted("list-keys", outcome)
    }

    /// Every key of `bucket` (Spin's `get-keys`): the pages, followed to the
    /// last, up to [`MAX_ALL_KEYS`].
    pub(super) async fn all_keys(&self, bucket: &str) -> Result<Vec<String>, String> {
        let (mut keys, mut cursor) = (Vec::new(), None);
        loop {
            let page = self.list_keys(bucket, cursor).await?;
            keys.extend(page.keys);
            if keys.len() > MAX_ALL_KEYS {
                return Err(format!(
                    "the store holds over {MAX_ALL_KEYS} keys: too many to list at once"
                ));
            }
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    pub(super) async fn increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i64,
    ) -> Result<i64, String> {
        self.check_key(key)?;
        let outcome = match &self.backend {
            Backend::Memory(m) => m.increment(bucket, key, delta),
            Backend::Redis(r) => r.increment(bucket, key, delta).await,
        };
        self.counted("increment", outcome)
    }

    /// Sets `key` to `value` if it still holds `expected`; whether it did.
    pub(super) async fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
    ) -> Result<bool, String> {
        self.check_value(key, &value)?;
        let outcome = match &self.backend {
            Backend::Memory(m) => m.swap(bucket, key, expected, value),
            Backend::Redis(r) => r.swap(bucket, key, expected, value).await,
        };
        self.counted("swap", outcome)
    }

    pub(super) async fn get_many(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        for key in keys {
            self.check_key(key)?;
        }
        let outcome = match &self.backend {
            Backend::Memory(m) => m.get_many(bucket, keys),
            Backend::Redis(r) => r.get_many(bucket, keys).await,
        };
        self.counted("get-many", outcome)
    }

    pub(super) async fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        self.set_many_as("set-many", bucket, entries).await
    }

    pub(super) async fn delete_many(&self, bucket: &str, keys: Vec<String>) -> Result<(), String> {
        self.delete_many_as("delete-many", bucket, keys).await
    }

    async fn set_many_as(
        &self,
        operation: &'static str,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        for (key, value) in &entries {
            self.check_value(key, value)?;
        }
        let outcome = match &self.backend {
            Backend::Memory(m) => m.set_many(bucket, entries),
            Backend::Redis(r) => r.set_many(bucket, entries).await,
        };
        self.counted(operation, outcome)
    }

    async fn delete_many_as(
        &self,
        operation: &'static str,
        bucket: &str,
        keys: Vec<String>,
    ) -> Result<(), String> {
        for key in &keys {
            self.check_key(key)?;
        }
        let outcome = match &self.backend {
            Backend::Memory(m) => m.delete_many(bucket, &keys),
            Backend::Redis(r) => r.delete_many(bucket, &keys).await,
        };
        self.counted(operation, outcome)
    }
}
