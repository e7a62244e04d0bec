//! A guest that misbehaves on request, so that tests can show the host
//! survives it. Each path is one kind of failure; `/ok` answers normally.

#![cfg(target_arch = "wasm32")]
// The generated bindings and export glue are `unsafe` FFI by nature.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "replica:server/replica",
    generate_all,
});

use exports::wasi::http::incoming_handler::Guest;
use std::sync::atomic::{AtomicU32, Ordering};
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Faulty;

impl Guest for Faulty {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        match path {
            "/ok" => respond(out, 200, b"ok"),
            "/count" => {
                // How many requests this instance has served: shows reuse.
                static SERVED: AtomicU32 = AtomicU32::new(0);
                let n = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
                respond(out, 200, n.to_string().as_bytes());
            }
            "/trap" => panic!("trapping on purpose"),
            "/slow" => {
                let ms: u64 = query
                    .strip_prefix("ms=")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(out, 200, b"slow done");
            }
            "/no-response" => {}
            "/loop" =>
            {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            "/oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            "/trap-mid-body" => {
                let body = start(out, 200);
                if let Ok(stream) = body.write() {
                    let _ = stream.blocking_write_and_flush(b"partial");
                }
                panic!("trapping after the response head was sent");
            }
            "/env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                respond(out, 200, vars.join("\n").as_bytes());
            }
            "/fs" => {
                let listing = std::fs::read_dir("/").map(|d| d.count());
                respond(out, 200, format!("{listing:?}").as_bytes());
            }
            _ => respond(out, 404, b"no such fault"),
        }
    }
}

fn start(out: ResponseOutparam, status: u16) -> OutgoingBody {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let body = response.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(response));
    body
}

fn respond(out: ResponseOutparam, status: u16, bytes: &[u8]) {
    let body = start(out, status);
    if let Ok(stream) = body.write() {
        for chunk in bytes.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

export!(Faulty);
