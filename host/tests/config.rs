//! Configuration the host must refuse, before it binds, with a message that
//! says what is wrong and a non-zero exit.

mod common;

use common::{Server, faulty_guest, get, replica_guest, run_host};
use std::net::TcpListener;

fn assert_refused(args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let (status, stdout, stderr) = run_host(args, env);
    assert!(!status.success(), "the host started: {stdout}{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    for text in expected {
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
    }
}

#[test]
fn refuses_to_start_without_server_id() {
    let guest = replica_guest();
    let guest = guest.to_str().expect("utf-8 path");
    assert_refused(
        &[guest, "--addr", "127.0.0.1:0"],
        &[],
        &["SERVER_ID", "--server-id"],
    );
    assert_refused(
        &[guest, "--addr", "127.0.0.1:0"],
        &[("SERVER_ID", "")],
        &["SERVER_ID is empty"],
    );
}

#[test]
fn refuses_a_missing_component_naming_the_path() {
    // Another's component: named, with no word of this project's build.
    let (status, _, stderr) = run_host(
        &["/no/such/guest.wasm", "--addr", "127.0.0.1:0"],
        &[("SERVER_ID", "1")],
    );
    assert!(!status.success());
    assert!(
        stderr.contains("replica-host cannot read the component /no/such/guest.wasm")
            && stderr.contains("there is no file /no/such/guest.wasm")
            && !stderr.contains("make build"),
        "{stderr}"
    );
    // This project's own guest, not built yet: `make build` makes it.
    let dir = std::env::temp_dir().join(format!("replica-unbuilt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut command = std::process::Command::new(common::host());
    command
        .current_dir(&dir)
        .env_clear()
        .env("SERVER_ID", "1")
        .args(["--addr", "127.0.0.1:0"]);
    let out = command.output().expect("the host runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("make build"), "{stderr}");
}

#[test]
fn version_names_this_host() {
    let (status, stdout, _) = run_host(&["--version"], &[]);
    assert!(status.success());
    assert!(stdout.starts_with("replica-host 0."), "{stdout}");
}

#[test]
fn refuses_files_that_are_not_components() {
    let dir = std::env::temp_dir().join(format!("replica-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases: [(&str, &[u8], &str); 6] = [
        ("text.wasm", b"hello, world", "not a WebAssembly component"),
        ("module.wasm", b"\0asm\x01\0\0\0", "core WebAssembly module"),
        (
            "broken.wasm",
            b"\0asm\x0d\0\x01\0\xff\xff",
            "not a valid component",
        ),
        (
            "empty-component.wat",
            b"(component)",
            "neither a wasi:http/proxy 0.2 component (exporting wasi:http/incoming-handler@0.2.x) \
             nor a wasi:http/service 0.3 one (exporting wasi:http/handler@0.3.x); it exports nothing",
        ),
        (
            "odd-export.wat",
            b"(component (instance $i) (export \"acme:db/query@1.0.0\" (instance $i)))",
            "it exports acme:db/query@1.0.0",
        ),
        (
            "odd-import.wat",
            b"(component (import \"acme:db/query@1.0.0\" (instance $q (export \"run\" (func)))) \
               (instance $h) (export \"wasi:http/incoming-handler@0.2.12\" (instance $h)))",
            "imports what this host does not provide:\n  - acme:db/query@1.0.0: not provided by this host",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        let path = path.to_str().expect("utf-8 path").to_string();
        assert_refused(
            &[&path, "--addr", "127.0.0.1:0"],
            &[("SERVER_ID", "1")],
            &[&path, expected],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_an_address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let guest = replica_guest();
    assert_refused(
        &[guest.to_str().expect("utf-8"), "--addr", &addr],
        &[("SERVER_ID", "1")],
        &[&addr, "already in use", "--addr"],
    );
}

#[test]
fn refuses_malformed_env_flags() {
    let guest = replica_guest();
    let guest = guest.to_str().expect("utf-8");
    assert_refused(
        &[guest, "--env", "=VALUE"],
        &[("SERVER_ID", "1")],
        &["empty name", "NAME=VALUE"],
    );
    assert_refused(
        &[guest, "--env", "SERVER_ID=2"],
        &[("SERVER_ID", "1")],
        &["--server-id"],
    );
    assert_refused(
        &[guest, "--env", "SERVER_ID"],
        &[("SERVER_ID", "1")],
        &["--server-id"],
    );
}

#[test]
fn env_name_alone_passes_the_hosts_own_variable_through() {
    let server = Server::start(
        &faulty_guest(),
        &["--env", "PASSED", "--env", "ABSENT", "--env", "SET=here"],
        &[
            ("SERVER_ID", "5"),
            ("PASSED", "from the host"),
            ("OTHER", "no"),
        ],
    );
    let reply = get(&server.url("/env"));
    let mut vars: Vec<&str> = reply.body.lines().collect();
    vars.sort_unstable();
    assert_eq!(vars, ["PASSED=from the host", "SERVER_ID=5", "SET=here"]);
    // A name the host does not have is said, once, at start.
    let stderr = server.stderr();
    assert!(
        stderr.contains("--env ABSENT: this host has no ABSENT in its environment")
            && stderr.contains("--env ABSENT=VALUE"),
        "{stderr}"
    );
    assert!(!stderr.contains("--env PASSED"), "{stderr}");
}

#[test]
fn the_guest_sees_only_server_id_and_explicit_env() {
    let server = Server::start(
        &faulty_guest(),
        &["--env", "GREETING=hi=there", "--env", "EMPTY="],
        &[("SERVER_ID", "5"), ("HOST_SECRET", "do-not-leak")],
    );
    let reply = get(&server.url("/env"));
    assert_eq!(reply.status, 200);
    let mut vars: Vec<&str> = reply.body.lines().collect();
    vars.sort_unstable();
    assert_eq!(vars, ["EMPTY=", "GREETING=hi=there", "SERVER_ID=5"]);
}

#[test]
fn on_off_settings_take_1_yes_or_true_from_the_environment() {
    let count = |server: &Server| get(&server.url("/count")).body;
    for on in ["1", "yes", "true"] {
        let strict = Server::start(
            &faulty_guest(),
            &[],
            &[("SERVER_ID", "1"), ("REPLICA_STRICT", on)],
        );
        assert_eq!(
            (count(&strict), count(&strict)),
            ("1".into(), "1".into()),
            "REPLICA_STRICT={on}"
        );
    }
    let reuse = Server::start(
        &faulty_guest(),
        &["--workers", "1"],
        &[("SERVER_ID", "1"), ("REPLICA_STRICT", "0")],
    );
    assert_eq!((count(&reuse), count(&reuse)), ("1".into(), "2".into()));
    assert_refused(
        &[replica_guest().to_str().expect("utf-8")],
        &[("SERVER_ID", "1"), ("REPLICA_STRICT", "maybe")],
        &["--strict", "maybe"],
    );
}

#[test]
fn a_precompiled_component_is_served_only_when_allowed() {
    let dir = std::env::temp_dir().join(format!("replica-precompiled-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cwasm = dir.join("guest.cwasm");
    common::precompile(&replica_guest(), &cwasm);
    let path = cwasm.to_str().expect("utf-8");
    assert_refused(
        &[path, "--addr", "127.0.0.1:0"],
        &[("SERVER_ID", "1")],
        &[
            path,
            "precompiled component",
            "--allow-precompiled",
            "outside the sandbox",
        ],
    );
    let (status, stdout, _) = run_host(&["check", path], &[]);
    assert!(
        !status.success() && stdout.contains("--allow-precompiled"),
        "{stdout}"
    );
    for allowed in [&["--allow-precompiled"][..], &[]] {
        let env: &[(&str, &str)] = if allowed.is_empty() {
            &[("SERVER_ID", "1"), ("REPLICA_ALLOW_PRECOMPILED", "1")]
        } else {
            &[("SERVER_ID", "1")]
        };
        let server = Server::start(&cwasm, allowed, env);
        assert_eq!(get(&server.url("/heartbeat")).status, 200);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
