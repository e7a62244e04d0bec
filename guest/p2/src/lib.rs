//! The replica server as a `wasi:http/proxy` (0.2) component: thin glue between
//! `wasi:http/incoming-handler` and the plain route functions of
//! `replica_routes` (`guest/routes/`), which the 0.3 component in `guest/p3/`
//! shares.

#[cfg(target_arch = "wasm32")]
// The generated bindings and export glue are `unsafe` FFI by nature.
#[allow(unsafe_code)]
mod component {
    use replica_routes::routes::{Method, Reply, Routes};

    wit_bindgen::generate!({
        path: "../../wit",
        world: "replica:server/replica",
        generate_all,
    });

    use exports::wasi::http::incoming_handler::Guest;
    use std::sync::OnceLock;
    use wasi::http::types::{
        Fields, IncomingRequest, Method as WasiMethod, OutgoingBody, OutgoingResponse,
        ResponseOutparam,
    };
    use wasi::io::streams::{OutputStream, StreamError};

    struct Replica;

    impl Guest for Replica {
        fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
            let method = match request.method() {
                WasiMethod::Get => Method::Get,
                WasiMethod::Head => Method::Head,
                _ => Method::Other,
            };
            let path = request.path_with_query().unwrap_or_default();
            let reply = routes().route(method, &path);
            respond(reply, method == Method::Head, response_out);
        }
    }

    /// The replies, prepared on an instance's first request: its environment,
    /// and so its SERVER_ID, is fixed when the host creates it, and a host may
    /// reuse an instance for many requests.
    fn routes() -> &'static Routes {
        static ROUTES: OnceLock<Routes> = OnceLock::new();
        ROUTES.get_or_init(|| Routes::new(std::env::var("SERVER_ID").ok().as_deref()))
    }

    /// Sends `reply`, leaving the body out for HEAD.
    fn respond(reply: &Reply, head: bool, response_out: ResponseOutparam) {
        // HEAD states GET's content-length and writes nothing: HTTP sends no
        // body after a HEAD response.
        let headers = match Fields::from_list(&reply.headers) {
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
            if write_all(&stream, &reply.body).is_err() {
                // The client went away; nothing more to do.
                return;
            }
        }
        let _ = OutgoingBody::finish(body, None);
    }

    /// Writes `bytes` with as few host calls as the stream allows: one
    /// `check-write` and one `write` when it has room, waiting only when not.
    fn write_all(stream: &OutputStream, mut bytes: &[u8]) -> Result<(), StreamError> {
        while !bytes.is_empty() {
            let room = usize::try_from(stream.check_write()?).unwrap_or(usize::MAX);
            if room == 0 {
                stream.subscribe().block();
                continue;
            }
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            stream.write(now)?;
            bytes = rest;
        }
        stream.flush()
    }

    fn internal_error(why: &str) -> wasi::http::types::ErrorCode {
        wasi::http::types::ErrorCode::InternalError(Some(why.to_string()))
    }

    export!(Replica);
}
