//! SIGTERM and SIGINT: stop accepting, finish what is in flight, exit 0.

mod common;

use common::{Server, faulty_guest, get};
use nix::sys::signal::Signal;
use std::net::TcpStream;
use std::time::Duration;

fn drains_on(signal: Signal) {
    let mut server = Server::start(&faulty_guest(), &[], &[("SERVER_ID", "1")]);
    let url = server.url("/slow?ms=4000");
    let in_flight = std::thread::spawn(move || get(&url));
    server.wait_for_log("slow request started", 1);
    server.signal(signal);

    // While the request is still in the guest, the host already refuses new
    // connections: it stopped listening.
    let refused = common::eventually(Duration::from_secs(3), || {
        TcpStream::connect(server.addr).is_err()
    });
    let still_in_flight = !in_flight.is_finished();
    assert!(
        refused && still_in_flight,
        "after {signal}: new connections refused: {refused}, while the request was \
         still in flight: {still_in_flight}"
    );
    assert!(server.is_running(), "exited with a request in flight");

    let reply = in_flight.join().expect("client thread");
    assert_eq!((reply.status, reply.body.as_str()), (200, "slow done"));
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the host exits");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(server.stderr().contains("draining"), "{}", server.stderr());
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    drains_on(Signal::SIGTERM);
}

#[test]
fn sigint_does_the_same() {
    drains_on(Signal::SIGINT);
}

#[test]
fn an_idle_host_exits_without_waiting_for_the_grace_period() {
    let mut server = Server::start(
        &faulty_guest(),
        &["--shutdown-grace", "60s"],
        &[("SERVER_ID", "1")],
    );
    assert_eq!(get(&server.url("/ok")).status, 200);
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exits well before the 60 s grace period");
    assert!(status.success());
    assert!(server.stderr().contains("drained"), "{}", server.stderr());
}

#[test]
fn idle_keep_alive_connections_do_not_hold_up_shutdown() {
    use std::io::{Read, Write};
    let mut server = Server::start(
        &faulty_guest(),
        &["--shutdown-grace", "60s", "--header-read-timeout", "60s"],
        &[("SERVER_ID", "1")],
    );
    // Connections that served a request and stay open, idle, as a load
    // balancer's pool keeps them.
    let mut idle: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream
                .write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("write");
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            let response = common::read_chunked_response(&mut stream);
            assert!(response.starts_with(b"HTTP/1.1 200"));
            stream
        })
        .collect();
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exits well before the 60 s grace period");
    assert!(status.success(), "{}", server.stderr());
    assert!(server.stderr().contains("drained"), "{}", server.stderr());
    // Each idle connection was closed, not left hanging.
    for stream in &mut idle {
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).unwrap_or(0), 0);
    }
}

#[test]
fn the_grace_period_bounds_the_wait() {
    let mut server = Server::start(
        &faulty_guest(),
        &["--shutdown-grace", "300ms"],
        &[("SERVER_ID", "1")],
    );
    let url = server.url("/slow?ms=60000");
    let _in_flight = std::thread::spawn(move || common::request(&common::client(), "GET", &url));
    server.wait_for_log("slow request started", 1);
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exits after the grace period, long before the request would end");
    assert!(status.success());
    assert!(
        server.stderr().contains("grace period"),
        "{}",
        server.stderr()
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = Server::start(
        &faulty_guest(),
        &["--shutdown-grace", "30s"],
        &[("SERVER_ID", "1")],
    );
    let url = server.url("/slow?ms=60000");
    let _in_flight = std::thread::spawn(move || common::request(&common::client(), "GET", &url));
    server.wait_for_log("slow request started", 1);
    server.signal(Signal::SIGTERM);
    server.wait_for_log("draining", 1);
    assert!(server.is_running(), "exited before the grace period");
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits long before the 30 s grace period");
    assert!(status.success());
    assert!(
        server.stderr().contains("second SIGTERM"),
        "{}",
        server.stderr()
    );
}

/// What one client saw: requests answered in full, requests that failed after
/// the connection was accepted, and whether it stopped on a refused connect.
#[derive(Default, Debug)]
struct Tally {
    ok: usize,
    failed: Vec<String>,
}

/// Four workers, each with its own socket on the port, and clients opening
/// a connection per request as fast as they can, so that connections keep
/// arriving while the sockets close: every connection the kernel accepted is
/// answered in full, none is reset, the slow requests in flight included.
#[test]
fn sigterm_under_load_completes_every_accepted_request() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut server = Server::start(&faulty_guest(), &["--workers", "4"], &[("SERVER_ID", "1")]);
    let addr = server.addr;
    let answered = std::sync::Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let answered = answered.clone();
            std::thread::spawn(move || {
                // Every fourth client asks for a slow request: in flight at the signal.
                let (request, expected): (&[u8], &str) = if client % 4 == 0 {
                    (
                        b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        "slow done",
                    )
                } else {
                    (
                        b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                        "ok",
                    )
                };
                let mut tally = Tally::default();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < deadline {
                    // A refused connection means the host stopped accepting: done.
                    let Ok(mut stream) = TcpStream::connect(addr) else {
                        break;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let sent = stream.write_all(request);
                    let mut reply = String::new();
                    let read = stream.read_to_string(&mut reply);
                    if sent.is_ok()
                        && read.is_ok()
                        && reply.starts_with("HTTP/1.1 200")
                        && reply.contains(expected)
                    {
                        tally.ok += 1;
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.failed.push(format!("{sent:?} {read:?} {reply:?}"));
                    }
                }
                tally
            })
        })
        .collect();
    // Under way: slow requests in the guest, and many quick ones answered.
    server.wait_for_log("slow request started", 8);
    assert!(
        common::eventually(Duration::from_secs(20), || answered.load(Ordering::Relaxed)
            >= 500),
        "too little load"
    );
    server.signal(Signal::SIGTERM);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let ok: usize = tallies.iter().map(|t| t.ok).sum();
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(
        failed.is_empty(),
        "{} accepted requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    println!("drain under load, 4 workers: {ok} requests completed, 0 failed");
}

#[test]
fn a_closed_stdout_costs_the_listening_line_not_the_server() {
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut child = Command::new(common::HOST)
        .arg(common::faulty_guest())
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .env_clear()
        .env("SERVER_ID", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the host starts");
    // Close the read end: writing the listening line now fails (EPIPE).
    drop(child.stdout.take());
    let url = format!("http://127.0.0.1:{port}/ok");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reply = loop {
        if let Ok(reply) = common::request(&common::client(), "GET", &url) {
            break reply;
        }
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the host died"
        );
        assert!(std::time::Instant::now() < deadline, "never served");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reply.body, "ok");
    let _ = child.kill();
    let _ = child.wait();
}

/// From the drain's start, a new connection request goes unanswered (its SYN
/// is dropped) until the socket closes and refuses it: it never becomes a
/// connection that the closing socket would reset.
#[test]
fn draining_sockets_take_no_new_connection() {
    let mut server = Server::start(&faulty_guest(), &["--workers", "2"], &[("SERVER_ID", "1")]);
    // Keeps the host in its drain well past the sockets' closing.
    let url = server.url("/slow?ms=3000");
    let in_flight = std::thread::spawn(move || get(&url));
    server.wait_for_log("slow request started", 1);
    server.signal(Signal::SIGTERM);
    server.wait_for_log("draining", 1);
    let mut unanswered = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&server.addr, Duration::from_millis(30)) {
            Ok(_) => panic!("a connection was accepted while draining"),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => unanswered += 1,
            Err(_refused) => break,
        }
        assert!(std::time::Instant::now() < deadline, "never refused");
    }
    assert!(
        unanswered > 0,
        "refused at once: the drain took no new connection either way"
    );
    assert_eq!(in_flight.join().expect("client").body, "slow done");
    assert!(
        server
            .wait_exit(Duration::from_secs(10))
            .expect("exits")
            .success()
    );
}
