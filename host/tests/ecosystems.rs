//! Guests written for Spin and for wasmCloud, built by those ecosystems' own
//! SDKs from crates.io (`test-guests/sdk/`), served unchanged: Spin's
//! variables and key-value (2.0.0 from spin-sdk 5.2.0, 3.0.0 from spin-sdk
//! 7.0.0), wasmCloud's wasi:config draft, wasi:keyvalue and wasi:logging;
//! the same store seen through Spin's, wasmCloud's and the wasi:keyvalue
//! bindings, in memory and in Redis shared by replicas; and a Python guest
//! from componentize-py, served as it is.

mod common;

use common::needs::{Test, Tool};
use common::redis::Redis;
use common::{Server, get, run_host, sdk_guest, stateful_guest};

fn main() -> std::process::ExitCode {
    let test = |name, needs, run| Test { name, needs, run };
    common::needs::main(vec![
        test(
            "spin_guests_read_variables_and_keep_what_they_write_in_a_store",
            &[],
            spin_guests_read_variables_and_keep_what_they_write_in_a_store,
        ),
        test(
            "a_wasmcloud_guest_reads_config_counts_in_its_store_and_logs",
            &[],
            a_wasmcloud_guest_reads_config_counts_in_its_store_and_logs,
        ),
        test(
            "check_says_every_interface_of_these_guests_is_provided",
            &[],
            check_says_every_interface_of_these_guests_is_provided,
        ),
        test(
            "spin_wasmcloud_and_wasi_keyvalue_guests_share_one_store_in_redis",
            &[Tool::Redis],
            spin_wasmcloud_and_wasi_keyvalue_guests_share_one_store_in_redis,
        ),
        test(
            "a_python_guest_from_componentize_py_is_served_as_it_is",
            &[Tool::ComponentizePy],
            a_python_guest_from_componentize_py_is_served_as_it_is,
        ),
    ])
}

fn serve(guest: &str, args: &[&str]) -> Server {
    Server::start(&sdk_guest(guest), args, &[("SERVER_ID", "7")])
}

/// What `path` answers: status and body.
fn answer(server: &Server, path: &str) -> (u16, String) {
    let reply = get(&server.url(path));
    (reply.status, reply.body)
}

fn spin_guests_read_variables_and_keep_what_they_write_in_a_store() {
    for guest in ["spin-2", "spin-3"] {
        let server = serve(
            guest,
            &[
                "--config",
                "api_url=http://a.example",
                "--keyvalue-in",
                "default:preloaded=from the command line",
            ],
        );
        assert!(answer(&server, "/hello").1.starts_with("Hello from a Spin"));
        // Variables: the --config settings, by Spin's naming rules.
        assert_eq!(
            answer(&server, "/variable?name=api_url"),
            (200, "http://a.example".into())
        );
        assert_eq!(
            answer(&server, "/variable?name=server_id"),
            (200, "7".into()),
            "{guest}"
        );
        let (status, why) = answer(&server, "/variable?name=Api_Url");
        assert_eq!(status, 404);
        assert!(why.contains("InvalidName"), "{guest}: {why}");
        let (status, why) = answer(&server, "/variable?name=missing");
        assert_eq!(status, 404);
        assert!(why.contains("Undefined"), "{guest}: {why}");
        // The default store: preloaded, counted in, written, listed.
        assert_eq!(
            answer(&server, "/get?key=preloaded"),
            (200, "from the command line".into())
        );
        for n in 1..=3 {
            assert_eq!(answer(&server, "/count"), (200, n.to_string()), "{guest}");
        }
        assert_eq!(
            answer(&server, "/set?key=city&value=Lyon"),
            (200, "set".into())
        );
        assert_eq!(answer(&server, "/get?key=city"), (200, "Lyon".into()));
        assert_eq!(answer(&server, "/get?key=absent"), (404, "none".into()));
        assert_eq!(
            answer(&server, "/keys"),
            (200, "city\ncount\npreloaded".into()),
            "{guest}"
        );
    }
}

fn a_wasmcloud_guest_reads_config_counts_in_its_store_and_logs() {
    let server = serve(
        "wasmcloud",
        &["--config", "greeting=hi", "--log-format", "json"],
    );
    assert_eq!(answer(&server, "/hello").1, "Hello from a wasmCloud guest");
    assert_eq!(answer(&server, "/variable?name=greeting").1, "hi");
    assert_eq!(answer(&server, "/variable?name=SERVER_ID").1, "7");
    assert_eq!(answer(&server, "/variable?name=absent").1, "none");
    for n in 1..=3 {
        assert_eq!(answer(&server, "/count").1, n.to_string());
    }
    // wasi:logging: one entry per call, at its level, with its context, and
    // what it holds escaped as guest output is (JSON escapes it itself).
    assert_eq!(
        answer(&server, "/log?level=error&message=it%20broke%0dFAKE").1,
        "logged"
    );
    assert_eq!(
        answer(&server, "/log?level=info&message=all%20good").1,
        "logged"
    );
    server.wait_for_log("all good", 1);
    let lines: Vec<serde_json::Value> = server
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| l["target"] == "guest")
        .collect();
    assert_eq!(lines.len(), 2, "{}", server.stderr());
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["message"], "it broke\rFAKE");
    assert_eq!(lines[0]["context"], "sdk-test");
    assert_eq!(lines[0]["span"]["path"], "/log");
    assert_eq!(lines[1]["level"], "INFO");
    // The text format escapes the carriage return: no line is forged.
    let text = serve("wasmcloud", &[]);
    assert_eq!(
        answer(&text, "/log?level=warn&message=ok%0d2026%20ERROR%20FAKE").1,
        "logged"
    );
    text.wait_for_log("FAKE", 1);
    let line = text
        .stderr()
        .lines()
        .find(|l| l.contains("FAKE"))
        .expect("the entry")
        .to_string();
    assert!(
        line.contains(r"ok\r2026 ERROR FAKE") && line.contains("WARN"),
        "{line:?}"
    );
    assert!(line.contains("context=sdk-test"), "{line:?}");
}

fn check_says_every_interface_of_these_guests_is_provided() {
    for (guest, interfaces) in [
        (
            "spin-2",
            &[
                "fermyon:spin/variables@2.0.0",
                "fermyon:spin/key-value@2.0.0",
            ][..],
        ),
        (
            "spin-3",
            &[
                "spin:variables/variables@3.0.0",
                "spin:key-value/key-value@3.0.0",
            ],
        ),
        (
            "wasmcloud",
            &[
                "wasi:config/store@0.2.0-draft",
                "wasi:keyvalue/atomics@0.2.0-draft",
                "wasi:logging/logging@0.1.0-draft",
            ],
        ),
    ] {
        let path = sdk_guest(guest);
        let (status, report, _) = run_host(&["check", path.to_str().expect("utf-8")], &[]);
        assert!(status.success(), "{report}");
        assert!(!report.contains("NOT PROVIDED"), "{report}");
        for interface in interfaces {
            assert!(
                report.contains(&format!("{interface} (instance): provided")),
                "{guest}: {interface}:\n{report}"
            );
        }
        assert!(report.contains("this host can serve it: yes"), "{report}");
    }
}

fn spin_wasmcloud_and_wasi_keyvalue_guests_share_one_store_in_redis() {
    let redis = Redis::start();
    let url = redis.url();
    let with = |guest: &str| serve(guest, &["--keyvalue-url", &url]);
    let spin2 = with("spin-2");
    let spin3 = with("spin-3");
    let wasmcloud = with("wasmcloud");
    let stateful = Server::start(
        &stateful_guest(),
        &["--keyvalue-url", &url],
        &[("SERVER_ID", "8")],
    );
    // What one writes, each reads: Spin's `default` is wasi:keyvalue's
    // bucket "default".
    assert_eq!(answer(&spin2, "/set?key=who&value=spin-2").1, "set");
    assert_eq!(answer(&wasmcloud, "/get?key=who").1, "spin-2");
    assert_eq!(answer(&spin3, "/get?key=who").1, "spin-2");
    assert_eq!(
        get(&stateful.url("/kv/get?bucket=default&key=who")).body,
        "spin-2"
    );
    assert_eq!(answer(&wasmcloud, "/set?key=who&value=wasmcloud").1, "set");
    assert_eq!(answer(&spin2, "/get?key=who").1, "wasmcloud");
    // One counter, incremented through each in turn, counts once each.
    let counts = [
        answer(&spin2, "/count").1,
        answer(&wasmcloud, "/count").1,
        get(&stateful.url("/kv/incr?bucket=default&key=count")).body,
        answer(&spin3, "/count").1,
    ];
    assert_eq!(counts, ["1", "2", "3", "4"]);
    assert_eq!(answer(&spin3, "/keys").1, "count\nwho");
}

fn a_python_guest_from_componentize_py_is_served_as_it_is() {
    let server = Server::start(&common::python_guest(), &[], &[("SERVER_ID", "9")]);
    assert_eq!(
        answer(&server, "/hello"),
        (200, "Hello from a Python guest".into())
    );
    assert_eq!(
        answer(&server, "/home"),
        (
            200,
            r#"{"message":"Hello from Server: 9","status":"successful"}"#.into()
        )
    );
    assert_eq!(answer(&server, "/nope").0, 404);
}
