//! Instance reuse: warm instances serve many requests by default, a fresh one
//! serves each in strict mode, and a failed instance is never reused. Also
//! the compile cache that spares a restart the compile. Each worker has
//! instances of its own: the tests run one worker, so that every request
//! meets the same ones.

mod common;

use common::{Server, faulty_guest, get};
use std::time::Duration;

fn count(server: &Server) -> u32 {
    get(&server.url("/count")).body.parse().expect("a count")
}

/// One worker: instances are per worker, and these tests follow one.
fn faulty(args: &[&str]) -> Server {
    let mut all = vec!["--workers", "1"];
    all.extend_from_slice(args);
    Server::start(&faulty_guest(), &all, &[("SERVER_ID", "1")])
}

#[test]
fn by_default_one_instance_serves_request_after_request() {
    let server = faulty(&[]);
    let counts: Vec<u32> = (0..5).map(|_| count(&server)).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5]);
}

#[test]
fn strict_mode_gives_every_request_a_fresh_instance() {
    let server = faulty(&["--strict"]);
    let counts: Vec<u32> = (0..5).map(|_| count(&server)).collect();
    assert_eq!(counts, [1, 1, 1, 1, 1]);
}

#[test]
fn an_instance_is_replaced_after_max_instance_reuse_requests() {
    let server = faulty(&["--max-instance-reuse", "3"]);
    let counts: Vec<u32> = (0..7).map(|_| count(&server)).collect();
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);
}

#[test]
fn an_instance_that_trapped_is_never_reused() {
    let server = faulty(&[]);
    assert_eq!((count(&server), count(&server)), (1, 2));
    assert_eq!(get(&server.url("/trap")).status, 500);
    // /trap ran on the warm instance and killed it: a fresh one follows.
    assert_eq!(count(&server), 1);
}

#[test]
fn an_instance_that_timed_out_is_never_reused() {
    let server = faulty(&["--request-timeout", "300ms"]);
    assert_eq!((count(&server), count(&server)), (1, 2));
    assert_eq!(get(&server.url("/loop")).status, 504);
    assert_eq!(count(&server), 1);
}

#[test]
fn an_idle_instance_is_dropped_after_the_idle_timeout() {
    let server = faulty(&["--idle-instance-timeout", "200ms"]);
    assert_eq!((count(&server), count(&server)), (1, 2));
    // Time itself is what is tested here: five times the idle timeout.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(count(&server), 1);
}

fn cwasm_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_restart_loads_the_compiled_component_from_the_cache() {
    let dir = std::env::temp_dir().join(format!("replica-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.to_str().expect("utf-8");
    let debug = [("SERVER_ID", "1"), ("RUST_LOG", "replica_host=debug")];

    let first = Server::start(&faulty_guest(), &["--cache-dir", cache], &debug);
    assert_eq!(get(&first.url("/ok")).status, 200);
    assert!(
        first.stderr().contains("component compiled in"),
        "{}",
        first.stderr()
    );
    drop(first);
    let entries = cwasm_files(&dir);
    assert_eq!(entries.len(), 1, "{entries:?}");

    let second = Server::start(&faulty_guest(), &["--cache-dir", cache], &debug);
    assert_eq!(get(&second.url("/ok")).status, 200);
    assert!(
        second.stderr().contains("loaded from the compile cache"),
        "{}",
        second.stderr()
    );

    // A cache entry is a precompiled component: it can be served directly,
    // when allowed.
    let precompiled = Server::start(
        &entries[0],
        &["--no-cache", "--allow-precompiled"],
        &[("SERVER_ID", "1")],
    );
    assert_eq!(get(&precompiled.url("/ok")).body, "ok");

    // A damaged entry is ignored with a warning, and the component recompiled.
    std::fs::write(&entries[0], b"not a compiled component").expect("write");
    let third = Server::start(&faulty_guest(), &["--cache-dir", cache], &debug);
    assert_eq!(get(&third.url("/ok")).status, 200);
    assert!(
        third.stderr().contains("unusable cache entry"),
        "{}",
        third.stderr()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cache_directory_that_cannot_be_written_costs_only_the_cache() {
    // Beneath a regular file no directory can be made, whoever runs the test
    // (root ignores permission bits, not this).
    let file = std::env::temp_dir().join(format!("replica-cache-file-{}", std::process::id()));
    std::fs::write(&file, b"not a directory").expect("write");
    let cache = file.join("cache");
    let server = Server::start(
        &faulty_guest(),
        &["--cache-dir", cache.to_str().expect("utf-8")],
        &[("SERVER_ID", "1")],
    );
    assert_eq!(get(&server.url("/ok")).body, "ok");
    assert!(
        server.logs_eventually("not caching the compiled component"),
        "{}",
        server.stderr()
    );
    let _ = std::fs::remove_file(&file);
}
