//! wasi:keyvalue's bindings, generated from the vendored WIT
//! (`wit/deps/keyvalue`), and their implementation over [`KeyValue`].

use super::store::{Backend, KeyValue};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

pub(crate) use self::generated::wasi::keyvalue::store::{Error as GuestError, KeyResponse};
use self::generated::wasi::keyvalue::{atomics, batch, store};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": crate::guest::sandbox::keyvalue::bindings::Bucket },
        trappable_error_type: { "wasi:keyvalue/store.error" => crate::guest::sandbox::keyvalue::bindings::Failure },
    });
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
impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Guest(GuestError::Other(why))
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
        Ok(store.counted("get", outcome)?)
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
        Ok(store.counted("set", outcome)?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_key(&key)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.delete_many(name, &[key]),
            Backend::Redis(r) => r.delete_many(name, &[key]).await,
        };
        Ok(store.counted("delete", outcome)?)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Failure> {
        let (name, store) = (self.bucket(&bucket)?, self.store);
        store.check_key(&key)?;
        let outcome = match &store.backend {
            Backend::Memory(m) => m.exists(name, &key),
            Backend::Redis(r) => r.exists(name, &key).await,
        };
        Ok(store.counted("exists", outcome)?)
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
        let page = store.counted("list-keys", outcome)?;
        Ok(KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        })
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
        Ok(store.counted("increment", outcome)?)
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
        Ok(store.counted("set-many", outcome)?)
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
        Ok(store.counted("delete-many", outcome)?)
    }
}
