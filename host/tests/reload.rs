//! Hot swap: the component is replaced under load, on SIGHUP or with --watch,
//! without a single failed request; a broken replacement is rejected.

mod common;

use common::{
    Server, client, faulty_guest, faulty_guest_p3, replica_guest, replica_guest_p3, request,
};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const REPLICA_HOME: &str = r#"{"message":"Hello from Server: 1","status":"successful"}"#;
const FAULTY_HOME: &str = "faulty-home";
const FAULTY_P3_HOME: &str = "faulty-p3-home";

/// A scratch copy of a guest that the test can replace atomically.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("replica-reload-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("guest.wasm");
    install(&replica_guest(), &path);
    path
}

/// Puts `from` at `to` with a rename, as a deploy would.
fn install(from: &Path, to: &Path) {
    let partial = to.with_extension("partial");
    std::fs::copy(from, &partial).expect("copy");
    std::fs::rename(&partial, to).expect("rename");
}

/// Every (status, body) a client saw, or the error.
type Seen = Vec<Result<(u16, String), String>>;

/// Bounded load: a few clients GET /home until told to stop (or 60 s pass),
/// returning every (status, body) they saw, or the error.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Seen>>,
}

impl Load {
    fn start(server: &Server, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), server.url("/home"));
                std::thread::spawn(move || {
                    let agent = client();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        seen.push(
                            request(&agent, "GET", &url)
                                .map(|r| (r.status, r.body))
                                .map_err(|e| e.to_string()),
                        );
                    }
                    seen
                })
            })
            .collect();
        Load { stop, clients }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect()
    }
}

fn wait_for_body(server: &Server, body: &str) {
    assert!(
        common::eventually(Duration::from_secs(10), || common::get(
            &server.url("/home")
        )
        .body
            == body),
        "the host never served {body:?}; log:\n{}",
        server.stderr()
    );
}

#[test]
fn swapping_guests_under_load_fails_no_request_across_generations() {
    const SWAPS: usize = 20;
    let path = scratch("sighup");
    let server = Server::start(&path, &[], &[("SERVER_ID", "1")]);
    let load = Load::start(&server, 4);
    // 0.2 -> 0.3 -> 0.3 -> 0.2 -> 0.2 -> ...: every pair of generations, and
    // an answer that tells each swap from the one before.
    let cycle = [
        (faulty_guest_p3(), FAULTY_P3_HOME),
        (replica_guest_p3(), REPLICA_HOME),
        (faulty_guest(), FAULTY_HOME),
        (replica_guest(), REPLICA_HOME),
    ];
    for swap in 0..SWAPS {
        let (next, body) = &cycle[swap % cycle.len()];
        install(next, &path);
        server.signal(Signal::SIGHUP);
        wait_for_body(&server, body);
    }
    let seen = load.finish();

    let failed: Vec<_> = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );
    let with = |body: &str| {
        seen.iter()
            .filter(|r| matches!(r, Ok((_, b)) if b == body))
            .count()
    };
    let (replica, faulty, faulty_p3) =
        (with(REPLICA_HOME), with(FAULTY_HOME), with(FAULTY_P3_HOME));
    assert!(
        replica > 0 && faulty > 0 && faulty_p3 > 0,
        "responses never switched over"
    );
    assert_eq!(replica + faulty + faulty_p3, seen.len());
    println!(
        "{SWAPS} swaps under load across 0.2 and 0.3: {} requests, 0 failed \
         ({replica} replica, {faulty} faulty 0.2, {faulty_p3} faulty 0.3)",
        seen.len()
    );
    assert!(
        server
            .stderr()
            .contains("generation 20, wasi:http/proxy 0.2"),
        "{}",
        server.stderr()
    );
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn a_broken_replacement_is_rejected_and_the_old_guest_keeps_serving() {
    let path = scratch("broken");
    let server = Server::start(&path, &[], &[("SERVER_ID", "1")]);
    let load = Load::start(&server, 2);
    std::fs::write(&path, b"this is not a component").expect("write");
    server.signal(Signal::SIGHUP);
    assert!(
        server.logs_eventually("rejected the new"),
        "no rejection logged:\n{}",
        server.stderr()
    );
    let seen = load.finish();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| matches!(r, Ok((200, b)) if b == REPLICA_HOME)),
        "{:?}",
        seen.iter()
            .find(|r| !matches!(r, Ok((200, b)) if b == REPLICA_HOME))
    );
    assert!(
        server.logs_eventually("still serving the old one"),
        "{}",
        server.stderr()
    );
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn watch_reloads_when_the_file_changes_to_either_generation() {
    let path = scratch("watch");
    let server = Server::start(&path, &["--watch"], &[("SERVER_ID", "1")]);
    assert_eq!(common::get(&server.url("/home")).body, REPLICA_HOME);
    install(&faulty_guest_p3(), &path);
    wait_for_body(&server, FAULTY_P3_HOME);
    install(&faulty_guest(), &path);
    wait_for_body(&server, FAULTY_HOME);
    install(&replica_guest(), &path);
    wait_for_body(&server, REPLICA_HOME);
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}

#[test]
fn a_request_that_spans_a_swap_finishes_on_the_old_component() {
    for (old, home) in [
        (faulty_guest(), FAULTY_HOME),
        (faulty_guest_p3(), FAULTY_P3_HOME),
    ] {
        let path = scratch("span");
        install(&old, &path);
        let server = Server::start(&path, &[], &[("SERVER_ID", "1")]);
        assert_eq!(common::get(&server.url("/home")).body, home);
        // In the old (faulty) component: a slow request the new one has no route for.
        let url = server.url("/slow?ms=3000");
        let slow = std::thread::spawn(move || common::get(&url));
        server.wait_for_log("slow request started", 1);

        install(&replica_guest(), &path);
        server.signal(Signal::SIGHUP);
        server.wait_for_log("generation 1", 1);
        // The next request gets the new component while the slow one still runs.
        assert_eq!(common::get(&server.url("/home")).body, REPLICA_HOME);
        assert!(
            !slow.is_finished(),
            "the slow request ended before the swap"
        );
        assert_eq!(common::get(&server.url("/slow")).status, 404);

        let reply = slow.join().expect("client thread");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "slow done"),
            "{}",
            old.display()
        );
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }
}

#[test]
fn a_precompiled_replacement_is_refused_unless_allowed() {
    let dir = std::env::temp_dir().join(format!("replica-reload-cwasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cwasm = dir.join("faulty.cwasm");
    common::precompile(&faulty_guest(), &cwasm);

    // SIGHUP and --watch alike refuse it, and the old component goes on.
    let path = scratch("cwasm-refused");
    let server = Server::start(&path, &["--watch"], &[("SERVER_ID", "1")]);
    install(&cwasm, &path);
    assert!(
        server.logs_eventually("--allow-precompiled"),
        "{}",
        server.stderr()
    );
    server.signal(Signal::SIGHUP);
    server.wait_for_log("--allow-precompiled", 2);
    assert_eq!(common::get(&server.url("/home")).body, REPLICA_HOME);

    // Allowed: it is served.
    let path = scratch("cwasm-allowed");
    let server = Server::start(&path, &["--allow-precompiled"], &[("SERVER_ID", "1")]);
    install(&cwasm, &path);
    server.signal(Signal::SIGHUP);
    wait_for_body(&server, FAULTY_HOME);
    let _ = std::fs::remove_dir_all(&dir);
}
