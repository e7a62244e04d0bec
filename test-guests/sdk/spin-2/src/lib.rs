//! A Spin guest as spin-sdk 5.2.0 writes one: variables and the default
//! key-value store (`fermyon:spin@2.0.0`), over wasi:http 0.2.

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::variables;

/// `name=value` from a query.
fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

#[http_component]
fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let query = req.query();
    let (status, body) = match req.path() {
        "/hello" => (200, "Hello from a Spin 2 guest".to_string()),
        "/variable" => match variables::get(param(query, "name")) {
            Ok(value) => (200, value),
            Err(e) => (404, format!("{e:?}")),
        },
        "/count" => {
            let store = Store::open_default()?;
            let count = store
                .get("count")?
                .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            store.set("count", count.to_string().as_bytes())?;
            (200, count.to_string())
        }
        "/get" => match Store::open_default()?.get(param(query, "key"))? {
            Some(value) => (200, String::from_utf8_lossy(&value).into_owned()),
            None => (404, "none".to_string()),
        },
        "/set" => {
            Store::open_default()?.set(param(query, "key"), param(query, "value").as_bytes())?;
            (200, "set".to_string())
        }
        "/keys" => {
            let mut keys = Store::open_default()?.get_keys()?;
            keys.sort();
            (200, keys.join("\n"))
        }
        _ => (404, "no such route".to_string()),
    };
    Ok(Response::builder().status(status).body(body).build())
}
