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

//! `store.rs` holds the store the bindings (`bindings.rs`) reach: its bounds,
//! its metrics, and which backend keeps the data.

mod bindings;
mod keys;
mod memory;
mod redis;
mod store;

pub(crate) use bindings::{KeyValueView, add_to_linker};
pub(crate) use store::KeyValue;
