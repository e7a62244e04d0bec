//! HEAD for 0.2 guests: a response may declare the content-length of its GET
//! and write no body (as axum does), or write the body anyway (as many
//! frameworks do); either is a correct answer to HEAD.
//!
//! Upstream's `outgoing-response.body` checks what the guest writes against
//! the content-length it declared, and `outgoing-body.finish` fails a body
//! that is short of it (`HttpResponseBodySize`, which a guest that unwraps
//! it traps on). Answering HEAD, that check is wrong: here the body is
//! opened without it (the headers are out of the response while upstream
//! opens it, then put back), and what the guest writes is dropped on the way
//! out (`serve/response.rs`).

use crate::guest::sandbox::Host;
use anyhow::{Result, anyhow};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::HostOutgoingResponse as _;
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::HostOutgoingResponse;

/// The wasi:http 0.2 types interface as upstream links it.
const TYPES: &str = "wasi:http/types@0.2.12";

/// Puts this host's `outgoing-response.body` in place of upstream's, which
/// it calls.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> Result<()> {
    linker.allow_shadowing(true);
    let defined = linker
        .instance(TYPES)
        .and_then(|mut types| types.func_wrap("[method]outgoing-response.body", body));
    linker.allow_shadowing(false);
    defined.map_err(|e| anyhow!(e))
}

type Opened = Result<Resource<HostOutgoingBody>, ()>;

fn body(
    mut store: StoreContextMut<'_, Host>,
    (response,): (Resource<HostOutgoingResponse>,),
) -> wasmtime::Result<(Opened,)> {
    let host = store.data_mut();
    if !host.answering_head() {
        return Ok((host.http().body(response)?,));
    }
    let rep = response.rep();
    let mut http = host.http();
    let headers = std::mem::take(&mut http.table.get_mut(&response)?.headers);
    let opened = http.body(response);
    // The same response, whatever `body` did with its handle.
    let again = Resource::<HostOutgoingResponse>::new_borrow(rep);
    if let Ok(response) = http.table.get_mut(&again) {
        response.headers = headers;
    }
    Ok((opened?,))
}
