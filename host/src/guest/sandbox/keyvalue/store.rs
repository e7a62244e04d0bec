//! The store every instance's wasi:keyvalue calls go to: the bounds they are
//! held to, the metrics they are counted in, and the backend that keeps the
//! data (`memory.rs` or `redis.rs`).

use super::keys::{Page, shorten};
use super::{memory, redis};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Child;
use anyhow::Result;
use opentelemetry::Context as TraceContext;
use opentelemetry::trace::SpanKind;
use replica_config::Config;
use std::borrow::Cow;
use std::future::Future;

/// The longest key (and bucket identifier), in bytes.
const MAX_KEY_BYTES: usize = 64 * 1024;

/// The most keys one call lists at once (Spin's `get-keys`, which has no
/// pages).
const MAX_ALL_KEYS: usize = 100_000;

/// Where a call goes: a bucket, and the trace span of the guest's call it
/// is made in, if it has one.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub(crate) bucket: &'a str,
    pub(crate) trace: Option<&'a TraceContext>,
}

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

    /// Runs `call`, one `operation` at `at`, in a span of its own under
    /// the call's trace span (if any), and counts how it came out.
    async fn reach<T>(
        &self,
        operation: &'static str,
        at: At<'_>,
        call: impl Future<Output = Result<T, String>>,
    ) -> Result<T, String> {
        let span = self.span(operation, at);
        let outcome = call.await;
        self.reached(operation, &span, &outcome);
        outcome
    }

    /// The span of one `operation` at `at` (nothing if the guest's call has
    /// no trace span), named as the database conventions name one.
    fn span(&self, operation: &'static str, at: At<'_>) -> Child {
        let (system, kind) = match &self.backend {
            Backend::Memory(_) => ("memory", SpanKind::Internal),
            Backend::Redis(_) => ("redis", SpanKind::Client),
        };
        let span = Child::under(at.trace, kind, || {
            Cow::Owned(format!("{operation} {}", shorten(at.bucket)))
        });
        if span.is_recording() {
            span.attribute("db.system.name", system);
            span.attribute("db.operation.name", operation);
            span.attribute("db.namespace", at.bucket.to_owned());
        }
        span
    }

    /// Counts how one `operation` came out, and marks its span failed if
    /// it failed.
    fn reached<T>(&self, operation: &'static str, span: &Child, outcome: &Result<T, String>) {
        if let Err(why) = outcome {
            span.fail("keyvalue_error", || why.clone());
        }
        self.metrics.keyvalue(operation, outcome.is_ok());
    }

    // What every binding calls (wasi:keyvalue's drafts, Spin's key-value):
    // the bounds checked, the backend reached, the call counted.

    /// Opening `bucket`: only its name is checked (buckets need no making).
    pub(super) fn open(&self, at: At<'_>) -> Result<(), String> {
        let span = self.span("open", at);
        let outcome = self.check_key(at.bucket);
        self.reached("open", &span, &outcome);
        outcome
    }

    pub(super) async fn get(&self, at: At<'_>, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.check_key(key)?;
        self.reach("get", at, async {
            match &self.backend {
                Backend::Memory(m) => m.get(at.bucket, key),
                Backend::Redis(r) => r.get(at.bucket, key).await,
            }
        })
        .await
    }

    pub(super) async fn set(&self, at: At<'_>, key: String, value: Vec<u8>) -> Result<(), String> {
        self.set_many_as("set", at, vec![(key, value)]).await
    }

    pub(super) async fn delete(&self, at: At<'_>, key: String) -> Result<(), String> {
        self.delete_many_as("delete", at, vec![key]).await
    }

    pub(super) async fn exists(&self, at: At<'_>, key: &str) -> Result<bool, String> {
        self.check_key(key)?;
        self.reach("exists", at, async {
            match &self.backend {
                Backend::Memory(m) => m.exists(at.bucket, key),
                Backend::Redis(r) => r.exists(at.bucket, key).await,
            }
        })
        .await
    }

    /// One page of `bucket`'s keys, from `cursor`.
    pub(super) async fn list_keys(&self, at: At<'_>, cursor: Option<u64>) -> Result<Page, String> {
        self.reach("list-keys", at, async {
            match &self.backend {
                Backend::Memory(m) => m.list_keys(at.bucket, cursor),
                Backend::Redis(r) => r.list_keys(at.bucket, cursor).await,
            }
        })
        .await
    }

    /// Every key of `bucket` (Spin's `get-keys`): the pages, followed to the
    /// last, up to [`MAX_ALL_KEYS`].
    pub(super) async fn all_keys(&self, at: At<'_>) -> Result<Vec<String>, String> {
        let (mut keys, mut cursor) = (Vec::new(), None);
        loop {
            let page = self.list_keys(at, cursor).await?;
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

    pub(super) async fn increment(&self, at: At<'_>, key: &str, delta: i64) -> Result<i64, String> {
        self.check_key(key)?;
        self.reach("increment", at, async {
            match &self.backend {
                Backend::Memory(m) => m.increment(at.bucket, key, delta),
                Backend::Redis(r) => r.increment(at.bucket, key, delta).await,
            }
        })
        .await
    }

    /// Sets `key` to `value` if it still holds `expected`; whether it did.
    pub(super) async fn swap(
        &self,
        at: At<'_>,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
    ) -> Result<bool, String> {
        self.check_value(key, &value)?;
        self.reach("swap", at, async {
            match &self.backend {
                Backend::Memory(m) => m.swap(at.bucket, key, expected, value),
                Backend::Redis(r) => r.swap(at.bucket, key, expected, value).await,
            }
        })
        .await
    }

    pub(super) async fn get_many(
        &self,
        at: At<'_>,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, String> {
        for key in keys {
            self.check_key(key)?;
        }
        self.reach("get-many", at, async {
            match &self.backend {
                Backend::Memory(m) => m.get_many(at.bucket, keys),
                Backend::Redis(r) => r.get_many(at.bucket, keys).await,
            }
        })
        .await
    }

    pub(super) async fn set_many(
        &self,
        at: At<'_>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        self.set_many_as("set-many", at, entries).await
    }

    pub(super) async fn delete_many(&self, at: At<'_>, keys: Vec<String>) -> Result<(), String> {
        self.delete_many_as("delete-many", at, keys).await
    }

    async fn set_many_as(
        &self,
        operation: &'static str,
        at: At<'_>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Result<(), String> {
        for (key, value) in &entries {
            self.check_value(key, value)?;
        }
        self.reach(operation, at, async {
            match &self.backend {
                Backend::Memory(m) => m.set_many(at.bucket, entries),
                Backend::Redis(r) => r.set_many(at.bucket, entries).await,
            }
        })
        .await
    }

    async fn delete_many_as(
        &self,
        operation: &'static str,
        at: At<'_>,
        keys: Vec<String>,
    ) -> Result<(), String> {
        for key in &keys {
            self.check_key(key)?;
        }
        self.reach(operation, at, async {
            match &self.backend {
                Backend::Memory(m) => m.delete_many(at.bucket, &keys),
                Backend::Redis(r) => r.delete_many(at.bucket, &keys).await,
            }
        })
        .await
    }
}
