//! The benchmark's ceiling: the replica's routes answered by plain hyper on
//! tokio, with the same bytes as the guest, and no WebAssembly at all. Like
//! the host, it serves HTTP/1.1 and cleartext HTTP/2 on one port, told apart
//! per connection by a look at its first bytes, each with hyper's own builder
//! (the host waits for a preface that comes in pieces; the benchmark's
//! clients send it whole).
//!
//! `SERVER_ID=1 replica-native 127.0.0.1:5000`

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

struct Replies {
    home: Bytes,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5000".into());
    let id = std::env::var("SERVER_ID").unwrap_or_default();
    let home = serde_json::json!({
        "message": format!("Hello from Server: {id}"),
        "status": "successful",
    });
    let replies = Arc::new(Replies {
        home: Bytes::from(home.to_string()),
    });
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let replies = replies.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let replies = replies.clone();
                async move { Ok::<_, Infallible>(route(&replies, &req)) }
            });
            let mut first = [0u8; 4];
            let http2 = matches!(stream.peek(&mut first).await, Ok(4)) && &first == b"PRI ";
            let io = TokioIo::new(stream);
            if http2 {
                let builder = http2::Builder::new(TokioExecutor::new());
                let _ = Box::pin(builder.serve_connection(io, service)).await;
            } else {
                let _ = http1::Builder::new().serve_connection(io, service).await;
            }
        });
    }
}

fn route(replies: &Replies, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let json = |status, body: Bytes| {
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, "application/json".parse().expect("valid"));
        response
    };
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    match (get, req.uri().path()) {
        (true, "/home") => json(StatusCode::OK, replies.home.clone()),
        (true, "/heartbeat") => Response::new(Full::new(Bytes::new())),
        (false, "/home" | "/heartbeat") => {
            let body = Bytes::from_static(br#"{"detail":"Method Not Allowed"}"#);
            let mut response = json(StatusCode::METHOD_NOT_ALLOWED, body);
            response
                .headers_mut()
                .insert(ALLOW, "GET, HEAD".parse().expect("valid"));
            response
        }
        _ => json(
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"detail":"Not Found"}"#),
        ),
    }
}
