//! The guest side: from a component file to instances answering requests,
//! in five groups, each a folder (or a file) using only those after it:
//!
//! - `serving`: the component being served and each worker's instances of
//!   it, replaced on a hot swap;
//! - `calls/`: one request's call into an instance, by wasi:http generation
//!   (`p2/`: a pool of warm instances; `p3/`: instances serving several
//!   requests at once), and how long instances are reused;
//! - `results/`: what a call comes to (`answer`), its body (`reply`), and the
//!   place it holds under `--max-concurrency` (`slot`);
//! - `sandbox/`: what an instance may see and use, one folder per interface
//!   family (`cli/`, `http/`, `keyvalue/`, ...), its store's data and its
//!   memory budget;
//! - `component/`: making a component: its world, its engine, the compile
//!   cache, linking it against the sandbox, and what is provided.
//!
//! Uses `telemetry/` only.

pub(crate) mod calls;
pub(crate) mod component;
pub(crate) mod results;
pub(crate) mod sandbox;
pub(crate) mod serving;
