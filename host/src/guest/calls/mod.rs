//! One request's call into a guest instance, by wasi:http generation: `p2/`
//! (a pool of warm instances, one request at a time each) and `p3/`
//! (upstream's `ProxyHandler`, several requests at once per instance); how
//! often and how long either reuses an instance (`reuse`).

pub(crate) mod p2;
pub(crate) mod p3;
pub(crate) mod reuse;
