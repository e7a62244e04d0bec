//! The data each guest instance's `Store` holds.

use std::future::Future;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

pub(crate) struct Host {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: DenyOutgoing,
    pub(crate) limits: StoreLimits,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// A replica answers requests; it makes none. Every outgoing request the guest
/// tries is refused with `HTTP-request-denied`.
pub(crate) struct DenyOutgoing;

type Completion = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for DenyOutgoing {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _completion: Completion,
    ) -> Box<dyn Future<Output = Result<(hyper::Response<WasiBody>, Completion), HttpError>> + Send>
    {
        tracing::warn!(uri = %request.uri(), "guest tried an outgoing request: denied");
        Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)))
    }
}
