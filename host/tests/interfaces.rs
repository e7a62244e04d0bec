//! Guests from elsewhere: the standard interfaces for settings and state
//! (wasi:config, wasi:keyvalue with the in-memory store), through a guest
//! that uses them as components written for other hosts do; and what `check`
//! and a refused start say of interfaces this host does not provide.
//! (The store in Redis: `redis.rs`.)

mod common;

use common::{Server, client, get, metric, request, run_host, scrape, send, stateful_guest};
use std::collections::BTreeSet;

fn stateful(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut with_id = vec![("SERVER_ID", "5")];
    with_id.extend_from_slice(env);
    Server::start(&stateful_guest(), args, &with_id)
}

/// GET `path` on a connection of its own.
fn fresh(server: &Server, path: &str) -> common::Reply {
    request(&client(), "GET", &server.url(path)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn set(server: &Server, bucket: &str, key: &str, value: &[u8]) -> common::Reply {
    let url = server.url(&format!("/kv/set?bucket={bucket}&key={key}"));
    send(&client(), "POST", &url, value).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

#[test]
fn where_the_store_lives_is_said_only_for_a_guest_that_imports_one() {
    let uses = stateful(&[], &[]);
    assert!(
        uses.logs_eventually("key-value store in this process's memory"),
        "{}",
        uses.stderr()
    );
    let replica = Server::start(&common::replica_guest(), &[], &[("SERVER_ID", "1")]);
    assert_eq!(get(&replica.url("/heartbeat")).status, 200);
    assert!(
        !replica.stderr().contains("key-value store"),
        "{}",
        replica.stderr()
    );
}

#[test]
fn config_gives_server_id_and_the_settings_passed_nothing_else() {
    let server = stateful(
        &["--config", "greeting=hi", "--config", "url=http://x/?a=b"],
        &[("HOST_SECRET", "do-not-leak")],
    );
    let all = get(&server.url("/config-all"));
    assert_eq!(all.status, 200);
    assert_eq!(all.body, "SERVER_ID=5\ngreeting=hi\nurl=http://x/?a=b");
    assert_eq!(get(&server.url("/config?key=greeting")).body, "hi");
    assert_eq!(get(&server.url("/config?key=SERVER_ID")).body, "5");
    let missing = get(&server.url("/config?key=HOST_SECRET"));
    assert_eq!((missing.status, missing.body.as_str()), (404, "none"));

    // The environment fallback takes one setting per line.
    let from_env = stateful(&[], &[("REPLICA_CONFIG", "a=1\nb=2=3")]);
    assert_eq!(
        get(&from_env.url("/config-all")).body,
        "SERVER_ID=5\na=1\nb=2=3"
    );
}

#[test]
fn config_and_store_flags_are_checked_before_serving() {
    let guest = stateful_guest();
    let guest = guest.to_str().expect("utf-8");
    for (args, expected) in [
        (&["--config", "SERVER_ID=2"][..], "--server-id"),
        (&["--config", "novalue"], "KEY=VALUE"),
        (&["--config", "a=1", "--config", "a=2"], "given twice"),
        (&["--keyvalue", "=x"], "empty key"),
        (&["--keyvalue-url", "http://cache:6379"], "redis://"),
        (&["--keyvalue-url", "redis://cache/db"], "not a number"),
        (
            &["--keyvalue", "big=xxxxxxxxxx", "--keyvalue-max-bytes", "5"],
            "--keyvalue-max-bytes",
        ),
    ] {
        let mut argv = vec![guest, "--addr", "127.0.0.1:0"];
        argv.extend_from_slice(args);
        let (status, stdout, stderr) = run_host(&argv, &[("SERVER_ID", "1")]);
        assert!(!status.success(), "{args:?} started: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn the_store_keeps_what_it_is_given_across_connections_workers_and_instances() {
    // Strict mode: a fresh instance for every request, so what a request
    // reads can only have come from the store.
    let server = stateful(
        &["--workers", "2", "--strict", "--keyvalue", "hello=world"],
        &[],
    );
    assert_eq!(fresh(&server, "/kv/get?key=hello").body, "world");
    assert_eq!(set(&server, "", "k", b"v1").status, 204);
    for _ in 0..20 {
        let reply = fresh(&server, "/kv/get?key=k");
        assert_eq!((reply.status, reply.body.as_str()), (200, "v1"));
    }
    assert_eq!(set(&server, "", "k", b"v2").status, 204);
    assert_eq!(fresh(&server, "/kv/get?key=k").body, "v2");
    assert_eq!(fresh(&server, "/kv/exists?key=k").body, "true");
    assert_eq!(fresh(&server, "/kv/delete?key=k").status, 204);
    assert_eq!(fresh(&server, "/kv/exists?key=k").body, "false");
    assert_eq!(fresh(&server, "/kv/get?key=k").status, 404);
}

#[test]
fn concurrent_increments_all_count_once() {
    const CLIENTS: usize = 8;
    const EACH: usize = 50;
    let server = stateful(&["--workers", "2"], &[]);
    // Every increment returns a count of its own: none is lost or doubled.
    let url = server.url("/kv/incr?key=hits");
    let total = common::assert_increments_count_once(CLIENTS, EACH, |_| url.clone(), false);
    assert_eq!(get(&server.url("/kv/get?key=hits")).body, total.to_string());
    assert_eq!(
        get(&server.url("/kv/incr?key=hits&by=10")).body,
        (total + 10).to_string()
    );
}

#[test]
fn buckets_are_namespaces_and_list_keys_pages_through_every_key() {
    let server = stateful(&[], &[]);
    assert_eq!(set(&server, "", "a", b"1").status, 204);
    assert_eq!(set(&server, "sessions", "b", b"2").status, 204);
    assert_eq!(
        get(&server.url("/kv/get?bucket=sessions&key=a")).status,
        404
    );
    assert_eq!(get(&server.url("/kv/get?key=b")).status, 404);
    assert_eq!(get(&server.url("/kv/list")).body, "a\npages=1");
    assert_eq!(
        get(&server.url("/kv/list?bucket=sessions")).body,
        "b\npages=1"
    );

    // 2,500 keys come in several pages, each key once.
    let fill = get(&server.url("/kv/fill?bucket=big&count=2500&size=3"));
    assert_eq!(fill.status, 204, "{}", fill.body);
    let listed = get(&server.url("/kv/list?bucket=big")).body;
    let mut lines: Vec<&str> = listed.lines().collect();
    let pages = lines.pop().expect("the page count");
    let pages: u32 = pages
        .strip_prefix("pages=")
        .and_then(|n| n.parse().ok())
        .expect("pages=N");
    assert!(pages >= 3, "{pages} pages");
    let keys: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(keys.len(), 2500, "a key listed twice or missed");
    assert!(keys.contains("k0") && keys.contains("k2499"));

    let many = get(&server.url("/kv/get-many?bucket=big&keys=k1,nope,k2"));
    assert_eq!(many.body, "k1=vvv\nnope: none\nk2=vvv");
    assert_eq!(
        get(&server.url("/kv/delete-many?bucket=big&keys=k1,k2")).status,
        204
    );
    assert_eq!(
        get(&server.url("/kv/get-many?bucket=big&keys=k1,k2")).body,
        "k1: none\nk2: none"
    );
}

#[test]
fn the_store_is_bounded_and_says_so_to_the_guest() {
    let server = stateful(
        &[
            "--keyvalue-max-value-bytes",
            "100",
            "--keyvalue-max-bytes",
            "2000",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &[],
    );
    let too_big = set(&server, "", "big", &[b'x'; 101]);
    assert_eq!(too_big.status, 500);
    assert!(
        too_big.body.starts_with("keyvalue error:")
            && too_big.body.contains("--keyvalue-max-value-bytes"),
        "{}",
        too_big.body
    );
    assert_eq!(set(&server, "", "fits", &[b'x'; 100]).status, 204);

    // 30 keys of 52 bytes fit; 30 more do not, and none of them is kept.
    let first = get(&server.url("/kv/fill?bucket=a&count=30&size=50"));
    assert_eq!(first.status, 204, "{}", first.body);
    let full = get(&server.url("/kv/fill?bucket=b&count=30&size=50"));
    assert_eq!(full.status, 500);
    assert!(
        full.body.contains("full") && full.body.contains("--keyvalue-max-bytes"),
        "{}",
        full.body
    );
    assert_eq!(get(&server.url("/kv/list?bucket=b")).body, "pages=1");
    // Deleting makes room again.
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    let delete = format!("/kv/delete-many?bucket=a&keys={}", keys.join(","));
    assert_eq!(get(&server.url(&delete)).status, 204);
    assert_eq!(
        get(&server.url("/kv/fill?bucket=b&count=30&size=50")).status,
        204
    );
    // The host serves on, and counts what reached the store.
    assert_eq!(get(&server.url("/heartbeat")).status, 200);
    let metrics = scrape(&server);
    let series = |operation: &str, outcome: &str| {
        metric(
            &metrics,
            &format!(
                "replica_keyvalue_operations_total{{operation=\"{operation}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(series("set", "ok"), 1.0);
    assert_eq!(series("set-many", "error"), 1.0);
    assert_eq!(series("set-many", "ok"), 2.0);
}

/// A 0.2 component that imports, beside wasi:http, interfaces this host does
/// not provide.
const FOREIGN: &str = r#"(component
  (import "wasi:logging/logging@0.2.0" (instance (export "log" (func))))
  (import "fermyon:spin/redis@2.0.0" (instance (export "get" (func))))
  (import "wasmcloud:bus/lattice@2.0.0" (instance (export "set-link-name" (func))))
  (import "wasi:keyvalue/store@0.2.0" (instance (export "open" (func))))
  (instance $h)
  (export "wasi:http/incoming-handler@0.2.12" (instance $h)))"#;

#[test]
fn check_and_a_refused_start_name_each_interface_not_provided() {
    let dir = std::env::temp_dir().join(format!("replica-interfaces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let foreign = dir.join("foreign.wat");
    std::fs::write(&foreign, FOREIGN).expect("write");
    let foreign = foreign.to_str().expect("utf-8");

    let (status, stdout, stderr) =
        run_host(&[foreign, "--addr", "127.0.0.1:0"], &[("SERVER_ID", "1")]);
    assert!(!status.success(), "started: {stdout}{stderr}");
    for expected in [
        "imports what this host does not provide",
        "wasi:logging/logging@0.2.0: this host provides wasi:logging/logging@0.1.0-draft",
        "fermyon:spin/redis@2.0.0: a Spin interface this host does not provide",
        "wasmcloud:bus/lattice@2.0.0: wasmCloud's own interface",
        "wasi:keyvalue/store@0.2.0: this host provides wasi:keyvalue store, atomics and batch at 0.2.0-draft and 0.2.0-draft2",
    ] {
        assert!(stderr.contains(expected), "lacks {expected:?}:\n{stderr}");
    }

    let (status, report, _) = run_host(&["check", foreign], &[]);
    assert!(!status.success());
    assert!(
        report.contains("wasi:logging/logging@0.2.0 (instance): NOT PROVIDED"),
        "{report}"
    );
    assert!(report.contains("this host can serve it: no"), "{report}");

    // The stateful guest's interfaces are all provided, and `check` says
    // what each gives.
    let guest = stateful_guest();
    let (status, report, _) = run_host(&["check", guest.to_str().expect("utf-8")], &[]);
    assert!(status.success(), "{report}");
    for expected in [
        "wasi:config/store@0.2.0-rc.1 (instance): provided: SERVER_ID and the --config settings",
        "wasi:keyvalue/atomics@0.2.0-draft (instance): provided",
        "wasi:cli/environment@0.2.6 (instance): provided: SERVER_ID and the --env variables only",
        "this host can serve it: yes",
    ] {
        assert!(report.contains(expected), "lacks {expected:?}:\n{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
