//! wasi:http 0.3 (`wasi:http/service`) components, through upstream's
//! `ProxyHandler`: what a request comes to (`service`), and how this host
//! makes, runs and retires the instances (`worker`).

pub(crate) mod service;
pub(crate) mod worker;
