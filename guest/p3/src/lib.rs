//! The replica server as a `wasi:http/service` (0.3) component: the same
//! route functions as the 0.2 component (`replica_routes`), behind a
//! second thin binding layer. `handle` is async: a host may run many requests
//! in one instance at once.

#![cfg(target_arch = "wasm32")]

use replica_routes::routes::{Method, Reply, Routes};
use std::sync::OnceLock;
use wasip3::http::types::{ErrorCode, Fields, Method as WasiMethod, Request, Response};
use wasip3::{wit_future, wit_stream};

struct Replica;

wasip3::http::service::export!(Replica);

impl wasip3::exports::http::handler::Guest for Replica {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let method = match request.get_method() {
            WasiMethod::Get => Method::Get,
            WasiMethod::Head => Method::Head,
            _ => Method::Other,
        };
        let path = request.get_path_with_query().unwrap_or_default();
        respond(routes().route(method, &path), method == Method::Head)
    }
}

/// The replies, prepared on an instance's first request (see the 0.2 glue).
fn routes() -> &'static Routes {
    static ROUTES: OnceLock<Routes> = OnceLock::new();
    ROUTES.get_or_init(|| Routes::new(std::env::var("SERVER_ID").ok().as_deref()))
}

/// `reply` as a response; HEAD states GET's headers and sends no body.
fn respond(reply: &'static Reply, head: bool) -> Result<Response, ErrorCode> {
    let headers = Fields::from_list(&reply.headers)
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    // No trailers: the future's default value once its writer is dropped.
    let (_no_trailers, trailers) = wit_future::new(|| Ok(None));
    let contents = (!head && !reply.body.is_empty()).then(|| {
        let (mut writer, reader) = wit_stream::new();
        // Written once the host reads it, after `handle` has returned.
        wasip3::spawn(async move {
            writer.write_all(reply.body.clone()).await;
        });
        reader
    });
    let (response, _sent) = Response::new(headers, contents, trailers);
    response
        .set_status_code(reply.status)
        .map_err(|()| ErrorCode::InternalError(Some("bad status".into())))?;
    Ok(response)
}
