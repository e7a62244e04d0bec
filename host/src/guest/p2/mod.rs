//! wasi:http 0.2 (`wasi:http/proxy`) components: one request at a time per
//! instance, instances kept warm in a `pool`, each call run and judged in
//! `proxy`; a response to HEAD opened without upstream's body-size check
//! (`head`).

pub(crate) mod head;
pub(crate) mod pool;
pub(crate) mod proxy;
