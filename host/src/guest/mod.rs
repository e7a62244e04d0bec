//! The guest side: from a component file to instances answering requests.
//!
//! A file becomes a linked component (`world`, `engine`, `component`,
//! `cache`); `generation` holds the one being served and each worker's
//! instances of it, called through `p2/` (wasi:http 0.2: a pool of warm
//! instances) or `p3/` (wasi:http 0.3: instances serving several requests at
//! once). What an instance may see is its `sandbox`: its environment and
//! output (`output`), outgoing HTTP (`outbound`), wasi:config, and the
//! wasi:keyvalue store (`keyvalue/`), within its `memory` budget;
//! `interfaces` says which imports the host provides. A call comes to an `answer` whose body is a `reply`, while
//! it holds a `slot`. Uses `telemetry/` only.

pub(crate) mod answer;
pub(crate) mod cache;
pub(crate) mod component;
pub(crate) mod engine;
pub(crate) mod generation;
pub(crate) mod interfaces;
pub(crate) mod keyvalue;
pub(crate) mod memory;
pub(crate) mod outbound;
pub(crate) mod output;
pub(crate) mod p2;
pub(crate) mod p3;
pub(crate) mod reply;
pub(crate) mod reuse;
pub(crate) mod sandbox;
pub(crate) mod slot;
pub(crate) mod world;
