//! A guest that traps, never answers, or dies mid-body costs one request a
//! 500 (or a cut connection), never the host.

mod common;

use common::{Server, client, faulty_guest, get, request};
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
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "host exited"
    );
    // The failure is logged with what happened.
    let log = server.stderr();
    assert!(log.contains("request failed"), "{log}");
    assert!(
        log.contains("unreachable"),
        "no trap cause in the log:\n{log}"
    );
}

#[test]
fn a_guest_that_never_responds_is_a_500() {
    let server = faulty(&[]);
    assert_internal_error(&get(&server.url("/no-response")));
    assert_eq!(get(&server.url("/ok")).status, 200);
    assert!(
        server.stderr().contains("without setting a response"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_trap_mid_body_cuts_that_response_only() {
    let server = faulty(&[]);
    // The head is already out as 200, so the client sees a cut-short body.
    match request(&client(), "GET", &server.url("/trap-mid-body")) {
        Err(_) => {}
        Ok(reply) => assert_ne!(reply.body, "partial-and-complete", "{reply:?}"),
    }
    for _ in 0..10 {
        assert_eq!(get(&server.url("/ok")).body, "ok");
    }
}

#[test]
fn a_runaway_guest_times_out_with_504_while_others_are_served() {
    let server = faulty(&["--request-timeout", "1500ms"]);
    let url = server.url("/loop");
    let looping = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(200));
    // Two cores, one guest spinning: the rest is still answered at once.
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(get(&server.url("/ok")).status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }
    let reply = looping.join().expect("client thread");
    assert_eq!(reply.status, 504);
    assert_eq!(reply.body, r#"{"detail":"Gateway Timeout"}"#);
    assert_eq!(get(&server.url("/ok")).status, 200);
}
