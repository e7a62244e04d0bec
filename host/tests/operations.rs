//! Operating the host: access log, JSON logs, guest output in the log,
//! Prometheus metrics, the check/compile/probe subcommands, and --help.

mod common;

use common::{
    HOST, Server, faulty_guest, get, metric, replica_guest, replica_guest_p3, run_host, scrape,
};
use nix::sys::signal::Signal;

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn the_access_log_has_one_json_line_per_request_and_guest_output_is_tagged() {
    let server = Server::start(
        &faulty_guest(),
        &["--access-log", "--log-format", "json"],
        &[("SERVER_ID", "1"), ("RUST_LOG", "")],
    );
    assert_eq!(get(&server.url("/print")).body, "printed");
    assert_eq!(get(&server.url("/nope")).status, 404);
    server.wait_for_log(r#""target":"access""#, 2);
    let lines = json_lines(&server.stderr());
    let access: Vec<_> = lines.iter().filter(|l| l["target"] == "access").collect();
    assert_eq!(access.len(), 2, "{}", server.stderr());
    // The request's id, method and path are its span's, given once.
    let print = access
        .iter()
        .find(|l| l["span"]["path"] == "/print")
        .expect("the /print line");
    assert_eq!(print["span"]["method"], "GET");
    assert_eq!(print["span"]["name"], "request");
    assert_eq!(print["status"], 200);
    assert!(print["latency_us"].is_u64());
    assert_eq!(
        access
            .iter()
            .find(|l| l["span"]["path"] == "/nope")
            .expect("/nope")["status"],
        404
    );

    // The guest's stdout and stderr, each line tagged with that request's id.
    let guest: Vec<_> = lines.iter().filter(|l| l["target"] == "guest").collect();
    let out = guest
        .iter()
        .find(|l| l["stream"] == "stdout")
        .expect("guest stdout");
    assert_eq!(out["message"], "hello from the guest");
    assert!(print["span"]["id"].is_u64());
    assert_eq!(out["span"], print["span"]);
    let err = guest
        .iter()
        .find(|l| l["stream"] == "stderr")
        .expect("guest stderr");
    assert_eq!(err["message"], "and a warning");
}

#[test]
fn a_line_written_through_several_handles_is_one_log_entry() {
    let server = Server::start(
        &faulty_guest(),
        &["--log-format", "json"],
        &[("SERVER_ID", "1"), ("RUST_LOG", "")],
    );
    assert_eq!(get(&server.url("/print-pieces")).body, "printed");
    // The line left without its newline is logged when the request ends.
    server.wait_for_log("no newline at the end", 1);
    let lines = json_lines(&server.stderr());
    let guest: Vec<_> = lines.iter().filter(|l| l["target"] == "guest").collect();
    let messages: Vec<(&str, &str)> = guest
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap_or_default(),
                l["message"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("stderr", "start a print 1234"),
            ("stdout", "no newline at the end")
        ],
        "{}",
        server.stderr()
    );
    // Both in the span of the request that wrote them.
    for line in guest {
        assert_eq!(line["span"]["path"], "/print-pieces");
    }
}

#[test]
fn a_guest_cannot_forge_a_log_line() {
    let forged = "ok\r2026-12-01T00:00:00Z ERROR replica_host: FAKE line\u{1b}[2K\u{7}";
    // Text: escaped as JSON escapes it, on the one line the host wrote.
    let server = Server::start(&faulty_guest(), &[], &[("SERVER_ID", "1")]);
    assert_eq!(get(&server.url("/forge")).body, "forged");
    server.wait_for_log("FAKE line", 1);
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("FAKE line"))
        .expect("the guest's line");
    assert!(
        !line.contains(['\r', '\u{1b}', '\u{7}']),
        "a control character reached the text log: {line:?}"
    );
    assert!(
        line.contains(r"ok\r2026-12-01T00:00:00Z ERROR replica_host: FAKE line\u001b[2K\u0007"),
        "{line:?}"
    );
    assert!(
        line.contains("INFO") && line.contains("stream=\"stdout\""),
        "{line:?}"
    );
    // JSON escapes it itself: the message is what the guest wrote.
    let server = Server::start(
        &faulty_guest(),
        &["--log-format", "json"],
        &[("SERVER_ID", "1")],
    );
    assert_eq!(get(&server.url("/forge")).body, "forged");
    server.wait_for_log("FAKE line", 1);
    let lines = json_lines(&server.stderr());
    let guest = lines
        .iter()
        .find(|l| l["target"] == "guest")
        .expect("the guest's line");
    assert_eq!(guest["message"], forged);
}

#[test]
fn the_access_log_is_off_unless_asked_for() {
    let server = Server::start(
        &faulty_guest(),
        &[],
        &[("SERVER_ID", "1"), ("RUST_LOG", "")],
    );
    assert_eq!(get(&server.url("/ok")).status, 200);
    // A line the guest prints on a later request: once it is in the log, so
    // is anything written for /ok (stderr keeps its order).
    assert_eq!(get(&server.url("/print")).status, 200);
    server.wait_for_log("hello from the guest", 1);
    assert!(!server.stderr().contains("access"), "{}", server.stderr());
}

#[test]
fn metrics_count_requests_instances_traps_timeouts_rejections_and_reloads() {
    let server = Server::start(
        &replica_guest(),
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-route",
            "/home",
            "--max-header-bytes",
            "2048",
        ],
        &[("SERVER_ID", "1")],
    );
    for _ in 0..4 {
        assert_eq!(get(&server.url("/home")).status, 200);
    }
    assert_eq!(get(&server.url("/nope")).status, 404);
    let agent = common::client();
    let oversized = ureq::http::Request::builder()
        .uri(server.url("/home"))
        .header("x-big", "a".repeat(3000))
        .body(())
        .expect("request");
    assert_eq!(
        agent.run(oversized).expect("answered").status().as_u16(),
        431
    );
    server.signal(Signal::SIGHUP);
    assert!(server.logs_eventually("reloaded"), "{}", server.stderr());

    let metrics = scrape(&server);
    assert_eq!(
        metric(
            &metrics,
            r#"replica_requests_total{route="/home",status="200"}"#
        ),
        4.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"replica_requests_total{route="other",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            r#"replica_requests_total{route="/home",status="431"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&metrics, r#"replica_rejections_total{reason="headers"}"#),
        1.0
    );
    assert_eq!(
        metric(&metrics, r#"replica_reloads_total{outcome="ok"}"#),
        1.0
    );
    assert!(metric(&metrics, "replica_instantiations_total") >= 1.0);
    assert_eq!(
        metric(&metrics, "replica_request_duration_seconds_count"),
        6.0
    );
    assert_eq!(metric(&metrics, "replica_instances_in_use"), 0.0);
    assert!(metrics.trim_end().ends_with("# EOF"));

    // Traps and timeouts, from the faulty guest.
    let faulty = Server::start(
        &faulty_guest(),
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--request-timeout",
            "300ms",
        ],
        &[("SERVER_ID", "1")],
    );
    assert_eq!(get(&faulty.url("/trap")).status, 500);
    assert_eq!(get(&faulty.url("/loop")).status, 504);
    let metrics = scrape(&faulty);
    assert_eq!(metric(&metrics, "replica_traps_total"), 1.0);
    assert_eq!(metric(&metrics, "replica_timeouts_total"), 1.0);

    // The same from a 0.3 component.
    let faulty_p3 = Server::start(
        &common::faulty_guest_p3(),
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--request-timeout",
            "300ms",
        ],
        &[("SERVER_ID", "1")],
    );
    assert_eq!(get(&faulty_p3.url("/trap")).status, 500);
    assert_eq!(get(&faulty_p3.url("/loop")).status, 504);
    assert_eq!(get(&faulty_p3.url("/ok")).status, 200);
    let metrics = scrape(&faulty_p3);
    assert_eq!(metric(&metrics, "replica_traps_total"), 1.0);
    assert_eq!(metric(&metrics, "replica_timeouts_total"), 1.0);
    assert_eq!(metric(&metrics, "replica_instances_in_use"), 0.0);
    assert!(metric(&metrics, "replica_instantiations_total") >= 3.0);
}

#[test]
fn check_says_what_a_component_needs_which_world_and_whether_it_can_run() {
    for (guest, export, world) in [
        (
            replica_guest(),
            "wasi:http/incoming-handler@0.2.12 (instance)",
            "world: wasi:http/proxy 0.2",
        ),
        (
            replica_guest_p3(),
            "wasi:http/handler@0.3.0 (instance)",
            "world: wasi:http/service 0.3",
        ),
    ] {
        let (status, stdout, _) = run_host(&["check", guest.to_str().expect("utf-8")], &[]);
        assert!(status.success(), "{stdout}");
        assert!(stdout.contains(export), "{stdout}");
        assert!(stdout.contains(world), "{stdout}");
        assert!(stdout.contains("wasi:cli/environment@0.2."), "{stdout}");
        assert!(stdout.contains("this host can serve it: yes"), "{stdout}");
    }

    let dir = std::env::temp_dir().join(format!("replica-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let empty = dir.join("empty.wat");
    std::fs::write(&empty, "(component)").expect("write");
    let (status, stdout, _) = run_host(&["check", empty.to_str().expect("utf-8")], &[]);
    assert!(!status.success());
    for text in [
        "this host can serve it: no",
        "wasi:http/incoming-handler@0.2",
        "wasi:http/handler@0.3",
        "it exports nothing",
    ] {
        assert!(stdout.contains(text), "{text:?} missing: {stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_and_compile_share_the_compile_cache_with_serving() {
    let dir = std::env::temp_dir().join(format!("replica-shared-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.to_str().expect("utf-8");
    let env = [("REPLICA_CACHE_DIR", cache)];
    let guest = faulty_guest();
    let guest = guest.to_str().expect("utf-8");
    // The first check compiles and fills the cache; the second reads it.
    let (status, _, first) = run_host(&["check", guest], &env);
    assert!(status.success(), "{first}");
    assert!(first.contains("component compiled in"), "{first}");
    let (status, _, second) = run_host(&["check", guest], &env);
    assert!(status.success(), "{second}");
    assert!(second.contains("loaded from the compile cache"), "{second}");
    // compile finds it there; serving does too.
    let (status, stdout, stderr) = run_host(&["compile", guest], &env);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("already compiled in the cache"), "{stdout}");
    let mut cmd = std::process::Command::new(common::host());
    cmd.arg(guest).args(["--addr", "127.0.0.1:0"]);
    let server = Server::spawn(
        cmd,
        &[("SERVER_ID", "1"), ("REPLICA_CACHE_DIR", cache)],
        "listening on ",
    );
    assert!(
        server.stderr().contains("loaded from the compile cache"),
        "{}",
        server.stderr()
    );
    // Without a cache, compile says where it could go instead.
    let (status, _, stderr) = run_host(&["compile", guest, "--no-cache"], &env);
    assert!(!status.success());
    assert!(stderr.contains("-o FILE"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compile_writes_a_precompiled_component_that_serves() {
    let dir = std::env::temp_dir().join(format!("replica-compile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    for (name, guest) in [("p2", replica_guest()), ("p3", replica_guest_p3())] {
        let output = dir.join(format!("replica-{name}.cwasm"));
        let (status, stdout, stderr) = run_host(
            &[
                "compile",
                guest.to_str().expect("utf-8"),
                "-o",
                output.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert!(status.success(), "{stdout}{stderr}");
        assert!(output.is_file());
        let server = Server::start(
            &output,
            &["--no-cache", "--allow-precompiled"],
            &[("SERVER_ID", name)],
        );
        assert_eq!(
            get(&server.url("/home")).json()["message"],
            format!("Hello from Server: {name}")
        );
        assert!(
            !server.stderr().contains("compiled in"),
            "{}",
            server.stderr()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probe_exits_0_on_a_healthy_heartbeat_and_1_otherwise() {
    let server = Server::start(&replica_guest(), &[], &[("SERVER_ID", "1")]);
    let url = server.url("/heartbeat");
    let (status, stdout, _) = run_host(&["probe", &url], &[]);
    assert!(status.success(), "{stdout}");
    // Without a URL: this host's port, from REPLICA_ADDR.
    let addr = format!("0.0.0.0:{}", server.addr.port());
    let (status, _, _) = run_host(&["probe"], &[("REPLICA_ADDR", &addr)]);
    assert!(status.success());
    let (status, _, stderr) = run_host(&["probe", &server.url("/nope")], &[]);
    assert!(!status.success());
    assert!(stderr.contains("404"), "{stderr}");
    drop(server);
    let (status, _, stderr) = run_host(&["probe", &url, "--timeout", "500ms"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("cannot connect"), "{stderr}");

    // A server that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/heartbeat", silent.local_addr().expect("addr"));
    let (status, _, stderr) = run_host(&["probe", &url, "--timeout", "300ms"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("no answer within 300ms"), "{stderr}");
}

#[test]
fn help_lists_every_setting_and_subcommand() {
    let out = std::process::Command::new(HOST)
        .arg("--help")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    for item in [
        "check",
        "compile",
        "probe",
        "--server-id",
        "--env",
        "--addr",
        "--max-concurrency",
        "--max-memory-mib",
        "--max-instance-reuse",
        "--max-instance-concurrency",
        "--strict",
        "--request-timeout",
        "--shutdown-grace",
        "--header-read-timeout",
        "--max-header-bytes",
        "--max-body-bytes",
        "--allow-outbound",
        "--watch",
        "--cache-dir",
        "--no-cache",
        "--allow-precompiled",
        "--log-format",
        "--access-log",
        "--metrics-addr",
        "--metrics-route",
        "--workers",
        "--config",
        "--keyvalue",
        "--keyvalue-url",
        "--keyvalue-max-bytes",
        "--keyvalue-max-value-bytes",
        "--keyvalue-timeout",
        "[env: SERVER_ID=]",
    ] {
        assert!(help.contains(item), "--help lacks {item}:\n{help}");
    }
    // The store's URL may hold a password: --help never shows its value.
    let out = std::process::Command::new(HOST)
        .arg("--help")
        .env("REPLICA_KEYVALUE_URL", "redis://:s3cret@cache:6379")
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[env: REPLICA_KEYVALUE_URL]"), "{help}");
    assert!(!help.contains("s3cret"), "{help}");
}
