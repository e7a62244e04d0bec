//! A guest that traps, never answers, or dies mid-body costs one request a
//! 500 (or a cut connection), never the host.

mod common;

use common::{Server, client, faulty_guest, get, request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn faulty(args: &[&str]) -> Server {
    Server::start(&faulty_guest(), args, &[("SERVER_ID", "1")])
}

fn assert_internal_error(reply: &common::Reply) {
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, r#"{"detail":"Internal Server Error"}"#);
}

#[test]
fn a_trap_is_a_500_and_the_host_keeps_serving() {
    let mut server = faulty(&[]);
    for _ in 0..50 {
        assert_internal_error(&get(&server.url("/trap")));
        let ok = get(&server.url("/ok"));
        assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
    }
    assert!(server.is_running(), "host exited");
    // The failure is logged with what happened.
    let log = server.stderr();
    assert!(log.contains("request failed"), "{log}");
    assert!(
        log.contains("unreachable"),
        "no trap cause in the log:\n{log}"
    );
}

#[test]
fn a_guest_s_status_is_checked_before_it_goes_out() {
    let server = faulty(&[]);
    common::assert_guest_statuses_are_checked(&server);
}

#[test]
fn a_guest_that_never_responds_is_a_500() {
    let server = faulty(&[]);
    assert_internal_error(&get(&server.url("/no-response")));
    assert_eq!(get(&server.url("/ok")).status, 200);
    assert!(
        server.logs_eventually("without setting a response"),
        "{}",
        server.stderr()
    );
}

/// Everything the server sent for one request on its own connection, until
/// it closed the connection (or 10 s passed).
fn raw_exchange(server: &Server, path: &str) -> (String, Duration) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    (
        String::from_utf8_lossy(&bytes).into_owned(),
        started.elapsed(),
    )
}

/// After the head went out as 200, a failing guest must not look like a
/// complete 200 to a client or a load balancer: a chunked body ends without
/// its last chunk, a body with a content-length ends short, and the
/// connection is closed (not kept alive for the next request).
fn assert_cut_short(reply: &str) {
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    assert!(reply.contains("partial"), "{reply:?}");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head");
    let head = head.to_ascii_lowercase();
    if let Some(length) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let length: usize = length.trim().parse().expect("a length");
        assert!(body.len() < length, "a complete body: {reply:?}");
    } else {
        assert!(
            head.contains("transfer-encoding: chunked"),
            "neither length nor chunked: {reply:?}"
        );
        assert!(
            !body.ends_with("0\r\n\r\n"),
            "a complete chunked body: {reply:?}"
        );
    }
}

#[test]
fn a_trap_mid_body_cuts_that_response_short_and_the_host_goes_on() {
    let mut server = faulty(&[]);
    for path in ["/trap-mid-body", "/trap-mid-body?length=100"] {
        let (reply, _) = raw_exchange(&server, path);
        assert_cut_short(&reply);
        // An HTTP client sees an error, not a 200 with a body.
        let seen = request(&client(), "GET", &server.url(path));
        assert!(seen.is_err(), "{path}: {seen:?}");
    }
    for _ in 0..10 {
        assert_eq!(get(&server.url("/ok")).body, "ok");
    }
    assert!(server.is_running());
    assert!(
        server.logs_eventually("request failed"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_trap_before_anything_was_sent_is_a_plain_500() {
    let server = faulty(&[]);
    assert_internal_error(&get(&server.url("/trap-after-head")));
    assert_eq!(get(&server.url("/ok")).body, "ok");
}

#[test]
fn a_timeout_mid_body_cuts_that_response_short_too() {
    let server = faulty(&["--request-timeout", "500ms"]);
    for path in ["/loop-mid-body", "/loop-mid-body?length=100"] {
        let (reply, took) = raw_exchange(&server, path);
        assert_cut_short(&reply);
        assert!(took < Duration::from_secs(8), "not cut off: {took:?}");
    }
    assert_eq!(get(&server.url("/ok")).body, "ok");
    assert!(server.logs_eventually("cut off"), "{}", server.stderr());
}

#[test]
fn a_runaway_guest_times_out_with_504_while_others_are_served() {
    runaway_guest_is_cut_off(&[]);
}

#[test]
fn with_one_worker_a_runaway_guest_still_shares_the_thread() {
    runaway_guest_is_cut_off(&["--workers", "1"]);
}

/// While one guest spins, every other request is answered long before the
/// spinning one is cut off; then it gets a 504.
fn runaway_guest_is_cut_off(args: &[&str]) {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let timeout = format!("{}s", TIMEOUT.as_secs());
    let mut all = vec!["--request-timeout", &timeout];
    all.extend_from_slice(args);
    let server = faulty(&all);
    let url = server.url("/loop");
    let started = Instant::now();
    let looping = std::thread::spawn(move || get(&url));
    server.wait_for_log("looping", 1);
    for _ in 0..20 {
        assert_eq!(get(&server.url("/ok")).status, 200);
    }
    // Had the loop blocked the others, they would have waited for its timeout.
    assert!(!looping.is_finished(), "the loop ended early");
    assert!(started.elapsed() < TIMEOUT / 2, "{:?}", started.elapsed());
    let reply = looping.join().expect("client thread");
    assert_eq!(reply.status, 504);
    assert_eq!(reply.body, r#"{"detail":"Gateway Timeout"}"#);
    assert_eq!(get(&server.url("/ok")).status, 200);
}
