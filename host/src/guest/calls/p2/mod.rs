//! wasi:http 0.2 (`wasi:http/proxy`) components: one request at a time per
//! instance, instances kept warm in a `pool`, each call run and judged in
//! `proxy`.

pub(crate) mod pool;
pub(crate) mod proxy;
