//! A key-value store that keeps what it is given, and every interface a
//! guest reaches it through: wasi:keyvalue at 0.2.0-draft (as `wasmtime
//! serve -Skeyvalue` and wasmCloud give it) and 0.2.0-draft2 (as Spin does),
//! in `wasi.rs`, and Spin's own key-value, 2.0.0 and 3.0.0, in `spin.rs`:
//! thin adapters over the one store (`store.rs`: its bounds, its metrics, its
//! backend), which lives in this process's memory ([`memory`]), shared by
//! every worker and instance, or in Redis ([`redis`], `--keyvalue-url`),
//! shared by every replica given the same URL.
//!
//! The bindings are this host's own: upstream's `wasmtime-wasi-keyvalue`
//! gives every `open` a copy of the preloaded data, so what a guest writes is
//! gone at its next request. A bucket's identifier (a Spin store's label) is
//! a namespace: `open("")` and `open("default")` never see each other's
//! keys, and Spin's `default` is wasi:keyvalue's `open("default")`. Every
//! call is checked against the size bounds before it reaches either backend,
//! and counted in the metrics.

mod keys;
mod memory;
mod redis;
mod spin;
mod store;
mod wasi;

pub(crate) use store::KeyValue;
pub(crate) use wasi::KeyValueView;

/// Adds every key-value interface this host gives to `linker`: wasi:keyvalue
/// at 0.2.0-draft and 0.2.0-draft2, Spin's 2.0.0, and, for 0.3 components
/// (`p3`), Spin's 3.0.0.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KeyValueView<'_>,
    p3: bool,
) -> wasmtime::Result<()> {
    wasi::add_to_linker(linker, view)?;
    spin::add_to_linker(linker, view, p3)
}
