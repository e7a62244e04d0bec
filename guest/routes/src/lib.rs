//! The replica server's request logic: which reply a method and path get
//! ([`routes`]) and the self-description it serves ([`openapi`]). Plain Rust,
//! free of WASI, so that it is unit-tested natively and both components (the
//! 0.2 one in `guest/p2/`, the 0.3 one in `guest/p3/`) are thin glue around it.

pub mod openapi;
pub mod routes;
