//! Spin's key-value, both generations: `fermyon:spin/key-value@2.0.0`
//! (spin-sdk 5) and `spin:key-value/key-value@3.0.0` (spin-sdk 7, whose
//! calls are component-model async), as thin adapters over the one store:
//! a store label is a bucket of wasi:keyvalue's, so `default` here is
//! `open("default")` there, in memory or in Redis.
//!
//! Spin opens only the labels its manifest lists; this host has no manifest,
//! so every label opens (as every wasi:keyvalue identifier does). Errors as
//! Spin defines them: `store-table-full` when the instance may hold no more
//! resources, `other` for what the store refused (a value over the bounds,
//! Redis down); `no-such-store` and `access-denied` are never given.

use super::store::{At, KeyValue};
use super::wasi::{HasKeyValue, KeyValueView};
use opentelemetry::Context as TraceContext;
use std::sync::Arc;
use wasmtime::component::{
    Access, Accessor, FutureReader, Linker, Resource, ResourceTableError, StreamReader,
};

mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/fermyon-spin-2.0.0",
        world: "fermyon:spin/host",
        imports: { default: async | trappable },
        with: { "fermyon:spin/key-value.store": super::Store },
        trappable_error_type: { "fermyon:spin/key-value.error" => super::Failure },
    });
}

mod v3 {
    wasmtime::component::bindgen!({
        inline: "
            package replica:spin-key-value;
            world host { import spin:key-value/key-value@3.0.0; }
        ",
        path: "../wit/deps/spin-key-value-3.0.0",
        imports: { default: store | trappable },
        with: { "spin:key-value/key-value.store": super::Store3 },
    });
}

use v2::fermyon::spin::key_value as kv2;
use v3::spin::key_value::key_value as kv3;

/// A store a 2.0.0 guest opened: the bucket it reaches.
pub struct Store {
    bucket: String,
}

/// A store a 3.0.0 guest opened.
pub struct Store3 {
    bucket: String,
}

/// Why a 2.0.0 call failed: an error for the guest, or a trap.
pub enum Failure {
    Guest(kv2::Error),
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for Failure {
    fn from(e: ResourceTableError) -> Self {
        match e {
            ResourceTableError::Full => Failure::Guest(kv2::Error::StoreTableFull),
            e => Failure::Trap(e.into()),
        }
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Guest(kv2::Error::Other(why))
    }
}

/// Adds both generations' key-value to `linker`; 3.0.0's only where the
/// engine runs component-model async (`p3`: for 0.3 components).
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyValueView<'_>,
    p3: bool,
) -> wasmtime::Result<()> {
    kv2::add_to_linker::<T, HasKeyValue>(linker, view)?;
    if p3 {
        kv3::add_to_linker::<T, HasKeyValue>(linker, view)?;
    }
    Ok(())
}

// 2.0.0.

impl kv2::Host for KeyValueView<'_> {
    fn convert_error(&mut self, failure: Failure) -> wasmtime::Result<kv2::Error> {
        match failure {
            Failure::Guest(error) => Ok(error),
            Failure::Trap(e) => Err(e),
        }
    }
}

impl KeyValueView<'_> {
    /// Where a call on `store` goes.
    fn spin_bucket(&self, store: &Resource<Store>) -> Result<At<'_>, ResourceTableError> {
        Ok(self.at(&self.table.get(store)?.bucket))
    }
}

impl kv2::HostStore for KeyValueView<'_> {
    async fn open(&mut self, label: String) -> Result<Resource<Store>, Failure> {
        self.store.open(self.at(&label))?;
        Ok(self.table.push(Store { bucket: label })?)
    }

    async fn get(
        &mut self,
        store: Resource<Store>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        Ok(self.store.get(self.spin_bucket(&store)?, &key).await?)
    }

    async fn set(
        &mut self,
        store: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        Ok(self
            .store
            .set(self.spin_bucket(&store)?, key, value)
            .await?)
    }

    async fn delete(&mut self, store: Resource<Store>, key: String) -> Result<(), Failure> {
        Ok(self.store.delete(self.spin_bucket(&store)?, key).await?)
    }

    async fn exists(&mut self, store: Resource<Store>, key: String) -> Result<bool, Failure> {
        Ok(self.store.exists(self.spin_bucket(&store)?, &key).await?)
    }

    async fn get_keys(&mut self, store: Resource<Store>) -> Result<Vec<String>, Failure> {
        Ok(self.store.all_keys(self.spin_bucket(&store)?).await?)
    }

    async fn drop(&mut self, store: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

// 3.0.0: the same calls, each awaited by the guest, the keys as a stream.

impl kv3::Host for KeyValueView<'_> {}

impl kv3::HostStore for KeyValueView<'_> {}

/// The store a 3.0.0 call reaches, and where: taken from the instance's
/// data so that the call can wait on the store without holding it.
struct Reached {
    kv: Arc<KeyValue>,
    bucket: String,
    trace: Option<TraceContext>,
}

impl Reached {
    fn at(&self) -> At<'_> {
        At {
            bucket: &self.bucket,
            trace: self.trace.as_ref(),
        }
    }
}

fn reach<T>(
    accessor: &Accessor<T, HasKeyValue>,
    store: &Resource<Store3>,
) -> wasmtime::Result<Reached> {
    accessor.with(|mut access| {
        let view = access.get();
        Ok(Reached {
            bucket: view.table.get(store)?.bucket.clone(),
            kv: view.store.clone(),
            trace: view.trace.cloned(),
        })
    })
}

fn other<T>(outcome: Result<T, String>) -> Result<T, kv3::Error> {
    outcome.map_err(kv3::Error::Other)
}

impl<T> kv3::HostStoreWithStore<T> for HasKeyValue {
    fn drop(mut access: Access<'_, T, Self>, store: Resource<Store3>) -> wasmtime::Result<()> {
        access.get().table.delete(store)?;
        Ok(())
    }

    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Store3>, kv3::Error>> {
        accessor.with(|mut access| {
            let view = access.get();
            if let Err(why) = view.store.open(view.at(&label)) {
                return Ok(Err(kv3::Error::Other(why)));
            }
            match view.table.push(Store3 { bucket: label }) {
                Ok(store) => Ok(Ok(store)),
                Err(ResourceTableError::Full) => Ok(Err(kv3::Error::StoreTableFull)),
                Err(e) => Err(e.into()),
            }
        })
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<Store3>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv3::Error>> {
        let reached = reach(accessor, &store)?;
        Ok(other(reached.kv.get(reached.at(), &key).await))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<Store3>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let reached = reach(accessor, &store)?;
        Ok(other(reached.kv.set(reached.at(), key, value).await))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<Store3>,
        key: String,
    ) -> wasmtime::Result<Result<(), kv3::Error>> {
        let reached = reach(accessor, &store)?;
        Ok(other(reached.kv.delete(reached.at(), key).await))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<Store3>,
        key: String,
    ) -> wasmtime::Result<Result<bool, kv3::Error>> {
        let reached = reach(accessor, &store)?;
        Ok(other(reached.kv.exists(reached.at(), &key).await))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<Store3>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), kv3::Error>>)> {
        let reached = reach(accessor, &store)?;
        let (keys, outcome) = match reached.kv.all_keys(reached.at()).await {
            Ok(keys) => (keys, Ok(())),
            Err(why) => (Vec::new(), Err(kv3::Error::Other(why))),
        };
        accessor.with(|mut access| {
            Ok((
                StreamReader::new(&mut access, keys)?,
                FutureReader::new(&mut access, async move { wasmtime::error::Ok(outcome) })?,
            ))
        })
    }
}
