//! wasi:keyvalue (`store`, `atomics` and `batch` at 0.2.0-draft, as wasmtime
//! 48 ships them) over a store that keeps what it is given: this process's
//! memory ([`memory`]), shared by every worker and instance, or Redis
//! ([`redis`], `--keyvalue-url`), shared by every replica given the same URL.
//!
//! The bindings are this host's own: upstream's `wasmtime-wasi-keyvalue`
//! gives every `open` a copy of the preloaded data, so what a guest writes is
//! gone at its next request. A bucket's identifier is a namespace: `open("")`
//! and `open("sessions")` never see each other's keys. Every call is checked
//! against the size bounds here, before it reaches either store, and counted
//! in the metrics.

mod memory;
mod redis;

use crate::metrics::Metrics;
use anyhow::Result;
use replica_config::Config;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

pub(crate) use self::bindings::wasi::keyvalue::store::{Error as GuestError, KeyResponse};
use self::bindings::wasi::keyvalue::{atomics, batch, store};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": super::Bucket },
        trappable_error_type: { "wasi:keyvalue/store.error" => super::Failure },
    });
}

/// The longest key (and bucket identifier), in bytes.
const MAX_KEY_BYTES: usize = 64 * 1024;

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

/// A bucket a guest opened: the namespace its keys live in. (`pub`, as the
/// generated bindings name it; the module is private.)
pub struct Bucket {
    name: String,
}

/// Why a call failed: an error the guest is given, or a trap (a bucket
/// handle the guest does not hold, which only a broken guest sends).
pub enum Failure {
    Guest(GuestError),
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for Failure {
    fn from(e: ResourceTableError) -> Self {
        Failure::Trap(e.into())
    }
}

/// `error::other(why)`.
fn other(why: impl Into<String>) -> Failure {
    Failure::Guest(GuestError::Other(why.into()))
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

    fn check_key(&self, key: &str) -> Result<(), Failure> {
        if key.len() > MAX_KEY_BYTES {
            return Err(other(format!(
                "a key of {} bytes is over this host's limit of {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), Failure> {
        self.check_key(key)?;
        if value.len() > self.max_value_bytes {
            return Err(other(format!(
                "the value for `{}` is {} bytes, over --keyvalue-max-value-bytes ({})",
                shorten(key),
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    /// Counts `outcome` as one `operation`, and hands it on.
    fn counted<T>(
        &self,
        operation: &'static str,
        outcome: Result<T, String>,
    ) -> Result<T, Failure> {
        self.metrics.keyvalue(operation, outcome.is_ok());
        outcome.map_err(other)
    }
}

/// A key short enough to quote in an error.
fn shorten(key: &str) -> &str {
    match key.char_indices().nth(64) {
        Some((end, _)) => &key[..end],
        None => key,
    }
}

/// What the bindings reach from a store's data: its resource table and the
/// host's key-value store.
pub(crate) struct KeyValueView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) store: &'a KeyValue,
}

impl KeyValueView<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<&str, Failure> {
        Ok(&self.table.get(bucket)?.name)
    }
}

struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Adds wasi:keyvalue's `store`, `atomics` and `batch` to `linker`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, view)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, view)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view)?;
    Ok(())
}

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Failure> {
        self.store.check_key(&identifier)?;
        self.store.metrics.keyvalue("open", true);
        Ok(self.table.push(Bucket { name: identifier })?)
    }

    fn convert_error(&mut self, failure: Failure) -> wasmtime::Result<GuestError> {
        match failure {
            Failure::Guest(error) => Ok(error),
            Failure::Trap(e) => Err(e),
        }
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_key(&key)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.get(name, &key),
            Backend::Redis(r) => r.get(name, &key).await,
        };
        store.counted("get", outcome)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_value(&key, &value)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.set_many(name, vec![(key, value)]),
            Backend::Redis(r) => r.set_many(name, vec![(key, value)]).await,
        };
        store.counted("set", outcome)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_key(&key)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.delete_many(name, &[key]),
            Backend::Redis(r) => r.delete_many(name, &[key]).await,
        };
        store.counted("delete", outcome)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_key(&key)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.exists(name, &key),
            Backend::Redis(r) => r.exists(name, &key).await,
        };
        store.counted("exists", outcome)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<KeyResponse, Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        let outcome = match &store.backend {
            Backend::Memory(m) => m.list_keys(name, cursor),
            Backend::Redis(r) => r.list_keys(name, cursor).await,
        };
        store.counted("list-keys", outcome)
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_key(&key)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.increment(name, &key, delta),
            Backend::Redis(r) => r.increment(name, &key, delta).await,
        };
        store.counted("increment", outcome)
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        for key in &keys {
            store.check_key(key)?;
        }
        let outcome = match &store.backend {
            Backend::Memory(m) => m.get_many(name, &keys),
            Backend::Redis(r) => r.get_many(name, &keys).await,
        };
        let values = store.counted("get-many", outcome)?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, value)| value.map(|value| (key, value)))
            .collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        for (key, value) in &key_values {
            store.check_value(key, value)?;
        }
        let outcome = match &store.backend {
            Backend::Memory(m) => m.set_many(name, key_values),
            Backend::Redis(r) => r.set_many(name, key_values).await,
        };
        store.counted("set-many", outcome)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        for key in &keys {
            store.check_key(key)?;
        }
        let outcome = match &store.backend {
            Backend::Memory(m) => m.delete_many(name, &keys),
            Backend::Redis(r) => r.delete_many(name, &keys).await,
        };
        store.counted("delete-many", outcome)
    }
}
