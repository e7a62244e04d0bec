//! The replica server as a `wasi:http/proxy` component: thin glue between
//! `wasi:http/incoming-handler` and the plain route functions in [`routes`].

pub mod routes;

#[cfg(target_arch = "wasm32")]
// The generated bindings and export glue are `unsafe` FFI by nature.
#[allow(unsafe_code)]
mod component {
    use crate::routes::{self, Method, Reply};

    wit_bindgen::generate!({
        path: "../wit",
        world: "replica:server/replica",
        generate_all,
    });

    use exports::wasi::http::incoming_handler::Guest;
    use wasi::http::types::{
        Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
        ResponseOutparam,
    };

    struct Replica;

    impl Guest for Replica {
        fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
            let method = match request.method() {
                WasiMethod::Get => Method::Get,
                WasiMethod::Head => Method::Head,
                _ => Method::Other,
            };
            let path = request.path_with_query().unwrap_or_default();
            // Read per request, so a reused instance sees what the host set.
            let server_id = std::env::var("SERVER_ID").ok();
            let reply = routes::route(method, &path, server_id.as_deref());
            respond(reply, method == Method::Head, response_out);
        }
    }

    /// Sends `reply`, leaving the body out for HEAD.
    fn respond(reply: Reply, head: bool, response_out: ResponseOutparam) {
        let mut fields: Vec<(String, Vec<u8>)> = reply
            .headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        // The exact length, so the host need not chunk; HEAD states GET's length.
        fields.push(("content-length".into(), reply.body.len().to_string().into()));
        let headers = match Fields::from_list(&fields) {
            Ok(headers) => headers,
            Err(e) => {
                ResponseOutparam::set(response_out, Err(internal_error(&format!("{e:?}"))));
                return;
            }
        };
        let response = OutgoingResponse::new(headers);
        // The statuses come from `routes`, all valid, so this cannot fail.
        let _ = response.set_status_code(reply.status);
        let Ok(body) = response.body() else {
            ResponseOutparam::set(response_out, Err(internal_error("body already taken")));
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        if !head && !reply.body.is_empty() {
            let Ok(stream) = body.write() else { return };
            // `blocking-write-and-flush` takes at most 4096 bytes a call.
            for chunk in reply.body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    // The client went away; nothing more to do.
                    return;
                }
            }
        }
        let _ = OutgoingBody::finish(body, None);
    }

    fn internal_error(why: &str) -> wasi::http::types::ErrorCode {
        wasi::http::types::ErrorCode::InternalError(Some(why.to_string()))
    }

    export!(Replica);
}
