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
            "/print" => {
                println!("hello from the guest");
                eprintln!("and a warning");
                respond(out, 200, b"printed");
            }
            // One line in six pieces, each through a stderr handle of its
            // own (what `print!` does in many toolchains), then a line left
            // without its newline.
            "/print-pieces" => {
                for piece in ["start a print ", "1", "2", "3", "4", "\n"] {
                    let stderr = wasi::cli::stderr::get_stderr();
                    let _ = stderr.blocking_write_and_flush(piece.as_bytes());
                }
                let stdout = wasi::cli::stdout::get_stdout();
                let _ = stdout.blocking_write_and_flush(b"no newline at the end");
                respond(out, 200, b"printed");
            }
            // Sends the request's body back as it reads it, and ends the
            // response normally however the reading ends (as a simple echo
            // does): the head goes out before the body is read.
            "/echo" => echo(&request, start(out, 200)),
            // Reads what it can of the request's body, then answers 200
            // with it, whether or not the reading failed.
            "/echo-after" => {
                let mut got = Vec::new();
                if let Ok(body) = request.consume()
                    && let Ok(stream) = body.stream()
                {
                    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                        got.extend(chunk);
                    }
                }
                respond(out, 200, &got);
            }
            // Tells this guest from the replica guest in the hot-swap tests.
            "/home" => respond(out, 200, b"faulty-home"),
            // Healthy for a load balancer, as the replica guest is.
            "/heartbeat" => respond(out, 200, b""),
            "/fetch" => match fetch(query, None) {
                Ok(body) => respond(out, 200, &body),
                Err(why) => respond(out, 502, why.as_bytes()),
            },
            // As /fetch, with a `traceparent` of the guest's own, which the
            // host must leave as it is.
            "/fetch-in-own-trace" => match fetch(query, Some(OWN_TRACEPARENT)) {
                Ok(body) => respond(out, 200, &body),
                Err(why) => respond(out, 502, why.as_bytes()),
            },
            "/body" => match read_body(&request) {
                Ok(body) => respond(out, 200, body.len().to_string().as_bytes()),
                Err(why) => respond(out, 400, why.as_bytes()),
            },
            "/count" => {
                // How many requests this instance has served: shows reuse.
                static SERVED: AtomicU32 = AtomicU32::new(0);
                let n = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
                respond(out, 200, n.to_string().as_bytes());
            }
            "/trap" => panic!("trapping on purpose"),
            "/slow" => {
                // Logged, so that a test can wait until the request is in the guest.
                println!("slow request started");
                sleep_ms(query_ms(query));
                respond(out, 200, b"slow done");
            }
            "/no-response" => {}
            "/loop" => {
                println!("looping");
                spin()
            }
            "/oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            // The head goes out as 200 (the guest waits, so the host sends
            // it), then the guest fails: `?length=N` declares a
            // content-length, otherwise the body is chunked.
            "/trap-mid-body" => {
                let _body = start_partial(out, query);
                sleep_ms(50);
                panic!("trapping after the response head was sent");
            }
            // Sets a 200 head and traps at once, before the host sent anything.
            "/trap-after-head" => {
                // The head is set, then a trap at once: no host call between
                // them (a panic's message would be one, and so would writing
                // a body), so the host sees the failure before it sends anything.
                let _body = start(out, 200);
                std::process::abort()
            }
            "/loop-mid-body" => {
                let _body = start_partial(out, query);
                println!("looping after the head");
                spin()
            }
            "/socket" => {
                // The guest has no sockets: connecting anywhere must fail.
                let outcome = std::net::TcpStream::connect(query).map(|_| ());
                respond(out, 200, format!("{outcome:?}").as_bytes());
            }
            "/env" => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                respond(out, 200, vars.join("\n").as_bytes());
            }
            "/fs" => {
                let listing = std::fs::read_dir("/").map(|d| d.count());
                respond(out, 200, format!("{listing:?}").as_bytes());
            }
            // The authority the host gave the request.
            "/authority" => {
                let authority = request.authority().unwrap_or_default();
                respond(out, 200, authority.as_bytes());
            }
            // Declares its content-length and writes the body whatever the
            // method, HEAD included (as many frameworks do).
            "/head-body" => respond_declared(out, 200, b"a body written for HEAD too", true),
            // Declares its content-length and writes no body for HEAD (as
            // axum does): upstream's body-size check would call that short.
            "/head-declared" => {
                let head = matches!(request.method(), wasi::http::types::Method::Head);
                respond_declared(out, 200, b"a body not written for HEAD", !head);
            }
            // Answers with the status of `?code=N` and a body.
            "/status" => {
                let code = query.strip_prefix("code=").and_then(|c| c.parse().ok());
                respond(out, code.unwrap_or(200), b"a body");
            }
            // Writes `?bytes=N` bytes of body.
            "/big" => {
                let bytes = query.strip_prefix("bytes=").and_then(|n| n.parse().ok());
                let body = start(out, 200);
                if let Ok(stream) = body.write() {
                    let chunk = [b'x'; 4096];
                    let mut left: usize = bytes.unwrap_or(1 << 20);
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if stream.blocking_write_and_flush(&chunk[..n]).is_err() {
                            break;
                        }
                        left -= n;
                    }
                }
                let _ = OutgoingBody::finish(body, None);
            }
            // Prints a line that tries to forge log lines of its own.
            "/forge" => {
                println!("ok\r2026-12-01T00:00:00Z ERROR replica_host: FAKE line\u{1b}[2K\u{7}");
                respond(out, 200, b"forged");
            }
            // Makes the host hold memory: `?n=N` header fields of up to
            // 64 KiB each (values appended until the host refuses), kept by
            // the instance across requests with `&keep`.
            "/hoard-fields" => {
                let n = query_number(query, "n").unwrap_or(10_000);
                let kept = hoard_fields(n, query.contains("keep"));
                respond(out, 200, kept.to_string().as_bytes());
            }
            // The same with `?n=N` responses, each with 64 KiB of body
            // written into it and never sent.
            "/hoard-bodies" => {
                let n = query_number(query, "n").unwrap_or(10_000);
                let kept = hoard_bodies(n);
                respond(out, 200, kept.to_string().as_bytes());
            }
            _ => respond(out, 404, b"no such fault"),
        }
    }
}

/// The trace context `/fetch-in-own-trace` sends.
const OWN_TRACEPARENT: &str = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";

/// GETs `url` (http://host:port/path) through wasi:http/outgoing-handler,
/// with `traceparent` if given.
fn fetch(url: &str, traceparent: Option<&str>) -> Result<Vec<u8>, String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{OutgoingRequest, Scheme};
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = Fields::new();
    if let Some(traceparent) = traceparent {
        headers
            .append("traceparent", traceparent.as_bytes())
            .map_err(|e| format!("{e:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(if path.is_empty() { "/" } else { path }))
        .map_err(|()| "bad path")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken")?
        .map_err(|e| format!("{e:?}"))?;
    let body = response.consume().map_err(|()| "no body")?;
    read_all(&body.stream().map_err(|()| "no stream")?)
}

/// Copies the request's body into `body` as it comes, then finishes it.
fn echo(request: &IncomingRequest, body: OutgoingBody) {
    if let Ok(incoming) = request.consume()
        && let Ok(input) = incoming.stream()
        && let Ok(output) = body.write()
    {
        while let Ok(chunk) = input.blocking_read(64 * 1024) {
            if output.blocking_write_and_flush(&chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

/// Reads the whole request body.
fn read_body(request: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = request.consume().map_err(|()| "no body")?;
    read_all(&body.stream().map_err(|()| "no stream")?)
        .map_err(|e| format!("body read failed: {e}"))
}

/// Reads a stream to its end.
fn read_all(stream: &wasi::io::streams::InputStream) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend(chunk),
            Err(wasi::io::streams::StreamError::Closed) => return Ok(bytes),
            Err(e) => return Err(format!("{e:?}")),
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
            if fields.append(&format!("x-{j}"), &value.to_vec()).is_err() {
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

/// Makes `n` responses and writes 64 KiB into each one's body, never sending
/// them; returns how many it made.
fn hoard_bodies(n: usize) -> usize {
    let chunk = [b'b'; 4096];
    // Dropped in the reverse order: each stream before its body, each body
    // before its response.
    let mut responses = Vec::new();
    let mut bodies = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..n {
        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { break };
        if let Ok(stream) = body.write() {
            let mut written = 0;
            while written < 64 * 1024 {
                match stream.check_write() {
                    Ok(0) | Err(_) => break,
                    Ok(permitted) => {
                        let n = (permitted as usize).min(chunk.len());
                        if stream.write(&chunk[..n]).is_err() {
                            break;
                        }
                        written += n;
                    }
                }
            }
            streams.push(stream);
        }
        bodies.push(body);
        responses.push(response);
    }
    responses.len()
}

/// `ms=N` from a query, or one second.
fn query_ms(query: &str) -> u64 {
    query
        .strip_prefix("ms=")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn sleep_ms(ms: u64) {
    wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
}

/// Runs until the host interrupts it.
fn spin() -> ! {
    #[allow(clippy::empty_loop)]
    loop {}
}

/// Sends a 200 head and the start of a body that never completes.
fn start_partial(out: ResponseOutparam, query: &str) -> OutgoingBody {
    let headers = Fields::new();
    if let Some(length) = query.strip_prefix("length=") {
        let _ = headers.append("content-length", length.as_bytes());
    }
    let body = start_with(out, 200, headers);
    if let Ok(stream) = body.write() {
        let _ = stream.blocking_write_and_flush(b"partial");
    }
    body
}

fn start(out: ResponseOutparam, status: u16) -> OutgoingBody {
    start_with(out, status, Fields::new())
}

fn start_with(out: ResponseOutparam, status: u16, headers: Fields) -> OutgoingBody {
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let body = response.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(response));
    body
}

/// Answers `bytes` with their content-length declared, writing them only if
/// `write`; traps if the host refuses the body as written (as `wstd`'s
/// guests do).
fn respond_declared(out: ResponseOutparam, status: u16, bytes: &[u8], write: bool) {
    let headers = Fields::new();
    let _ = headers.append("content-length", bytes.len().to_string().as_bytes());
    let body = start_with(out, status, headers);
    if write {
        let stream = body.write().expect("a body stream");
        stream
            .blocking_write_and_flush(bytes)
            .expect("the body written");
        drop(stream);
    }
    OutgoingBody::finish(body, None).expect("the body finished");
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
