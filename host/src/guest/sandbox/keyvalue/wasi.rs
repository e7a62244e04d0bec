//! wasi:keyvalue as `wasmtime serve -Skeyvalue` and wasmCloud give it
//! (`store`, `atomics`, `batch` at 0.2.0-draft) and as Spin gives it
//! (0.2.0-draft2, which adds compare-and-swap): bindings generated from the
//! vendored WIT (`wit/deps/keyvalue`, `wit/deps/keyvalue-draft2`), each a
//! thin adapter over the one store (`store.rs`). A bucket's identifier is a
//! namespace, the same in either version and in Spin's key-value.

use super::store::{At, KeyValue};
use opentelemetry::Context as TraceContext;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable, ResourceTableError};

mod draft {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": super::Bucket },
        trappable_error_type: { "wasi:keyvalue/store.error" => super::Failure },
    });
}

mod draft2 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/keyvalue-draft2",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket2,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
        trappable_error_type: { "wasi:keyvalue/store.error" => super::Failure2 },
    });
}

use draft::wasi::keyvalue::{atomics, batch, store};
use draft2::wasi::keyvalue::{atomics as atomics2, batch as batch2, store as store2};

/// A 0.2.0-draft bucket a guest opened: the namespace its keys live in.
/// (`pub`, as the generated bindings name it; the module is private.)
pub struct Bucket {
    name: String,
}

/// A 0.2.0-draft2 bucket.
pub struct Bucket2 {
    name: String,
}

/// A compare-and-swap handle (0.2.0-draft2): a key, and what it held when
/// the handle was made. A swap sets it only if it still holds that.
pub struct Cas {
    bucket: String,
    key: String,
    seen: Option<Vec<u8>>,
}

/// Why a call failed: an error the guest is given, or a trap (a handle the
/// guest does not hold, which only a broken guest sends).
pub enum Failure {
    Guest(store::Error),
    Trap(wasmtime::Error),
}

/// The same, in 0.2.0-draft2's terms.
pub enum Failure2 {
    Guest(store2::Error),
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for Failure {
    fn from(e: ResourceTableError) -> Self {
        Failure::Trap(e.into())
    }
}

impl From<ResourceTableError> for Failure2 {
    fn from(e: ResourceTableError) -> Self {
        Failure2::Trap(e.into())
    }
}

/// `error::other(why)`.
impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Guest(store::Error::Other(why))
    }
}

impl From<String> for Failure2 {
    fn from(why: String) -> Self {
        Failure2::Guest(store2::Error::Other(why))
    }
}

/// What the bindings reach from a store's data: its resource table and the
/// host's key-value store.
pub(crate) struct KeyValueView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) store: &'a Arc<KeyValue>,
    /// The trace span of the guest's call, if it has one.
    pub(crate) trace: Option<&'a TraceContext>,
}

pub(super) struct HasKeyValue;

impl HasData for HasKeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Adds wasi:keyvalue's `store`, `atomics` and `batch`, at 0.2.0-draft and
/// 0.2.0-draft2, to `linker`.
pub(super) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KeyValueView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasKeyValue>(linker, view)?;
    atomics::add_to_linker::<T, HasKeyValue>(linker, view)?;
    batch::add_to_linker::<T, HasKeyValue>(linker, view)?;
    store2::add_to_linker::<T, HasKeyValue>(linker, view)?;
    atomics2::add_to_linker::<T, HasKeyValue>(linker, view)?;
    batch2::add_to_linker::<T, HasKeyValue>(linker, view)?;
    Ok(())
}

/// A cursor as 0.2.0-draft2 gives it (a string): the store's own, written
/// out.
fn cursor_in(cursor: Option<String>) -> Result<Option<u64>, String> {
    cursor
        .map(|cursor| {
            cursor
                .parse()
                .map_err(|_| format!("`{cursor}` is not a cursor this store gave"))
        })
        .transpose()
}

// 0.2.0-draft.

impl store::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Failure> {
        self.store.open(self.at(&identifier))?;
        Ok(self.table.push(Bucket { name: identifier })?)
    }

    fn convert_error(&mut self, failure: Failure) -> wasmtime::Result<store::Error> {
        match failure {
            Failure::Guest(error) => Ok(error),
            Failure::Trap(e) => Err(e),
        }
    }
}

impl KeyValueView<'_> {
    /// Where a call on `bucket` goes.
    fn bucket(&self, bucket: &Resource<Bucket>) -> Result<At<'_>, ResourceTableError> {
        Ok(self.at(&self.table.get(bucket)?.name))
    }

    fn bucket2(&self, bucket: &Resource<Bucket2>) -> Result<At<'_>, ResourceTableError> {
        Ok(self.at(&self.table.get(bucket)?.name))
    }

    /// Where a call on the bucket named `bucket` goes.
    pub(super) fn at<'a>(&'a self, bucket: &'a str) -> At<'a> {
        At {
            bucket,
            trace: self.trace,
        }
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure> {
        Ok(self.store.get(self.bucket(&bucket)?, &key).await?)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure> {
        Ok(self.store.set(self.bucket(&bucket)?, key, value).await?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Failure> {
        Ok(self.store.delete(self.bucket(&bucket)?, key).await?)
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Failure> {
        Ok(self.store.exists(self.bucket(&bucket)?, &key).await?)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, Failure> {
        let page = self.store.list_keys(self.bucket(&bucket)?, cursor).await?;
        Ok(store::KeyResponse {
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
        let delta = i64::try_from(delta).map_err(|_| {
            format!(
                "an increment of {delta} is over what this store adds at once ({})",
                i64::MAX
            )
        })?;
        let total = self
            .store
            .increment(self.bucket(&bucket)?, &key, delta)
            .await?;
        Ok(u64::try_from(total)
            .map_err(|_| format!("`{key}` holds {total}, which is not a u64"))?)
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<Option<(String, Vec<u8>)>>, Failure> {
        let values = self.store.get_many(self.bucket(&bucket)?, &keys).await?;
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
        Ok(self
            .store
            .set_many(self.bucket(&bucket)?, key_values)
            .await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), Failure> {
        Ok(self.store.delete_many(self.bucket(&bucket)?, keys).await?)
    }
}

// 0.2.0-draft2: the same calls, string cursors, signed increments, and
// compare-and-swap.

impl store2::Host for KeyValueView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket2>, Failure2> {
        self.store.open(self.at(&identifier))?;
        Ok(self.table.push(Bucket2 { name: identifier })?)
    }

    fn convert_error(&mut self, failure: Failure2) -> wasmtime::Result<store2::Error> {
        match failure {
            Failure2::Guest(error) => Ok(error),
            Failure2::Trap(e) => Err(e),
        }
    }
}

impl store2::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket2>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Failure2> {
        Ok(self.store.get(self.bucket2(&bucket)?, &key).await?)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket2>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Failure2> {
        Ok(self.store.set(self.bucket2(&bucket)?, key, value).await?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket2>, key: String) -> Result<(), Failure2> {
        Ok(self.store.delete(self.bucket2(&bucket)?, key).await?)
    }

    async fn exists(&mut self, bucket: Resource<Bucket2>, key: String) -> Result<bool, Failure2> {
        Ok(self.store.exists(self.bucket2(&bucket)?, &key).await?)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket2>,
        cursor: Option<String>,
    ) -> Result<store2::KeyResponse, Failure2> {
        let cursor = cursor_in(cursor)?;
        let page = self.store.list_keys(self.bucket2(&bucket)?, cursor).await?;
        Ok(store2::KeyResponse {
            keys: page.keys,
            cursor: page.cursor.map(|cursor| cursor.to_string()),
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket2>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics2::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket2>,
        key: String,
        delta: i64,
    ) -> Result<i64, Failure2> {
        Ok(self
            .store
            .increment(self.bucket2(&bucket)?, &key, delta)
            .await?)
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics2::CasError>> {
        let Cas { bucket, key, seen } = self.table.delete(cas)?;
        let swapped = self
            .store
            .swap(self.at(&bucket), &key, seen.as_deref(), value)
            .await;
        Ok(match swapped {
            Ok(true) => Ok(()),
            // Someone wrote it since: a fresh handle, holding what is there.
            Ok(false) => {
                let seen = self.store.get(self.at(&bucket), &key).await;
                match seen {
                    Ok(seen) => {
                        let cas = self.table.push(Cas { bucket, key, seen })?;
                        Err(atomics2::CasError::CasFailed(cas))
                    }
                    Err(why) => Err(atomics2::CasError::StoreError(store2::Error::Other(why))),
                }
            }
            Err(why) => Err(atomics2::CasError::StoreError(store2::Error::Other(why))),
        })
    }
}

impl atomics2::HostCas for KeyValueView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket2>,
        key: String,
    ) -> Result<Resource<Cas>, Failure2> {
        let bucket = self.bucket2(&bucket)?.bucket.to_string();
        let seen = self.store.get(self.at(&bucket), &key).await?;
        Ok(self.table.push(Cas { bucket, key, seen })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, Failure2> {
        Ok(self.table.get(&cas)?.seen.clone())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch2::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket2>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Failure2> {
        let values = self.store.get_many(self.bucket2(&bucket)?, &keys).await?;
        Ok(keys.into_iter().zip(values).collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket2>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), Failure2> {
        Ok(self
            .store
            .set_many(self.bucket2(&bucket)?, key_values)
            .await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket2>,
        keys: Vec<String>,
    ) -> Result<(), Failure2> {
        Ok(self.store.delete_many(self.bucket2(&bucket)?, keys).await?)
    }
}
