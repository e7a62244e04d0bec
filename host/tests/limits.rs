//! Limits that keep one bad guest or client from hurting anyone else:
//! memory caps, bounded concurrency, header and body sizes, slow clients.

mod common;

use common::{Server, faulty_guest, get, raw, replica_guest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn faulty(args: &[&str]) -> Server {
    Server::start(&faulty_guest(), args, &[("SERVER_ID", "1")])
}

fn rss_kib(server: &Server) -> u64 {
    common::memory_kib(server, "VmRSS")
}

#[test]
fn a_guest_exhausting_memory_gets_a_500_and_the_host_stays_bounded() {
    let server = faulty(&["--max-memory-mib", "32"]);
    for _ in 0..5 {
        let reply = get(&server.url("/oom"));
        assert_eq!(reply.status, 500);
        assert_eq!(reply.body, r#"{"detail":"Internal Server Error"}"#);
        assert_eq!(get(&server.url("/ok")).body, "ok");
    }
    // Five guests each grew to the 32 MiB cap; none of it stays with the host.
    let rss = rss_kib(&server);
    assert!(
        rss < 64 * 1024,
        "host RSS {rss} KiB after the guests hit the cap"
    );
}

#[test]
fn what_a_guest_makes_the_host_hold_is_bounded_and_given_back() {
    // 8,000 fields of 64 KiB took the host to 622 MB before this was counted.
    let mut server = faulty(&["--workers", "1"]);
    common::assert_hoarding_is_bounded(
        &mut server,
        &["/hoard-fields?n=8000", "/hoard-bodies?n=10000"],
        3,
        160,
    );
    // An instance that keeps what it made is let go before it fails a request.
    for _ in 0..12 {
        let kept = get(&server.url("/hoard-fields?n=100&keep"));
        assert_eq!((kept.status, kept.body.as_str()), (200, "100"));
    }
    // A fresh instance for every request: the same bound.
    let mut strict = faulty(&["--workers", "1", "--strict"]);
    common::assert_hoarding_is_bounded(&mut strict, &["/hoard-fields?n=8000"], 3, 160);
}

#[test]
fn beyond_max_concurrency_requests_get_a_fast_503() {
    let server = faulty(&["--max-concurrency", "2"]);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/slow?ms=6000");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    server.wait_for_log("slow request started", 2);
    let busy = get(&server.url("/ok"));
    // Fast: answered while both slots are still taken, not queued behind them.
    assert!(
        slow.iter().all(|s| !s.is_finished()),
        "the 503 waited for a slot"
    );
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(busy.body, r#"{"detail":"Service Unavailable"}"#);
    for request in slow {
        assert_eq!(request.join().expect("client").status, 200);
    }
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn a_slow_client_is_cut_off_and_others_are_served() {
    let server = faulty(&["--header-read-timeout", "500ms"]);
    let start = Instant::now();
    // Slowloris: a request head that never ends.
    let reply = raw(
        &server,
        b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Slow: 1\r\n",
        Duration::from_secs(5),
    );
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(3), "not cut off: {waited:?}");
    assert!(!reply.contains("200 OK"), "{reply}");
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = faulty(&["--header-read-timeout", "500ms"]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let response = common::read_chunked_response(&mut stream);
    assert!(response.starts_with(b"HTTP/1.1 200"));
    let start = Instant::now();
    // Nothing more is sent: the server closes the connection.
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the connection to close");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn oversized_headers_get_431() {
    let server = faulty(&["--max-header-bytes", "4096"]);
    let big = "a".repeat(5000);
    let reply = raw(
        &server,
        format!("GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert!(
        reply.ends_with(r#"{"detail":"Request Header Fields Too Large"}"#),
        "{reply}"
    );
    // Far over the limit hyper answers before the request is parsed.
    let huge = "a".repeat(100_000);
    let reply = raw(
        &server,
        format!("GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn oversized_bodies_get_413_or_are_cut_off() {
    let server = faulty(&["--max-body-bytes", "1000"]);
    let reply = raw(
        &server,
        b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        reply.ends_with(r#"{"detail":"Content Too Large"}"#),
        "{reply}"
    );

    let within = raw(
        &server,
        format!(
            "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\nConnection: close\r\n\r\n{}",
            "x".repeat(500)
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    // The faulty guest sends chunked bodies: a chunk of 3 bytes, "500".
    assert!(
        within.starts_with("HTTP/1.1 200") && within.contains("\r\n3\r\n500\r\n"),
        "{within}"
    );

    // Without a length, the guest's read fails at the limit, and whatever
    // it answers then (this one a 400), the client gets a 413.
    let chunk = "x".repeat(4000);
    let chunked = raw(
        &server,
        format!(
            "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
        Duration::from_secs(5),
    );
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn a_body_cut_at_the_limit_is_never_a_clean_success() {
    let server = faulty(&["--max-body-bytes", "1000"]);
    common::assert_cut_bodies_are_never_a_clean_success(&server);
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn malformed_requests_get_400() {
    let server = faulty(&[]);
    for bad in [
        &b"NOT A REQUEST\r\n\r\n"[..],
        b"GET /ok HTTP/9.9\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
    ] {
        let reply = raw(&server, bad, Duration::from_secs(5));
        assert!(
            reply.starts_with("HTTP/1.1 400"),
            "{:?} -> {reply:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn a_request_without_a_usable_host_gets_400() {
    let server = faulty(&[]);
    // RFC 9112, 3.2: HTTP/1.1 needs one Host; none may come twice or be
    // invalid, and userinfo has no place in it (nor in an absolute target).
    for bad in [
        &b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /ok HTTP/1.1\r\nHost: caf\xc3\xa9\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: u@a.example\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: a.example/x\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.1\r\nHost: a.example:80x\r\nConnection: close\r\n\r\n",
        b"GET /ok HTTP/1.0\r\nHost: u@a.example\r\n\r\n",
        b"GET http://u@a.example/ok HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
    ] {
        let reply = raw(&server, bad, Duration::from_secs(5));
        assert!(
            reply.get(8..13) == Some(" 400 ") && reply.ends_with(r#"{"detail":"Bad Request"}"#),
            "{:?} -> {reply:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Refused before the guest ran: it printed nothing, and the log says why.
    assert!(
        server.logs_eventually("more than one Host"),
        "{}",
        server.stderr()
    );
    assert!(
        server.stderr().contains("an invalid Host"),
        "{}",
        server.stderr()
    );
    // With an absolute URI the authority comes from it, whatever Host says.
    for host in ["", "Host: b.example\r\n"] {
        let absolute = raw(
            &server,
            format!(
                "GET http://a.example:81/authority HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
            )
            .as_bytes(),
            Duration::from_secs(5),
        );
        assert!(absolute.starts_with("HTTP/1.1 200"), "{absolute}");
        assert!(absolute.contains("\r\na.example:81\r\n"), "{absolute}");
    }
}

#[test]
fn the_guest_has_no_filesystem_and_no_outbound_http_unless_allowed() {
    let target = Server::start(&replica_guest(), &[], &[("SERVER_ID", "target")]);
    let upstream = format!("http://{}/heartbeat", target.addr);

    let sandboxed = faulty(&[]);
    let fs = get(&sandboxed.url("/fs"));
    assert!(
        fs.body.starts_with("Err("),
        "the guest listed a directory: {}",
        fs.body
    );
    let denied = get(&sandboxed.url(&format!("/fetch?{upstream}")));
    assert_eq!(denied.status, 502);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    // Logged by the host as it denies; read from its stderr by a thread of
    // the test's own, so waited for.
    assert!(
        sandboxed.logs_eventually("--allow-outbound"),
        "{}",
        sandboxed.stderr()
    );

    // Allowed by host:port: the request goes through; another host stays denied.
    let allowed = faulty(&["--allow-outbound", &target.addr.to_string()]);
    let fetched = get(&allowed.url(&format!("/fetch?{upstream}")));
    assert_eq!((fetched.status, fetched.body.as_str()), (200, ""));
    let other = get(&allowed.url("/fetch?http://127.0.0.2:9/"));
    assert!(other.body.contains("HttpRequestDenied"), "{}", other.body);
}

/// What the faulty guest's `/fetch` of `url` came to under `allow`: `Ok` with
/// the upstream's body, or the denial.
fn fetch_through(allow: &[&str], url: &str) -> Result<String, String> {
    let mut args = Vec::new();
    for entry in allow {
        args.extend(["--allow-outbound", entry]);
    }
    let server = faulty(&args);
    let reply = get(&server.url(&format!("/fetch?{url}")));
    match reply.status {
        200 => Ok(reply.body),
        _ => Err(reply.body),
    }
}

#[test]
fn outbound_entries_match_host_and_port_as_written() {
    let target = Server::start(&replica_guest(), &[], &[("SERVER_ID", "target")]);
    let port = target.addr.port();
    let url = format!("http://127.0.0.1:{port}/heartbeat");
    let denied = |outcome: Result<String, String>| matches!(outcome, Err(body) if body.contains("HttpRequestDenied"));

    // A host without a port allows any port of that host.
    assert_eq!(fetch_through(&["127.0.0.1"], &url), Ok(String::new()));
    // Host names are matched without regard to case, both ways.
    let localhost = format!("http://LocalHost:{port}/heartbeat");
    assert_eq!(fetch_through(&["localhost"], &localhost), Ok(String::new()));
    assert_eq!(
        fetch_through(
            &[&format!("LOCALHOST:{port}")],
            &format!("http://localhost:{port}/heartbeat")
        ),
        Ok(String::new())
    );
    // Another port of an allowed host:port is denied.
    assert!(denied(fetch_through(
        &[&format!("127.0.0.1:{}", port ^ 1)],
        &url
    )));
    // Another host is denied, even on the same address.
    assert!(denied(fetch_through(&["example.com"], &url)));
    // A URL without a port means the scheme's default: 80 for http.
    assert!(denied(fetch_through(
        &["127.0.0.1:8080"],
        "http://127.0.0.1/"
    )));
    let default_port = fetch_through(&["127.0.0.1:80"], "http://127.0.0.1/");
    assert!(!denied(default_port.clone()), "{default_port:?}");
}

#[test]
fn userinfo_in_an_outbound_authority_is_denied_and_nothing_is_reached() {
    let allowed = Server::start(&replica_guest(), &[], &[("SERVER_ID", "allowed")]);
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    other.set_nonblocking(true).expect("nonblocking");
    let (a, b) = (
        allowed.addr.port(),
        other.local_addr().expect("addr").port(),
    );
    let allow = format!("localhost:{a}");
    // The host after `@` is the allowed one; the connector must not read the
    // whole string as another.
    for url in [
        format!("http://127.0.0.1:{b}@localhost:{a}/heartbeat"),
        format!("http://user@localhost:{a}/heartbeat"),
    ] {
        let outcome = fetch_through(&[&allow], &url);
        assert!(
            matches!(&outcome, Err(body) if body.contains("HttpRequestDenied")),
            "{url}: {outcome:?}"
        );
    }
    assert!(
        matches!(other.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection reached the port named before `@`"
    );
    // Without userinfo, the allowed host is reached.
    let url = format!("http://localhost:{a}/heartbeat");
    assert_eq!(fetch_through(&[&allow], &url), Ok(String::new()));
}

#[test]
fn the_guest_cannot_open_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let server = faulty(&["--allow-outbound", &addr.to_string()]);
    let reply = get(&server.url(&format!("/socket?{addr}")));
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.starts_with("Err("),
        "the guest connected: {}",
        reply.body
    );
    // Nothing reached the listener.
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection arrived"
    );
}
