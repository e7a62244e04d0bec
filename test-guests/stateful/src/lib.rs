//! A guest from elsewhere, as far as this host knows: a plain wasi:http 0.2
//! component that reads its settings through `wasi:config/store` and keeps
//! state in `wasi:keyvalue` (store, atomics, batch), as components written
//! for `wasmtime serve -Sconfig -Skeyvalue`, Spin or wasmCloud do. Each path
//! is one call; the tests check what the host's store kept.
//!
//! Queries are `name=value&...`, unescaped. A store error is a 500 whose body
//! starts with `keyvalue error:` (the host's own errors are JSON).

#![cfg(target_arch = "wasm32")]
// The generated bindings and export glue are `unsafe` FFI by nature.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "replica:server/stateful",
    generate_all,
});

// `wit/deps` holds several versions of wasi:config and wasi:keyvalue (for
// Spin's and wasmCloud's guests), so wit-bindgen names each package module
// with its version; this guest imports rc.1 and 0.2.0-draft.

use exports::wasi::http::incoming_handler::Guest;
use wasi::config0_2_0_rc_1::store as config;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::keyvalue0_2_0_draft::{atomics, batch, store};

struct Stateful;

impl Guest for Stateful {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        let q = Query(query);
        let (status, body) = match path {
            "/heartbeat" => (200, Vec::new()),
            "/config" => match config::get(&q.get("key")) {
                Ok(Some(value)) => (200, value.into_bytes()),
                Ok(None) => (404, b"none".to_vec()),
                Err(e) => (500, format!("config error: {e:?}").into_bytes()),
            },
            "/config-all" => match config::get_all() {
                Ok(mut all) => {
                    all.sort();
                    let lines: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    (200, lines.join("\n").into_bytes())
                }
                Err(e) => (500, format!("config error: {e:?}").into_bytes()),
            },
            _ => match keyvalue(path, &q, &request) {
                Ok(answer) => answer,
                Err(e) => (500, format!("keyvalue error: {e:?}").into_bytes()),
            },
        };
        respond(out, status, &body);
    }
}

/// The `/kv/...` paths, each one call (or one pass) on the bucket `bucket`.
fn keyvalue(
    path: &str,
    q: &Query,
    request: &IncomingRequest,
) -> Result<(u16, Vec<u8>), store::Error> {
    let bucket = store::open(&q.get("bucket"))?;
    let key = &q.get("key");
    Ok(match path {
        "/kv/get" => match bucket.get(key)? {
            Some(value) => (200, value),
            None => (404, b"none".to_vec()),
        },
        "/kv/set" => {
            bucket.set(key, &read_body(request))?;
            (204, Vec::new())
        }
        "/kv/delete" => {
            bucket.delete(key)?;
            (204, Vec::new())
        }
        "/kv/exists" => (200, bucket.exists(key)?.to_string().into_bytes()),
        "/kv/incr" => {
            let by = q.get("by").parse().unwrap_or(1);
            (
                200,
                atomics::increment(&bucket, key, by)?
                    .to_string()
                    .into_bytes(),
            )
        }
        // Every key, following the cursors; the page count in the last line.
        "/kv/list" => {
            let (mut keys, mut cursor, mut pages) = (Vec::new(), None, 0);
            loop {
                let page = bucket.list_keys(cursor)?;
                pages += 1;
                keys.extend(page.keys);
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            keys.sort();
            keys.push(format!("pages={pages}"));
            (200, keys.join("\n").into_bytes())
        }
        // `count` keys `k0`..., each holding `size` bytes, in one set-many.
        "/kv/fill" => {
            let count: usize = q.get("count").parse().unwrap_or(1);
            let size: usize = q.get("size").parse().unwrap_or(1);
            let entries: Vec<(String, Vec<u8>)> = (0..count)
                .map(|i| (format!("k{i}"), vec![b'v'; size]))
                .collect();
            batch::set_many(&bucket, &entries)?;
            (204, Vec::new())
        }
        "/kv/get-many" => {
            let keys = q.list("keys");
            let found = batch::get_many(&bucket, &keys)?;
            let lines: Vec<String> = keys
                .iter()
                .zip(found)
                .map(|(key, got)| match got {
                    Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                    None => format!("{key}: none"),
                })
                .collect();
            (200, lines.join("\n").into_bytes())
        }
        "/kv/delete-many" => {
            batch::delete_many(&bucket, &q.list("keys"))?;
            (204, Vec::new())
        }
        _ => (404, b"no such call".to_vec()),
    })
}

/// A query string, looked up by name.
struct Query<'a>(&'a str);

impl Query<'_> {
    fn get(&self, name: &str) -> String {
        self.0
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    }

    fn list(&self, name: &str) -> Vec<String> {
        let all = self.get(name);
        all.split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    let Ok(stream) = body.stream() else {
        return bytes;
    };
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend(chunk);
    }
    bytes
}

fn respond(out: ResponseOutparam, status: u16, bytes: &[u8]) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        for chunk in bytes.chunks(4096) {
            let _ = stream.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

export!(Stateful);
