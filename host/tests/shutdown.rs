//! SIGTERM and SIGINT: stop accepting, finish what is in flight, exit 0.

mod common;

use common::{Server, faulty_guest, get};
use nix::sys::signal::Signal;
use std::net::TcpStream;
use std::time::Duration;

fn drains_on(signal: Signal) {
    let mut server = Server::start(&faulty_guest(), &[], &[("SERVER_ID", "1")]);
    let url = server.url("/slow?ms=1500");
    let in_flight = std::thread::spawn(move || get(&url));
    std::thread::sleep(Duration::from_millis(400));
    server.signal(signal);

    let reply = in_flight.join().expect("client thread");
    assert_eq!((reply.status, reply.body.as_str()), (200, "slow done"));
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the host exits");
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(TcpStream::connect(server.addr).is_err(), "still accepting");
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
fn an_idle_host_exits_at_once() {
    let mut server = Server::start(&faulty_guest(), &[], &[("SERVER_ID", "1")]);
    assert_eq!(get(&server.url("/ok")).status, 200);
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(2))
        .expect("exits promptly");
    assert!(status.success());
}

#[test]
fn the_grace_period_bounds_the_wait() {
    let mut server = Server::start(
        &faulty_guest(),
        &["--shutdown-grace", "300ms"],
        &[("SERVER_ID", "1")],
    );
    let url = server.url("/slow?ms=20000");
    let _in_flight = std::thread::spawn(move || common::request(&common::client(), "GET", &url));
    std::thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the grace period");
    assert!(status.success());
    assert!(
        server.stderr().contains("grace period"),
        "{}",
        server.stderr()
    );
}
