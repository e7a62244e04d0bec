//! Traces, sent to a real OpenTelemetry collector (rotel, started here on
//! loopback) and read back from what it received: a request joins its
//! caller's trace (HTTP/1.1 and HTTP/2, through HAProxy too) with spans for
//! the instantiation, the guest's call, its key-value calls (memory and
//! Redis, 0.2 and 0.3 guests) and its outgoing requests, whose next hop joins
//! the same trace; failures are errors on their spans; a hot swap shows in
//! the spans that follow; the JSON log names each request's trace; the
//! `OTEL_*` variables are read as the SDK reads them; and a collector that
//! is down or silent costs the requests nothing.

mod common;

use common::collector::{Collector, Span};
use common::haproxy::Haproxy;
use common::needs::{Test, Tool};
use common::redis::Redis;
use common::{
    Server, client, eventually, faulty_guest, faulty_guest_p3, metric, replica_guest, run_host,
    scrape, sdk_guest, send, stateful_guest,
};
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() -> std::process::ExitCode {
    macro_rules! tests {
        ($($name:ident needs $($tool:ident)+),* $(,)?) => {
            vec![$(Test { name: stringify!($name), needs: &[$(Tool::$tool),+], run: $name }),*]
        };
    }
    common::needs::main(tests![
        a_request_joins_its_callers_trace_through_the_guest_and_the_next_hop needs Rotel,
        a_guests_own_traceparent_is_left_as_it_is needs Rotel,
        http2_requests_join_their_callers_trace needs Rotel Curl,
        a_trace_sent_to_haproxy_reaches_the_replica needs Rotel Haproxy,
        a_p3_guests_calls_are_traced_under_its_call needs Rotel,
        redis_calls_are_client_spans needs Rotel Redis,
        failures_are_errors_on_their_spans needs Rotel,
        a_hot_swap_shows_in_the_spans_that_follow needs Rotel,
        each_json_log_line_of_a_request_names_its_trace_and_span needs Rotel,
        the_sampler_is_parent_based_and_configured_the_standard_way needs Rotel,
        a_ratio_sampler_starts_its_share_of_traces needs Rotel,
        grpc_service_name_and_resource_attributes_are_read_the_standard_way needs Rotel,
        headers_and_the_traces_endpoint_are_read_the_standard_way needs Rotel,
        tracing_configuration_that_cannot_be_used_stops_the_host needs Rotel,
        a_collector_down_or_silent_fails_no_request needs Rotel,
    ])
}

/// A trace id and a parent span id, as a caller (a load balancer) sends them.
struct Caller {
    trace_id: String,
    span_id: String,
}

impl Caller {
    /// A distinct caller for each `n`.
    fn new(n: u32) -> Caller {
        let pid = std::process::id();
        Caller {
            trace_id: format!("{pid:08x}{n:08x}00000000000000a1"),
            span_id: format!("{n:08x}000000b2"),
        }
    }

    /// The `traceparent` it sends, sampled or not.
    fn traceparent(&self, sampled: bool) -> String {
        let flags = if sampled { "01" } else { "00" };
        format!("00-{}-{}-{flags}", self.trace_id, self.span_id)
    }
}

/// The host serving `guest`, exporting to `collector` over http/protobuf
/// with a short batch delay.
fn serve(guest: &Path, args: &[&str], env: &[(&str, &str)], collector: &Collector) -> Server {
    let endpoint = collector.http_endpoint();
    let mut all = vec![
        ("SERVER_ID", "1"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    all.extend_from_slice(env);
    Server::start(guest, args, &all)
}

/// `method` `url` with `traceparent`: status and body.
fn traced(method: &str, url: &str, traceparent: &str) -> (u16, String) {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("traceparent", traceparent)
        .header("tracestate", "lb=1")
        .body(())
        .expect("a request");
    let mut response = client().run(req).unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

/// The one span of `spans` named `name` under `parent` (its span id).
fn child<'a>(spans: &'a [Span], parent: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_id == parent && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name:?} under {parent}: {spans:#?}");
    found[0]
}

/// The SERVER span of `spans` whose parent is `parent`.
fn server_span<'a>(spans: &'a [Span], parent: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.kind == "SERVER" && s.parent_id == parent)
        .unwrap_or_else(|| panic!("no SERVER span under {parent}: {spans:#?}"))
}

fn has_server(spans: &[Span], parent: &str) -> bool {
    spans
        .iter()
        .any(|s| s.kind == "SERVER" && s.parent_id == parent)
}

/// The component's SHA-256, as the host's start-up line says.
fn digest(server: &Server, nth: usize) -> String {
    server
        .stderr()
        .match_indices("sha256 ")
        .nth(nth)
        .map(|(at, _)| server.stderr()[at + 7..at + 7 + 64].to_string())
        .unwrap_or_else(|| panic!("no sha256 #{nth} in\n{}", server.stderr()))
}

fn a_request_joins_its_callers_trace_through_the_guest_and_the_next_hop() {
    let collector = Collector::start();
    let b = serve(&stateful_guest(), &[], &[("SERVER_ID", "b")], &collector);
    let b_addr = b.addr.to_string();
    let a = serve(
        &faulty_guest(),
        &["--allow-outbound", &b_addr, "--metrics-route", "/fetch"],
        &[("SERVER_ID", "a")],
        &collector,
    );
    let stored = send(&client(), "POST", &b.url("/kv/set?bucket=b&key=k"), b"v").expect("set");
    assert_eq!(stored.status, 204);

    let caller = Caller::new(1);
    let (status, body) = traced(
        "GET",
        &a.url(&format!("/fetch?http://{b_addr}/kv/get?bucket=b&key=k")),
        &caller.traceparent(true),
    );
    assert_eq!((status, body.as_str()), (200, "v"));

    let spans = collector.trace(&caller.trace_id, |spans| {
        spans.iter().filter(|s| s.kind == "SERVER").count() == 2
            && spans.iter().any(|s| s.name == "get b")
    });
    // A: its SERVER span, under the caller's span.
    let a_server = server_span(&spans, &caller.span_id);
    assert_eq!(a_server.name, "GET /fetch");
    for (key, value) in [
        ("http.request.method", "GET"),
        ("url.path", "/fetch"),
        ("url.scheme", "http"),
        ("http.route", "/fetch"),
        ("network.protocol.version", "1.1"),
        ("server.address", "127.0.0.1"),
        ("client.address", "127.0.0.1"),
        ("http.response.status_code", "200"),
        ("replica.component.generation", "0"),
    ] {
        assert_eq!(a_server.attr(key), Some(value), "{key}: {a_server:#?}");
    }
    assert_eq!(
        a_server.attr("server.port"),
        Some(a.addr.port().to_string().as_str())
    );
    assert!(a_server.attr("client.port").is_some());
    assert!(a_server.attr("user_agent.original").is_some());
    assert_eq!(
        a_server.attr("replica.component.sha256"),
        Some(digest(&a, 0).as_str())
    );
    assert_eq!(a_server.status, "UNSET");
    let resource = |key: &str| a_server.resource.get(key).map(String::as_str);
    assert_eq!(resource("service.name"), Some("replica"));
    assert_eq!(resource("service.instance.id"), Some("a"));
    assert_eq!(resource("service.version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(
        resource("replica.component.sha256"),
        Some(digest(&a, 0).as_str())
    );
    // Under it the guest's call, its instantiation (the first request) and
    // its outgoing request, a CLIENT span.
    let a_call = child(
        &spans,
        &a_server.span_id,
        "wasi:http/incoming-handler.handle",
    );
    child(&spans, &a_call.span_id, "instantiate");
    let a_client = child(&spans, &a_call.span_id, "GET");
    assert_eq!(a_client.kind, "CLIENT");
    assert_eq!(a_client.attr("http.request.method"), Some("GET"));
    assert_eq!(a_client.attr("http.response.status_code"), Some("200"));
    assert_eq!(a_client.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        a_client.attr("server.port"),
        Some(b.addr.port().to_string().as_str())
    );
    assert!(
        a_client
            .attr("url.full")
            .is_some_and(|u| u.contains("/kv/get")),
        "{a_client:#?}"
    );
    // B joined the trace under A's CLIENT span: the host injected it.
    let b_server = server_span(&spans, &a_client.span_id);
    assert_eq!(
        b_server
            .resource
            .get("service.instance.id")
            .map(String::as_str),
        Some("b")
    );
    let b_call = child(
        &spans,
        &b_server.span_id,
        "wasi:http/incoming-handler.handle",
    );
    for (name, operation) in [("open b", "open"), ("get b", "get")] {
        let call = child(&spans, &b_call.span_id, name);
        assert_eq!(call.attr("db.system.name"), Some("memory"));
        assert_eq!(call.attr("db.operation.name"), Some(operation));
        assert_eq!(call.attr("db.namespace"), Some("b"));
    }
}

fn a_guests_own_traceparent_is_left_as_it_is() {
    let collector = Collector::start();
    let b = serve(&replica_guest(), &[], &[("SERVER_ID", "b")], &collector);
    let b_addr = b.addr.to_string();
    let a = serve(
        &faulty_guest(),
        &["--allow-outbound", &b_addr],
        &[],
        &collector,
    );
    let caller = Caller::new(2);
    let (status, _) = traced(
        "GET",
        &a.url(&format!("/fetch-in-own-trace?http://{b_addr}/home")),
        &caller.traceparent(true),
    );
    assert_eq!(status, 200);
    // The guest's own trace context (test-guests/faulty: OWN_TRACEPARENT).
    let spans = collector.trace("0123456789abcdef0123456789abcdef", |spans| {
        has_server(spans, "0123456789abcdef")
    });
    assert_eq!(
        server_span(&spans, "0123456789abcdef").attr("url.path"),
        Some("/home")
    );
    // A's CLIENT span is still in the caller's trace.
    collector.trace(&caller.trace_id, |spans| {
        spans.iter().any(|s| s.kind == "CLIENT")
    });
}

fn http2_requests_join_their_callers_trace() {
    let collector = Collector::start();
    let server = serve(&replica_guest(), &[], &[("SERVER_ID", "1")], &collector);
    let caller = Caller::new(3);
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-H"])
        .arg(format!("traceparent: {}", caller.traceparent(true)))
        .arg(server.url("/home"))
        .output()
        .expect("curl runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello from Server: 1"));
    let spans = collector.trace(&caller.trace_id, |spans| has_server(spans, &caller.span_id));
    let span = server_span(&spans, &caller.span_id);
    assert_eq!(span.attr("network.protocol.version"), Some("2"));
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
}

fn a_trace_sent_to_haproxy_reaches_the_replica() {
    let collector = Collector::start();
    let server = serve(&replica_guest(), &[], &[("SERVER_ID", "1")], &collector);
    let haproxy = Haproxy::start(
        server.addr,
        &[
            "option httpchk",
            "http-check send meth GET uri /heartbeat ver HTTP/1.1 hdr Host lb",
        ],
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            haproxy.seen().is_some_and(|seen| seen.status == "UP")
        }),
        "HAProxy never took the replica in: {:?}",
        haproxy.seen()
    );
    let caller = Caller::new(4);
    let (status, body) = traced("GET", &haproxy.url("/home"), &caller.traceparent(true));
    assert_eq!(status, 200, "{body}");
    let spans = collector.trace(&caller.trace_id, |spans| has_server(spans, &caller.span_id));
    let span = server_span(&spans, &caller.span_id);
    assert_eq!(span.attr("url.path"), Some("/home"));
    assert_eq!(
        span.resource.get("service.instance.id").map(String::as_str),
        Some("1")
    );
    // HAProxy's health checks carry no trace: each starts its own.
    collector.spans_until(|spans| {
        spans
            .iter()
            .any(|s| s.attr("url.path") == Some("/heartbeat") && s.parent_id.is_empty())
    });
}

fn a_p3_guests_calls_are_traced_under_its_call() {
    let collector = Collector::start();
    let server = serve(&sdk_guest("spin-3"), &[], &[], &collector);
    let caller = Caller::new(5);
    let (status, body) = traced("GET", &server.url("/count"), &caller.traceparent(true));
    assert_eq!((status, body.as_str()), (200, "1"));
    let spans = collector.trace(&caller.trace_id, |spans| {
        spans.iter().any(|s| s.name == "set default")
    });
    let server_span = server_span(&spans, &caller.span_id);
    let call = child(&spans, &server_span.span_id, "wasi:http/handler.handle");
    child(&spans, &call.span_id, "instantiate");
    for name in ["open default", "get default", "set default"] {
        let store = child(&spans, &call.span_id, name);
        assert_eq!(store.attr("db.system.name"), Some("memory"));
        assert_eq!(store.kind, "INTERNAL");
    }
}

fn redis_calls_are_client_spans() {
    let collector = Collector::start();
    let redis = Redis::start();
    let url = redis.url();
    let server = serve(
        &stateful_guest(),
        &["--keyvalue-url", &url],
        &[],
        &collector,
    );
    // The `get r` span of a GET of `key` in the bucket `r`, answered `status`.
    let get = |n: u32, key: &str, status: u16| -> Span {
        let caller = Caller::new(n);
        let url = server.url(&format!("/kv/get?bucket=r&key={key}"));
        assert_eq!(traced("GET", &url, &caller.traceparent(true)).0, status);
        let spans = collector.trace(&caller.trace_id, |spans| {
            spans.iter().any(|s| s.name == "get r")
        });
        spans
            .into_iter()
            .find(|s| s.name == "get r")
            .expect("a get")
    };
    let found = get(6, "missing", 404);
    assert_eq!(found.kind, "CLIENT");
    assert_eq!(found.attr("db.system.name"), Some("redis"));
    assert_eq!(found.status, "UNSET");
    // Redis gone: the call fails, and its span says so.
    drop(redis);
    let failed = get(7, "k", 500);
    assert_eq!(
        (failed.status.as_str(), failed.attr("error.type")),
        ("ERROR", Some("keyvalue_error"))
    );
}

/// A request sent over a raw connection with a chunked body of `bytes`
/// bytes: the body is cut at `--max-body-bytes`, not refused up front.
fn chunked_post(server: &Server, path: &str, traceparent: &str, bytes: usize) -> String {
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: replica\r\ntraceparent: {traceparent}\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("head");
    let chunk = vec![b'x'; bytes];
    let _ = stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
    let _ = stream.write_all(&chunk);
    let _ = stream.write_all(b"\r\n0\r\n\r\n");
    let mut answer = vec![0; 4096];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn failures_are_errors_on_their_spans() {
    let collector = Collector::start();
    let p2 = serve(
        &faulty_guest(),
        &["--request-timeout", "1s", "--max-body-bytes", "1024"],
        &[],
        &collector,
    );
    let p3 = serve(
        &faulty_guest_p3(),
        &["--request-timeout", "1s"],
        &[],
        &collector,
    );
    // (server, path, status, the SERVER span's error.type: none if no error)
    let cases: [(&Server, &str, u16, Option<&str>); 8] = [
        (&p2, "/trap", 500, Some("trap")),
        (&p2, "/loop", 504, Some("timeout")),
        (&p2, "/status?code=503", 503, Some("503")),
        (&p2, "/status?code=404", 404, None),
        (&p2, "/trap-mid-body", 200, Some("trap")),
        // A 0.3 instance serves several requests at once: a trap takes
        // down the instance and every request on it, whichever trapped.
        (&p3, "/trap", 500, Some("instance_failed")),
        (&p3, "/loop", 504, Some("timeout")),
        (&p3, "/ok", 200, None),
    ];
    let mut sent = Vec::new();
    for (n, (server, path, status, error)) in cases.iter().enumerate() {
        let caller = Caller::new(100 + n as u32);
        let req = ureq::http::Request::builder()
            .uri(server.url(path))
            .header("traceparent", caller.traceparent(true))
            .body(())
            .expect("a request");
        // A body cut short reads as an error: the status is what counts.
        let answered = client().run(req).map(|r| r.status().as_u16());
        assert_eq!(answered.ok(), Some(*status), "{path}");
        sent.push((caller, *path, *error));
    }
    let cut = Caller::new(200);
    let answer = chunked_post(&p2, "/body", &cut.traceparent(true), 64 * 1024);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    sent.push((cut, "/body (cut)", Some("body_too_large")));

    for (caller, path, error) in sent {
        let spans = collector.trace(&caller.trace_id, |spans| has_server(spans, &caller.span_id));
        let span = server_span(&spans, &caller.span_id);
        match error {
            Some(kind) => {
                assert_eq!(span.status, "ERROR", "{path}: {span:#?}");
                assert_eq!(span.attr("error.type"), Some(kind), "{path}: {span:#?}");
            }
            None => {
                assert_eq!(span.status, "UNSET", "{path}: {span:#?}");
                assert_eq!(span.attr("error.type"), None, "{path}");
            }
        }
    }
}

fn a_hot_swap_shows_in_the_spans_that_follow() {
    let collector = Collector::start();
    let dir = std::env::temp_dir().join(format!("replica-traces-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("guest.wasm");
    std::fs::copy(replica_guest(), &path).expect("copy");
    let server = serve(&path, &[], &[("SERVER_ID", "1")], &collector);
    let before = Caller::new(8);
    assert_eq!(
        traced("GET", &server.url("/home"), &before.traceparent(true)).0,
        200
    );
    let partial = dir.join("guest.partial");
    std::fs::copy(faulty_guest(), &partial).expect("copy");
    std::fs::rename(&partial, &path).expect("rename");
    server.signal(Signal::SIGHUP);
    server.wait_for_log("reloaded", 1);
    let after = Caller::new(9);
    let (status, body) = traced("GET", &server.url("/home"), &after.traceparent(true));
    assert_eq!((status, body.as_str()), (200, "faulty-home"));
    let first = collector.trace(&before.trace_id, |s| has_server(s, &before.span_id));
    let second = collector.trace(&after.trace_id, |s| has_server(s, &after.span_id));
    let (first, second) = (
        server_span(&first, &before.span_id),
        server_span(&second, &after.span_id),
    );
    assert_eq!(
        first.attr("replica.component.sha256"),
        Some(digest(&server, 0).as_str())
    );
    assert_eq!(
        second.attr("replica.component.sha256"),
        Some(digest(&server, 1).as_str())
    );
    assert_ne!(digest(&server, 0), digest(&server, 1));
    assert_eq!(first.attr("replica.component.generation"), Some("0"));
    assert_eq!(second.attr("replica.component.generation"), Some("1"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn each_json_log_line_of_a_request_names_its_trace_and_span() {
    let collector = Collector::start();
    let server = serve(
        &faulty_guest(),
        &["--log-format", "json", "--access-log"],
        &[],
        &collector,
    );
    let caller = Caller::new(10);
    assert_eq!(
        traced("GET", &server.url("/print"), &caller.traceparent(true)).0,
        200
    );
    let spans = collector.trace(&caller.trace_id, |s| has_server(s, &caller.span_id));
    let span_id = server_span(&spans, &caller.span_id).span_id.clone();
    assert!(
        eventually(Duration::from_secs(10), || server
            .stderr()
            .lines()
            .any(|l| l.contains("\"target\":\"access\""))),
        "no access line:\n{}",
        server.stderr()
    );
    // Every line of the request (the guest's output, the access line).
    let lines: Vec<serde_json::Value> = server
        .stderr()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &serde_json::Value| line["span"]["path"] == "/print")
        .collect();
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        assert_eq!(line["span"]["trace_id"], caller.trace_id.as_str(), "{line}");
        assert_eq!(line["span"]["span_id"], span_id.as_str(), "{line}");
    }
}

fn the_sampler_is_parent_based_and_configured_the_standard_way() {
    let collector = Collector::start();
    let server = serve(
        &replica_guest(),
        &["--access-log", "--log-format", "json"],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
        &collector,
    );
    // No caller: a trace of its own, sampled at a ratio of 0.
    assert_eq!(common::get(&server.url("/heartbeat")).status, 200);
    // A caller that did not sample: neither does the replica.
    let unsampled = Caller::new(11);
    assert_eq!(
        traced("GET", &server.url("/home"), &unsampled.traceparent(false)).0,
        200
    );
    // A caller that did: the replica follows.
    let sampled = Caller::new(12);
    assert_eq!(
        traced("GET", &server.url("/home"), &sampled.traceparent(true)).0,
        200
    );
    let spans = collector.spans_until(|spans| spans.iter().any(|s| s.trace_id == sampled.trace_id));
    assert!(
        spans.iter().all(|s| s.trace_id == sampled.trace_id),
        "only the sampled caller's trace: {spans:#?}"
    );
    // The unsampled request still names its trace in the log.
    assert!(server.stderr().contains(&unsampled.trace_id));
}

/// A request without a caller is sampled once, by the configured ratio:
/// about half of 400 at 0.5 start a trace (a decision taken twice would
/// give about a quarter, 100). The bounds are five standard deviations out.
fn a_ratio_sampler_starts_its_share_of_traces() {
    let collector = Collector::start();
    let server = serve(
        &replica_guest(),
        &[],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ],
        &collector,
    );
    let agent = client();
    for _ in 0..400 {
        let reply = send(&agent, "GET", &server.url("/heartbeat"), b"").expect("a heartbeat");
        assert_eq!(reply.status, 200);
    }
    // A sampled caller's request, last: its span comes after the others.
    let last = Caller::new(13);
    assert_eq!(
        traced("GET", &server.url("/home"), &last.traceparent(true)).0,
        200
    );
    let spans = collector.spans_until(|spans| spans.iter().any(|s| s.trace_id == last.trace_id));
    let started = spans
        .iter()
        .filter(|s| s.kind == "SERVER" && s.trace_id != last.trace_id)
        .inspect(|s| assert!(s.parent_id.is_empty(), "{s:#?}"))
        .count();
    assert!(
        (150..=250).contains(&started),
        "{started} of 400 started a trace"
    );
}

fn grpc_service_name_and_resource_attributes_are_read_the_standard_way() {
    let collector = Collector::start();
    let endpoint = collector.grpc_endpoint();
    let server = Server::start(
        &replica_guest(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "course-replica"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment.name=test,service.instance.id=replica-a",
            ),
            ("SERVER_ID", "1"),
        ],
    );
    assert!(server.stderr().contains("over grpc"), "{}", server.stderr());
    let caller = Caller::new(13);
    assert_eq!(
        traced("GET", &server.url("/home"), &caller.traceparent(true)).0,
        200
    );
    let spans = collector.trace(&caller.trace_id, |s| has_server(s, &caller.span_id));
    let resource = &server_span(&spans, &caller.span_id).resource;
    let get = |key: &str| resource.get(key).map(String::as_str);
    assert_eq!(get("service.name"), Some("course-replica"));
    assert_eq!(get("deployment.environment.name"), Some("test"));
    assert_eq!(get("service.instance.id"), Some("replica-a"));
    assert_eq!(get("telemetry.sdk.language"), Some("rust"));
}

fn headers_and_the_traces_endpoint_are_read_the_standard_way() {
    // A collector of one request, to see what the exporter sends.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = listener.local_addr().expect("an address").port();
    let seen = std::thread::spawn(move || {
        listener.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(_) => return String::from("(the exporter never connected)"),
            }
        };
        stream.set_nonblocking(false).expect("blocking");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a timeout");
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        String::from_utf8_lossy(&head).to_lowercase()
    });
    let endpoint = format!("http://127.0.0.1:{port}/collect/traces");
    let server = Server::start(
        &replica_guest(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20sesame,x-team=course",
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("SERVER_ID", "1"),
        ],
    );
    assert_eq!(common::get(&server.url("/home")).status, 200);
    let head = seen.join().expect("the request's head");
    assert!(head.starts_with("post /collect/traces "), "{head}");
    assert!(head.contains("authorization: bearer sesame\r\n"), "{head}");
    assert!(head.contains("x-team: course\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/x-protobuf"),
        "{head}"
    );
}

fn tracing_configuration_that_cannot_be_used_stops_the_host() {
    let guest = replica_guest();
    let guest = guest.to_str().expect("utf-8");
    for (env, says) in [
        (("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"), "is not a URL"),
        (
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            "is not an http:// or https:// URL",
        ),
        (
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            "use http/protobuf or grpc",
        ),
        (
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            "is not a number of milliseconds",
        ),
    ] {
        let mut all = vec![
            ("SERVER_ID", "1"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ];
        all.retain(|(name, _)| *name != env.0);
        all.push(env);
        let (status, _, stderr) = run_host(&[guest, "--addr", "127.0.0.1:0"], &all);
        assert!(!status.success(), "{env:?} was taken");
        assert!(stderr.contains(says), "{env:?}: {stderr}");
    }
    // Turned off the standard way: nothing is sent.
    let collector = Collector::start();
    let off = serve(
        &replica_guest(),
        &[],
        &[("OTEL_SDK_DISABLED", "true")],
        &collector,
    );
    assert!(off.stderr().contains("traces: off"), "{}", off.stderr());
    let unseen = Caller::new(14);
    assert_eq!(
        traced("GET", &off.url("/home"), &unseen.traceparent(true)).0,
        200
    );
    let on = serve(&replica_guest(), &[], &[], &collector);
    let seen = Caller::new(15);
    assert_eq!(
        traced("GET", &on.url("/home"), &seen.traceparent(true)).0,
        200
    );
    let spans = collector.spans_until(|spans| spans.iter().any(|s| s.trace_id == seen.trace_id));
    assert!(!spans.iter().any(|s| s.trace_id == unseen.trace_id));
}

/// Heartbeat latencies while `phase` lasts: polls every 20 ms, as a
/// balancer would (faster), returning each latency; every answer must be
/// a 200.
fn heartbeats_while(server: &Server, phase: impl FnOnce()) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, url) = (stop.clone(), server.url("/heartbeat"));
        std::thread::spawn(move || {
            let agent = client();
            let mut latencies = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let started = Instant::now();
                let reply = common::request(&agent, "GET", &url).expect("a heartbeat");
                assert_eq!(reply.status, 200, "a heartbeat failed");
                latencies.push(started.elapsed());
                std::thread::sleep(Duration::from_millis(20));
            }
            latencies
        })
    };
    phase();
    stop.store(true, Ordering::Relaxed);
    poller.join().expect("the heartbeats all answered 200")
}

/// `requests` GETs of /home from 4 clients at once; each must be a 200.
fn load(server: &Server, requests: usize) {
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url("/home");
            std::thread::spawn(move || {
                let agent = client();
                for _ in 0..requests / 4 {
                    let reply = common::request(&agent, "GET", &url).expect("an answer");
                    assert_eq!(reply.status, 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every request answered 200");
    }
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    format!(
        "{} heartbeats, median {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

fn a_collector_down_or_silent_fails_no_request() {
    let mut collector = Collector::start();
    let mut server = serve(
        &replica_guest(),
        &["--metrics-addr", "127.0.0.1:0"],
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "256"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
        ],
        &collector,
    );
    let mut up = heartbeats_while(&server, || load(&server, 2000));
    collector.spans_until(|spans| spans.len() > 100);
    // Refusing: the collector killed under load.
    collector.stop();
    let mut down = heartbeats_while(&server, || load(&server, 4000));
    // Silent: something takes the connections and never answers.
    let silent = TcpListener::bind(("127.0.0.1", collector.http_port)).expect("the port again");
    let quiet = Arc::new(AtomicBool::new(true));
    let holding = {
        let quiet = quiet.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            silent.set_nonblocking(true).expect("nonblocking");
            while quiet.load(Ordering::Relaxed) {
                match silent.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            held.len()
        })
    };
    let mut slow = heartbeats_while(&server, || load(&server, 4000));
    quiet.store(false, Ordering::Relaxed);
    let held = holding.join().expect("the silent listener");
    assert!(held > 0, "the exporter never tried the silent collector");
    assert!(server.is_running());
    let metrics = scrape(&server);
    let dropped = metric(&metrics, "replica_spans_dropped_total");
    println!("collector up:     {}", summary(&mut up));
    println!("collector down:   {}", summary(&mut down));
    println!("collector silent: {}", summary(&mut slow));
    println!("spans dropped: {dropped}");
    assert!(dropped > 0.0, "no span counted as dropped:\n{metrics}");
    // The outage is logged once, not once per batch.
    let warned = server
        .stderr()
        .matches("spans are dropped until it does")
        .count();
    assert_eq!(warned, 1, "{}", server.stderr());
    // Back: spans arrive again, and the host says so.
    collector.run();
    let caller = Caller::new(16);
    let delivered = eventually(Duration::from_secs(30), || {
        traced("GET", &server.url("/home"), &caller.traceparent(true)).0 == 200
            && collector
                .spans()
                .iter()
                .any(|s| s.trace_id == caller.trace_id)
    });
    assert!(delivered, "no span arrived once the collector was back");
    server.wait_for_log("takes spans again", 1);
    server.signal(Signal::SIGTERM);
    assert!(
        server
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
}
