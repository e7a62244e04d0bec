//! A wasmCloud guest as wasmcloud-component 0.2.0 writes one: wasi:config
//! (0.2.0-draft), the store `default` through wasi:keyvalue (0.2.0-draft),
//! and wasi:logging through its `info!` and `error!`.

use wasmcloud_component::http::{self, ErrorCode};
use wasmcloud_component::wasi::{config, keyvalue};
use wasmcloud_component::{error, info, warn};

struct Component;

/// `name=value` from a query.
fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

/// `%XX` escapes decoded (the tests send control characters this way).
fn decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn failed(what: &str) -> impl FnOnce(keyvalue::store::Error) -> ErrorCode + '_ {
    move |e| ErrorCode::InternalError(Some(format!("{what}: {e:?}")))
}

impl http::Server for Component {
    fn handle(
        request: http::IncomingRequest,
    ) -> http::Result<http::Response<impl http::OutgoingBody>> {
        let (parts, _body) = request.into_parts();
        let query = parts.uri.query().unwrap_or_default();
        let body: String = match parts.uri.path() {
            "/hello" => "Hello from a wasmCloud guest".into(),
            "/variable" => match config::store::get(param(query, "name")) {
                Ok(Some(value)) => value,
                Ok(None) => "none".into(),
                Err(e) => format!("{e:?}"),
            },
            "/count" => {
                let bucket = keyvalue::store::open("default").map_err(failed("open"))?;
                let count = keyvalue::atomics::increment(&bucket, "count", 1)
                    .map_err(failed("increment"))?;
                count.to_string()
            }
            "/get" => {
                let bucket = keyvalue::store::open("default").map_err(failed("open"))?;
                match bucket.get(param(query, "key")).map_err(failed("get"))? {
                    Some(value) => String::from_utf8_lossy(&value).into_owned(),
                    None => "none".into(),
                }
            }
            "/set" => {
                let bucket = keyvalue::store::open("default").map_err(failed("open"))?;
                bucket
                    .set(param(query, "key"), param(query, "value").as_bytes())
                    .map_err(failed("set"))?;
                "set".into()
            }
            "/log" => {
                let message = decoded(param(query, "message"));
                match param(query, "level") {
                    "error" => error!(context: "sdk-test", "{message}"),
                    "warn" => warn!(context: "sdk-test", "{message}"),
                    _ => info!(context: "sdk-test", "{message}"),
                }
                "logged".into()
            }
            _ => "no such route".into(),
        };
        Ok(http::Response::new(body))
    }
}

http::export!(Component);
