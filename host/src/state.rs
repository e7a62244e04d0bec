//! The data each guest instance's `Store` holds.

use http_body_util::BodyExt;
use std::future::Future;
use std::sync::Arc;
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
    pub(crate) hooks: Outgoing,
    /// The request being served, as the guest's log lines name it.
    pub(crate) request: crate::logging::CurrentRequest,
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

/// Outgoing HTTP from the guest: refused with `HTTP-request-denied` unless the
/// request's host is one the operator allowed with `--allow-outbound`.
#[derive(Clone)]
pub(crate) struct Outgoing {
    allowed: Arc<[String]>,
}

type Completion = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl Outgoing {
    /// `allowed` holds lower-case `host` (any port) or `host:port` entries.
    pub(crate) fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    fn allows(&self, uri: &hyper::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let host = authority.host().to_ascii_lowercase();
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let host_port = format!("{host}:{port}");
        self.allowed
            .iter()
            .any(|entry| *entry == host || *entry == host_port)
    }
}

impl WasiHttpHooks for Outgoing {
    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _completion: Completion,
    ) -> Box<dyn Future<Output = Result<(hyper::Response<WasiBody>, Completion), HttpError>> + Send>
    {
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "guest's outgoing request denied: allow its host with --allow-outbound");
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Completion,
            ))
        })
    }
}
