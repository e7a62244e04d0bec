//! The misbehaving test guest as a `wasi:http/service` (0.3) component: the
//! 0.2 faulty guest's faults where 0.3 has them, plus what only 0.3 can do
//! (requests that overlap in one instance). Each path is one kind of failure;
//! `/ok` answers normally.

#![cfg(target_arch = "wasm32")]

use std::sync::atomic::{AtomicU32, Ordering};
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::wit_bindgen::rt::async_support::StreamResult;
use wasip3::{wit_future, wit_stream};

struct Faulty;

wasip3::http::service::export!(Faulty);

/// Requests this instance is serving now, and the most it ever served at once.
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
static MOST_AT_ONCE: AtomicU32 = AtomicU32::new(0);

impl wasip3::exports::http::handler::Guest for Faulty {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path_with_query = request.get_path_with_query().unwrap_or_default();
        let (path, query) = path_with_query
            .split_once('?')
            .unwrap_or((&path_with_query, ""));
        match path {
            "/ok" => respond(200, b"ok"),
            // Healthy for a load balancer, as the replica guest is.
            "/heartbeat" => respond(200, b""),
            "/print" => {
                println!("hello from the guest");
                eprintln!("and a warning");
                respond(200, b"printed")
            }
            // Tells this guest from the others in the hot-swap tests.
            "/home" => respond(200, b"faulty-p3-home"),
            "/count" => {
                // How many requests this instance has served: shows reuse.
                static SERVED: AtomicU32 = AtomicU32::new(0);
                let n = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
                respond(200, n.to_string().as_bytes())
            }
            "/most-at-once" => {
                let most = MOST_AT_ONCE.load(Ordering::Relaxed);
                respond(200, most.to_string().as_bytes())
            }
            "/env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                respond(200, vars.join("\n").as_bytes())
            }
            "/slow" => {
                // Logged, so that a test can wait until the request is in the guest.
                println!("slow request started");
                let now = IN_FLIGHT.fetch_add(1, Ordering::Relaxed) + 1;
                MOST_AT_ONCE.fetch_max(now, Ordering::Relaxed);
                sleep_ms(query_ms(query)).await;
                IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
                respond(200, b"slow done")
            }
            "/trap" => panic!("trapping on purpose"),
            "/oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            "/loop" => {
                println!("looping");
                #[allow(clippy::empty_loop)]
                loop {}
            }
            // Does not answer for an hour, without using the CPU.
            "/hang" => {
                println!("hanging");
                sleep_ms(3_600_000).await;
                respond(200, b"woke up")
            }
            // Answers with an error code instead of a response.
            "/no-response" => Err(ErrorCode::InternalError(Some(
                "no response, on purpose".into(),
            ))),
            // Sends the request's body back as it reads it, and ends the
            // response normally however the reading ends (as a simple echo
            // does): the head goes out before the body is read.
            "/echo" => {
                let (mut input, _trailers) = Request::consume_body(request, unit());
                let (mut output, reader) = wit_stream::new();
                wasip3::spawn(async move {
                    loop {
                        let (result, chunk) = input.read(Vec::with_capacity(64 * 1024)).await;
                        if !chunk.is_empty() && !output.write_all(chunk).await.is_empty() {
                            break;
                        }
                        if !matches!(result, StreamResult::Complete(_)) {
                            break;
                        }
                    }
                });
                with_body(200, Some(reader))
            }
            // Reads the whole body and answers its length, or 400 if the
            // reading failed.
            "/body" => {
                let (mut input, _trailers) = Request::consume_body(request, unit());
                let mut length = 0;
                loop {
                    let (result, chunk) = input.read(Vec::with_capacity(64 * 1024)).await;
                    length += chunk.len();
                    match result {
                        StreamResult::Complete(_) => {}
                        StreamResult::Dropped => break,
                        StreamResult::Cancelled => return respond(400, b"read cancelled"),
                    }
                }
                respond(200, length.to_string().as_bytes())
            }
            // Reads what it can of the request's body, then answers 200
            // with it, whether or not the reading failed.
            "/echo-after" => {
                let (input, _trailers) = Request::consume_body(request, unit());
                let got = input.collect().await;
                respond(200, &got)
            }
            // Writes its whole body (declaring its length with `?length`),
            // ends it, then traps in a task of its own: the response was
            // complete before the instance failed.
            "/trap-after-body" => {
                let body = b"a complete body, then a trap".to_vec();
                let headers = Fields::new();
                if query.contains("length") {
                    headers
                        .append("content-length", body.len().to_string().as_bytes())
                        .map_err(|_| ErrorCode::InternalError(Some("bad header".into())))?;
                }
                let (mut writer, reader) = wit_stream::new();
                let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
                wasip3::spawn(async move {
                    writer.write_all(body).await;
                    drop(writer);
                    let _ = trailers_tx.write(Ok(None)).await;
                    panic!("trapping after the response was complete");
                });
                let (response, _sent) = Response::new(headers, Some(reader), trailers);
                Ok(response)
            }
            // The 200 head goes out, then the guest traps while writing the body.
            "/trap-mid-body" => {
                let (mut writer, reader) = wit_stream::new();
                wasip3::spawn(async move {
                    writer.write_all(b"partial".to_vec()).await;
                    sleep_ms(50).await;
                    panic!("trapping after the response head was sent");
                });
                with_body(200, Some(reader))
            }
            // The authority the host gave the request.
            "/authority" => respond(200, request.get_authority().unwrap_or_default().as_bytes()),
            // Declares its content-length and writes the body whatever the
            // method, HEAD included.
            "/head-body" => respond_declared(b"a body written for HEAD too", true),
            // Declares its content-length and writes no body for HEAD.
            "/head-declared" => {
                let head = matches!(request.get_method(), wasip3::http::types::Method::Head);
                respond_declared(b"a body not written for HEAD", !head)
            }
            // Answers with the status of `?code=N` and a body.
            "/status" => {
                let code = query.strip_prefix("code=").and_then(|c| c.parse().ok());
                respond(code.unwrap_or(200), b"a body")
            }
            // Makes the host hold memory: `?n=N` header fields of up to
            // 64 KiB each, kept by the instance across requests with `&keep`.
            "/hoard-fields" => {
                let n = query_number(query, "n").unwrap_or(10_000);
                let kept = hoard_fields(n, query.contains("keep"));
                respond(200, kept.to_string().as_bytes())
            }
            _ => respond(404, b"no such fault"),
        }
    }
}

/// `name=N` from a query.
fn query_number(query: &str, name: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

/// Fields an instance keeps across its requests (`/hoard-fields?keep`).
static KEPT: std::sync::Mutex<Vec<Fields>> = std::sync::Mutex::new(Vec::new());

/// Makes `n` fields, each filled with 1 KiB values up to 64 KiB (or until the
/// host refuses one); returns how many it made.
fn hoard_fields(n: usize, keep: bool) -> usize {
    let value = [b'v'; 1024];
    let mut hoard = Vec::new();
    for i in 0..n {
        let fields = Fields::new();
        for j in 0..64 {
            if fields.append(&format!("x-{j}"), &value).is_err() {
                break;
            }
        }
        hoard.push(fields);
        if i % 1000 == 999 {
            println!("holding {} fields", i + 1);
        }
    }
    let made = hoard.len();
    if keep && let Ok(mut kept) = KEPT.lock() {
        kept.extend(hoard);
    }
    made
}

/// A 200 with `bytes`' content-length declared, written only if `write`.
fn respond_declared(bytes: &[u8], write: bool) -> Result<Response, ErrorCode> {
    let headers = Fields::new();
    headers
        .append("content-length", bytes.len().to_string().as_bytes())
        .map_err(|_| ErrorCode::InternalError(Some("bad header".into())))?;
    let (mut writer, reader) = wit_stream::new();
    let bytes = if write { bytes.to_vec() } else { Vec::new() };
    wasip3::spawn(async move {
        writer.write_all(bytes).await;
    });
    let (_no_trailers, trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(reader), trailers);
    Ok(response)
}

/// A future that resolves `Ok(())`: the request's body is not refused.
fn unit() -> wasip3::wit_bindgen::rt::async_support::FutureReader<Result<(), ErrorCode>> {
    wit_future::new(|| Ok(())).1
}

/// `ms=N` from a query, or one second.
fn query_ms(query: &str) -> u64 {
    query
        .strip_prefix("ms=")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

async fn sleep_ms(ms: u64) {
    wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
}

fn respond(status: u16, bytes: &[u8]) -> Result<Response, ErrorCode> {
    let (mut writer, reader) = wit_stream::new();
    let bytes = bytes.to_vec();
    wasip3::spawn(async move {
        writer.write_all(bytes).await;
    });
    with_body(status, Some(reader))
}

fn with_body(
    status: u16,
    contents: Option<wasip3::wit_bindgen::rt::async_support::StreamReader<u8>>,
) -> Result<Response, ErrorCode> {
    let (_no_trailers, trailers) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), contents, trailers);
    response
        .set_status_code(status)
        .map_err(|()| ErrorCode::InternalError(Some("bad status".into())))?;
    Ok(response)
}
