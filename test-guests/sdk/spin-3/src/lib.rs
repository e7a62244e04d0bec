//! A Spin guest as spin-sdk 7.0.0 writes one: variables and the default
//! key-value store (`spin:variables@3.0.0`, `spin:key-value@3.0.0`, whose
//! calls are async), over wasi:http 0.3.

use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;
use spin_sdk::key_value::Store;
use spin_sdk::variables;

/// `name=value` from a query.
fn param<'a>(query: &'a str, name: &str) -> &'a str {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let query = req.uri().query().unwrap_or_default().to_string();
    let query = query.as_str();
    let (status, body): (u16, String) = match req.uri().path() {
        "/hello" => (200, "Hello from a Spin 3 guest".into()),
        "/variable" => match variables::get(param(query, "name")).await {
            Ok(value) => (200, value),
            Err(e) => (404, format!("{e:?}")),
        },
        "/count" => {
            let store = Store::open_default().await?;
            let count = store
                .get("count")
                .await?
                .and_then(|v| String::from_utf8(v).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            store.set("count", count.to_string()).await?;
            (200, count.to_string())
        }
        "/get" => match Store::open_default().await?.get(param(query, "key")).await? {
            Some(value) => (200, String::from_utf8_lossy(&value).into_owned()),
            None => (404, "none".into()),
        },
        "/set" => {
            let store = Store::open_default().await?;
            store.set(param(query, "key"), param(query, "value")).await?;
            (200, "set".into())
        }
        "/keys" => {
            let mut keys = Store::open_default().await?.get_keys().await.collect().await?;
            keys.sort();
            (200, keys.join("\n"))
        }
        _ => (404, "no such route".into()),
    };
    Ok(spin_sdk::http::Response::builder()
        .status(status)
        .body(body)?)
}
