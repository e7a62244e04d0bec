//! A replica stays in its load balancer's rotation whatever a client does:
//! health checks as balancers send them (HTTP/1.0 without Host, HEAD, with a
//! real HAProxy checking), slow uploads that must not cost the heartbeat its
//! capacity, a body slower than the floor cut with a 408, a client that stops
//! reading cut off, and one window for a connection's first request.

mod common;

use common::haproxy::Haproxy;
use common::needs::{Test, Tool};
use common::{Server, client, faulty_guest, faulty_guest_p3, get, raw, request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() -> std::process::ExitCode {
    let test = |name, needs, run| Test { name, needs, run };
    common::needs::main(vec![
        test(
            "an_http_1_0_request_without_host_is_given_an_authority",
            &[],
            an_http_1_0_request_without_host_is_given_an_authority,
        ),
        test(
            "head_answers_with_the_head_the_guest_gives_whatever_it_writes",
            &[],
            head_answers_with_the_head_the_guest_gives_whatever_it_writes,
        ),
        test(
            "haproxy_keeps_the_replica_up_with_its_usual_health_checks",
            &[Tool::Haproxy],
            haproxy_keeps_the_replica_up_with_its_usual_health_checks,
        ),
        test(
            "slow_uploads_do_not_cost_the_heartbeat_its_place",
            &[Tool::Haproxy],
            slow_uploads_do_not_cost_the_heartbeat_its_place,
        ),
        test(
            "a_body_slower_than_the_floor_gets_a_408",
            &[],
            a_body_slower_than_the_floor_gets_a_408,
        ),
        test(
            "a_client_that_stops_reading_is_cut_off",
            &[],
            a_client_that_stops_reading_is_cut_off,
        ),
        test(
            "the_first_request_has_one_window_whatever_the_protocol",
            &[],
            the_first_request_has_one_window_whatever_the_protocol,
        ),
    ])
}

fn faulty(guest: &std::path::Path, args: &[&str]) -> Server {
    Server::start(guest, args, &[("SERVER_ID", "1")])
}

/// The body of the one response to `request`, sent on a connection of its own.
fn body_of(server: &Server, request: &str) -> (String, String) {
    let reply = raw(server, request.as_bytes(), Duration::from_secs(5));
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (head.to_string(), body.to_string())
}

fn an_http_1_0_request_without_host_is_given_an_authority() {
    for guest in [faulty_guest(), faulty_guest_p3()] {
        let server = faulty(&guest, &[]);
        let (head, _) = body_of(&server, "GET /heartbeat HTTP/1.0\r\n\r\n");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        // HTTP/1.1 must still name one (RFC 9112, 3.2).
        let (head, body) = body_of(
            &server,
            "GET /heartbeat HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert_eq!(body, r#"{"detail":"Bad Request"}"#);
    }
    // The 0.2 guest sees the address the connection came in on, or the
    // operator's --authority (a 0.3 guest sees an authority only from the
    // target, as upstream gives it).
    let server = faulty(&faulty_guest(), &[]);
    let (_, body) = body_of(&server, "GET /authority HTTP/1.0\r\n\r\n");
    assert_eq!(body, server.addr.to_string());
    let server = faulty(&faulty_guest(), &["--authority", "replica-1.internal:5000"]);
    let (_, body) = body_of(&server, "GET /authority HTTP/1.0\r\n\r\n");
    assert_eq!(body, "replica-1.internal:5000");
    let (_, body) = body_of(
        &server,
        "GET /authority HTTP/1.0\r\nHost: given.example\r\n\r\n",
    );
    assert_eq!(body, "given.example", "a Host given is kept");
}

fn head_answers_with_the_head_the_guest_gives_whatever_it_writes() {
    for guest in [faulty_guest(), faulty_guest_p3()] {
        let server = faulty(&guest, &[]);
        for (path, length) in [("/head-body", 27), ("/head-declared", 27)] {
            // Two HEADs and a GET on one connection: no body bytes after a
            // HEAD's head, and the connection goes on.
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let ask = format!(
                "HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\nHEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n\
                 GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(ask.as_bytes()).expect("send");
            let mut replies = String::new();
            let _ = stream.read_to_string(&mut replies);
            let heads: Vec<&str> = replies.split("HTTP/1.1 ").skip(1).collect();
            assert_eq!(heads.len(), 3, "{guest:?} {path}: {replies}");
            for head in &heads[..2] {
                assert!(head.starts_with("200 OK"), "{guest:?} {path}: {replies}");
                assert!(
                    head.to_ascii_lowercase()
                        .contains(&format!("content-length: {length}\r\n")),
                    "{guest:?} {path}: the declared length is kept: {replies}"
                );
                assert!(
                    head.ends_with("\r\n\r\n"),
                    "{guest:?} {path}: a body after HEAD: {replies}"
                );
            }
            assert!(
                heads[2].starts_with("200 OK") && heads[2].contains("\r\nok\r\n"),
                "{replies}"
            );
            // GET gets the body the guest writes.
            let reply = get(&server.url(path));
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body.len(), length);
        }
        assert!(
            !server.stderr().contains("ERROR"),
            "{guest:?}: HEAD was a failure for the host:\n{}",
            server.stderr()
        );
    }
}

/// Watches HAProxy's view of the replica for `span`, while a client sends
/// requests through it: every check must pass, every request be a 200.
fn assert_stays_up(haproxy: &Haproxy, span: Duration, what: &str) {
    assert!(
        common::eventually(Duration::from_secs(10), || haproxy
            .seen()
            .is_some_and(|seen| seen.check.starts_with("L7OK"))),
        "{what}: the first check never passed: {:?}",
        haproxy.seen()
    );
    let agent = client();
    let deadline = Instant::now() + span;
    let mut samples = 0;
    while Instant::now() < deadline {
        let seen = haproxy.seen().expect("HAProxy answers");
        assert!(
            seen.status == "UP" && seen.check.starts_with("L7OK"),
            "{what}: HAProxy took the replica out: {seen:?}"
        );
        let reply = request(&agent, "GET", &haproxy.url("/heartbeat")).expect("an answer");
        assert_eq!(reply.status, 200, "{what}: through HAProxy: {}", reply.body);
        samples += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples > 10, "{what}: only {samples} samples");
}

fn haproxy_keeps_the_replica_up_with_its_usual_health_checks() {
    for guest in [faulty_guest(), faulty_guest_p3()] {
        let server = faulty(&guest, &[]);
        // As HAProxy's documentation writes them: HTTP/1.0, no Host.
        for check in [
            "option httpchk GET /heartbeat",
            "option httpchk HEAD /heartbeat",
            "option httpchk HEAD /head-declared",
            "option httpchk HEAD /head-body",
        ] {
            let haproxy = Haproxy::start(server.addr, &[check]);
            assert_stays_up(
                &haproxy,
                Duration::from_secs(2),
                &format!("{guest:?} {check}"),
            );
        }
    }
}

/// Starts a slow upload: a request head declaring `length` bytes of body and
/// its first byte; the caller sends the rest, slowly.
fn slow_upload(server: &Server, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let head = format!("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\nx");
    stream.write_all(head.as_bytes()).expect("send");
    stream
}

fn slow_uploads_do_not_cost_the_heartbeat_its_place() {
    let mut server = faulty(&faulty_guest(), &["--max-concurrency", "256"]);
    // The fleet's own check (compose's haproxy.cfg), HTTP/1.1 with a Host.
    let haproxy = Haproxy::start(
        server.addr,
        &[
            "option httpchk",
            "http-check send meth GET uri /heartbeat ver HTTP/1.1 hdr Host lb",
        ],
    );
    // 300 uploads at a byte a second, small and large: at most half the
    // places go to them.
    let mut uploads: Vec<TcpStream> = (0..300)
        .map(|i| slow_upload(&server, if i % 2 == 0 { 1_000 } else { 500_000 }))
        .collect();
    let started = Instant::now();
    let mut heartbeats = 0;
    let mut failed = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        for upload in &mut uploads {
            let _ = upload.write_all(b"x");
        }
        // A fresh connection each time, as a balancer's check makes.
        match request(&client(), "GET", &server.url("/heartbeat")) {
            Ok(reply) if reply.status == 200 => {}
            Ok(reply) => failed.push(format!("{} {}", reply.status, reply.body)),
            Err(e) => failed.push(e.to_string()),
        }
        heartbeats += 1;
        let seen = haproxy.seen().expect("HAProxy answers");
        assert_eq!(seen.status, "UP", "HAProxy took the replica out: {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "{heartbeats} heartbeats during 300 slow uploads, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "heartbeats failed: {failed:?}");
    assert!(server.is_running());
}

fn a_body_slower_than_the_floor_gets_a_408() {
    for guest in [faulty_guest(), faulty_guest_p3()] {
        let server = faulty(
            &guest,
            &["--min-body-rate", "100", "--body-rate-grace", "1s"],
        );
        // Whatever the length the body declares.
        for length in [1_000, 500_000] {
            let mut stream = slow_upload(&server, length);
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let started = Instant::now();
            let mut reply = Vec::new();
            while started.elapsed() < Duration::from_secs(10) {
                let _ = stream.write_all(b"x");
                let mut buf = [0u8; 4096];
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => reply.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => break,
                }
                if String::from_utf8_lossy(&reply).contains("}") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let reply = String::from_utf8_lossy(&reply);
            assert!(
                reply.starts_with("HTTP/1.1 408"),
                "{guest:?} {length}: {reply:?}"
            );
            assert!(
                reply.ends_with(r#"{"detail":"Request Timeout"}"#),
                "{reply}"
            );
            assert!(
                reply.to_ascii_lowercase().contains("connection: close"),
                "{reply}"
            );
        }
        // A body at a normal pace is not.
        let reply = common::send(&client(), "POST", &server.url("/body"), &[b'y'; 100_000])
            .expect("an answer");
        assert_eq!((reply.status, reply.body.as_str()), (200, "100000"));
    }
}

fn a_client_that_stops_reading_is_cut_off() {
    for guest in [faulty_guest()] {
        let server = faulty(
            &guest,
            &["--write-timeout", "1s", "--request-timeout", "60s"],
        );
        let size = 256 << 20;
        let mut stream = TcpStream::connect(server.addr).expect("connect");
        let ask = format!("GET /big?bytes={size} HTTP/1.1\r\nHost: t\r\n\r\n");
        stream.write_all(ask.as_bytes()).expect("send");
        // Reads nothing for a while: the host's writes stall.
        std::thread::sleep(Duration::from_secs(4));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut read = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        assert!(
            read < size,
            "{guest:?}: read the whole {read} bytes: never cut off"
        );
        assert_eq!(get(&server.url("/ok")).body, "ok");
    }
}

/// How long the host keeps a connection whose client sends `opening` at
/// once, then `rest` after `pause`, then nothing: its first request never
/// completes.
fn kept_for(server: &Server, opening: &[u8], pause: Duration, rest: &[u8]) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.write_all(opening).expect("send");
    std::thread::sleep(pause);
    let _ = stream.write_all(rest);
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    // Whatever comes (a GOAWAY, a 408), the wait ends when the host closes.
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
    started.elapsed()
}

fn the_first_request_has_one_window_whatever_the_protocol() {
    let server = faulty(&faulty_guest(), &["--header-read-timeout", "2s"]);
    let pause = Duration::from_millis(1800);
    // A `P` could open HTTP/2's preface: the host waits to see which.
    let http1 = kept_for(&server, b"P", pause, b"OST /ok HTTP/1.1\r\nHost: t\r\n");
    // The preface, completed late, then no request.
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let http2 = kept_for(&server, &preface[..20], pause, &preface[20..]);
    println!("with --header-read-timeout 2s: HTTP/1.1 kept {http1:?}, HTTP/2 {http2:?}");
    for (protocol, kept) in [("HTTP/1.1", http1), ("HTTP/2", http2)] {
        assert!(
            kept < Duration::from_millis(3200),
            "{protocol}: kept {kept:?}, past the one window of 2 s"
        );
    }
    assert_eq!(get(&server.url("/ok")).body, "ok");
}
