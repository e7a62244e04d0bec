//! wasi:http 0.3 (`wasi:http/service`) components: served by the same host,
//! flags and sandbox as 0.2 ones, with several requests at once in one
//! instance, and a failure taking down only that instance.

mod common;

use common::{Server, client, faulty_guest_p3, get, replica_guest_p3, request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One worker: instances are per worker, and these tests follow one.
fn faulty(args: &[&str]) -> Server {
    let mut all = vec!["--workers", "1"];
    all.extend_from_slice(args);
    Server::start(&faulty_guest_p3(), &all, &[("SERVER_ID", "1")])
}

fn count(server: &Server) -> u32 {
    get(&server.url("/count")).body.parse().expect("a count")
}

fn assert_internal_error(reply: &common::Reply) {
    assert_eq!(reply.status, 500, "{reply:?}");
    assert_eq!(reply.body, r#"{"detail":"Internal Server Error"}"#);
}

#[test]
fn a_guest_s_status_is_checked_before_it_goes_out() {
    let server = faulty(&[]);
    common::assert_guest_statuses_are_checked(&server);
}

#[test]
fn what_a_guest_makes_the_host_hold_is_bounded_and_given_back() {
    let mut server = faulty(&[]);
    common::assert_hoarding_is_bounded(&mut server, &["/hoard-fields?n=8000"], 3, 160);
    // An instance that keeps what it made takes no more requests once it
    // holds half its budget: none fails.
    for _ in 0..12 {
        let kept = get(&server.url("/hoard-fields?n=100&keep"));
        assert_eq!((kept.status, kept.body.as_str()), (200, "100"));
    }
}

#[test]
fn a_body_cut_at_the_limit_is_never_a_clean_success() {
    let server = faulty(&["--max-body-bytes", "1000"]);
    common::assert_cut_bodies_are_never_a_clean_success(&server);
    assert_eq!(get(&server.url("/ok")).status, 200);
}

#[test]
fn the_replica_guest_answers_its_routes() {
    let server = Server::start(&replica_guest_p3(), &[], &[("SERVER_ID", "3")]);
    let home = get(&server.url("/home"));
    assert_eq!(home.status, 200);
    assert_eq!(home.header("content-type"), Some("application/json"));
    assert_eq!(
        home.body,
        r#"{"message":"Hello from Server: 3","status":"successful"}"#
    );
    let heartbeat = request(&client(), "HEAD", &server.url("/heartbeat")).expect("HEAD");
    assert_eq!(
        (heartbeat.status, heartbeat.header("content-length")),
        (200, Some("0"))
    );
    assert!(
        server.stderr().contains("a wasi:http/service 0.3"),
        "{}",
        server.stderr()
    );
}

#[test]
fn one_instance_serves_several_requests_at_once() {
    let server = faulty(&[]);
    // One after another, each once the one before is waiting in the guest:
    // the instance is then free to take the next one too.
    let slow: Vec<_> = (1..=4)
        .map(|started| {
            let url = server.url("/slow?ms=4000");
            let request = std::thread::spawn(move || get(&url));
            server.wait_for_log("slow request started", started);
            request
        })
        .collect();
    assert_eq!(get(&server.url("/most-at-once")).body, "4");
    for reply in slow {
        assert_eq!(reply.join().expect("client").body, "slow done");
    }
}

#[test]
fn max_instance_concurrency_bounds_the_requests_one_instance_serves_at_once() {
    let server = faulty(&["--max-instance-concurrency", "2"]);
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = server.url("/slow?ms=1500");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    for reply in slow {
        assert_eq!(reply.join().expect("client").body, "slow done");
    }
    // Whichever instance answers saw at most two of them at once.
    for _ in 0..3 {
        let most: u32 = get(&server.url("/most-at-once"))
            .body
            .parse()
            .expect("a number");
        assert!(most <= 2, "{most} at once");
    }
}

#[test]
fn instances_are_reused_up_to_the_limit_and_strict_mode_gives_each_request_its_own() {
    let reused = faulty(&["--max-instance-reuse", "3"]);
    let counts: Vec<u32> = (0..5).map(|_| count(&reused)).collect();
    assert_eq!(counts, [1, 2, 3, 1, 2]);
    let strict = faulty(&["--strict"]);
    let counts: Vec<u32> = (0..3).map(|_| count(&strict)).collect();
    assert_eq!(counts, [1, 1, 1]);
}

#[test]
fn a_trap_fails_the_requests_on_its_instance_and_the_instance_is_never_reused() {
    let mut server = faulty(&[]);
    assert_eq!((count(&server), count(&server)), (1, 2));
    // Two requests share the instance with the one that traps: each sent
    // once the one before waits in the guest, so that the instance takes it.
    let slow: Vec<_> = (1..=2)
        .map(|started| {
            let url = server.url("/slow?ms=5000");
            let request = std::thread::spawn(move || get(&url));
            server.wait_for_log("slow request started", started);
            request
        })
        .collect();
    assert_eq!(get(&server.url("/most-at-once")).body, "2");
    assert_internal_error(&get(&server.url("/trap")));
    for reply in slow {
        assert_internal_error(&reply.join().expect("client"));
    }
    // A fresh instance serves what comes next.
    assert_eq!(count(&server), 1);
    assert!(server.is_running());
}

#[test]
fn a_guest_exhausting_memory_or_answering_an_error_is_a_500() {
    let server = faulty(&["--max-memory-mib", "32"]);
    for _ in 0..3 {
        assert_internal_error(&get(&server.url("/oom")));
        assert_eq!(get(&server.url("/ok")).body, "ok");
    }
    assert_internal_error(&get(&server.url("/no-response")));
    assert!(
        server.logs_eventually("no response, on purpose"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_request_without_a_response_in_time_is_a_504_whether_waiting_or_looping() {
    let server = faulty(&["--request-timeout", "1s"]);
    for path in ["/hang", "/loop"] {
        let reply = get(&server.url(path));
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (504, r#"{"detail":"Gateway Timeout"}"#),
            "{path}"
        );
        assert_eq!(get(&server.url("/ok")).body, "ok");
    }
    // The looping instance was dropped: the next request gets a new one.
    assert_eq!(count(&server), 1);
}

#[test]
fn a_response_complete_before_its_instance_fails_is_delivered() {
    let server = faulty(&[]);
    // Declared and whole: delivered, and the connection goes on.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(
            b"GET /trap-after-body?length HTTP/1.1\r\nHost: t\r\n\r\n\
              GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let replies = String::from_utf8_lossy(&bytes);
    let heads: Vec<&str> = replies.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(heads.len(), 2, "{replies:?}");
    assert!(heads[0].starts_with("200 OK"), "{replies:?}");
    assert!(
        heads[0].ends_with("\r\n\r\na complete body, then a trap"),
        "{replies:?}"
    );
    assert!(heads[1].starts_with("200 OK"), "{replies:?}");
    // Without a length nothing tells a complete body from a cut one: it is
    // cut short, but every byte written goes out first.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /trap-after-body HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let reply = String::from_utf8_lossy(&bytes);
    assert!(
        reply.contains("a complete body, then a trap"),
        "held back: {reply:?}"
    );
    assert_eq!(get(&server.url("/ok")).body, "ok");
}

#[test]
fn a_trap_after_the_head_cuts_the_response_short() {
    let server = faulty(&[]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /trap-mid-body HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let reply = String::from_utf8_lossy(&bytes);
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    assert!(reply.contains("partial"), "{reply:?}");
    assert!(!reply.ends_with("0\r\n\r\n"), "a complete body: {reply:?}");
    assert!(
        request(&client(), "GET", &server.url("/trap-mid-body")).is_err(),
        "a client took it for a complete response"
    );
    assert_eq!(get(&server.url("/ok")).body, "ok");
}

#[test]
fn max_concurrency_still_answers_503_past_its_bound() {
    let server = faulty(&["--max-concurrency", "2"]);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/slow?ms=4000");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    server.wait_for_log("slow request started", 2);
    let busy = get(&server.url("/ok"));
    assert!(slow.iter().all(|s| !s.is_finished()), "the 503 waited");
    assert_eq!(busy.status, 503);
    assert_eq!(busy.header("retry-after"), Some("1"));
    for reply in slow {
        assert_eq!(reply.join().expect("client").status, 200);
    }
}

#[test]
fn the_guest_sees_only_server_id_and_explicit_env() {
    let server = Server::start(
        &faulty_guest_p3(),
        &["--env", "GREETING=hi"],
        &[("SERVER_ID", "5"), ("HOST_SECRET", "do-not-leak")],
    );
    let mut vars: Vec<String> = get(&server.url("/env"))
        .body
        .lines()
        .map(str::to_string)
        .collect();
    vars.sort_unstable();
    assert_eq!(vars, ["GREETING=hi", "SERVER_ID=5"]);
}

#[test]
fn an_idle_instance_is_dropped_after_the_idle_timeout() {
    let server = faulty(&["--idle-instance-timeout", "200ms"]);
    assert_eq!((count(&server), count(&server)), (1, 2));
    // Time itself is what is tested here: five times the idle timeout.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&server), 1);
}
