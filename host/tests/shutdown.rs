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
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).expect("a response");
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
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

#[test]
fn sigterm_under_load_completes_every_accepted_request() {
    use std::io::{Read, Write};
    let mut server = Server::start(&faulty_guest(), &[], &[("SERVER_ID", "1")]);
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut tally = Tally::default();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while std::time::Instant::now() < deadline {
                    // A refused connection means the host stopped accepting: done.
                    let Ok(mut stream) = TcpStream::connect(addr) else {
                        break;
                    };
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let sent = stream.write_all(
                        b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                    );
                    let mut reply = String::new();
                    let read = stream.read_to_string(&mut reply);
                    if sent.is_ok()
                        && read.is_ok()
                        && reply.starts_with("HTTP/1.1 200")
                        && reply.contains("slow done")
                    {
                        tally.ok += 1;
                    } else {
                        tally.failed.push(format!("{sent:?} {read:?} {reply:?}"));
                    }
                }
                tally
            })
        })
        .collect();
    // Under way: a good number of requests have reached the guest.
    server.wait_for_log("slow request started", 16);
    server.signal(Signal::SIGTERM);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let ok: usize = tallies.iter().map(|t| t.ok).sum();
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert!(ok >= 8, "too little load: {ok}");
    assert!(
        failed.is_empty(),
        "{} accepted requests failed: {failed:?}",
        failed.len()
    );
    println!("drain under load: {ok} requests completed, 0 failed");
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
