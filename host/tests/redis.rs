//! The wasi:keyvalue store in a real Redis (`--keyvalue-url`, Debian's
//! `redis-server` started on loopback): two replicas sharing one store,
//! increments that count once across them, namespaces and pages in Redis,
//! credentials never shown, Redis stopped (fast errors, heartbeats fine, one
//! log line) and started again (the host recovers by itself), Redis too slow,
//! and TLS (`rediss://`).

mod common;

use common::needs::{Test, Tool};
use common::redis::Redis;
use common::{Server, client, get, metric, request, run_host, scrape, send, stateful_guest};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn main() -> std::process::ExitCode {
    let test = |name, run| Test {
        name,
        needs: &[Tool::Redis],
        run,
    };
    common::needs::main(vec![
        test(
            "two_replicas_share_one_store_and_increments_count_once",
            two_replicas_share_one_store_and_increments_count_once,
        ),
        test(
            "wrong_credentials_stop_the_host_without_showing_them",
            wrong_credentials_stop_the_host_without_showing_them,
        ),
        test(
            "redis_down_or_slow_fails_store_calls_fast_and_the_host_recovers",
            redis_down_or_slow_fails_store_calls_fast_and_the_host_recovers,
        ),
        test(
            "rediss_reaches_redis_over_tls",
            rediss_reaches_redis_over_tls,
        ),
    ])
}

fn replica(id: &str, url: &str, args: &[&str]) -> Server {
    let mut all = vec!["--keyvalue-url", url];
    all.extend_from_slice(args);
    Server::start(&stateful_guest(), &all, &[("SERVER_ID", id)])
}

fn incr(server: &Server, agent: &ureq::Agent) -> common::Reply {
    request(agent, "GET", &server.url("/kv/incr?key=hits")).expect("an answer")
}

fn two_replicas_share_one_store_and_increments_count_once() {
    let redis = Redis::start_with(
        &["--requirepass", "s3cret"],
        &["-a", "s3cret", "--no-auth-warning"],
    );
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let a = replica("1", &url, &["--workers", "2", "--keyvalue", "hello=world"]);
    // B's preload does not overwrite what is already there.
    let b = replica("2", &url, &["--keyvalue", "hello=other"]);
    assert_eq!(get(&b.url("/kv/get?key=hello")).body, "world");

    let set = send(&client(), "POST", &a.url("/kv/set?key=k"), b"from a").expect("set");
    assert_eq!(set.status, 204);
    assert_eq!(get(&b.url("/kv/get?key=k")).body, "from a");

    // Eight clients, half on each replica: every increment counts once.
    let replicas = [&a, &b];
    let total = common::assert_increments_count_once(
        8,
        25,
        |i| replicas[i % 2].url("/kv/incr?key=hits"),
        false,
    );
    assert_eq!(total, 200);
    assert_eq!(redis.cli(&["HGET", "wasi:keyvalue:", "hits"]), "200");

    // Buckets are namespaces in Redis too, one hash each.
    let set = send(
        &client(),
        "POST",
        &a.url("/kv/set?bucket=sessions&key=s"),
        b"1",
    );
    assert_eq!(set.expect("set").status, 204);
    assert_eq!(get(&b.url("/kv/get?key=s")).status, 404);
    assert_eq!(redis.cli(&["HGET", "wasi:keyvalue:sessions", "s"]), "1");

    // Keys written through one replica are listed through the other, in
    // pages (Redis's own cursor), each key once.
    let fill = get(&a.url("/kv/fill?bucket=big&count=2500&size=3"));
    assert_eq!(fill.status, 204, "{}", fill.body);
    let listed = get(&b.url("/kv/list?bucket=big")).body;
    let mut lines: Vec<&str> = listed.lines().collect();
    let pages = lines.pop().expect("the page count");
    assert_ne!(pages, "pages=1", "one page for 2,500 keys");
    let keys: BTreeSet<&str> = lines.iter().copied().collect();
    assert_eq!(keys.len(), 2500);
    assert_eq!(lines.len(), 2500, "a key listed twice");

    for server in [&a, &b] {
        let log = server.stderr();
        assert!(
            !log.contains("s3cret"),
            "the password is in the log:\n{log}"
        );
        assert!(
            log.contains(&format!(
                "key-value store in Redis at redis://127.0.0.1:{}",
                redis.port
            )),
            "{log}"
        );
    }
}

fn wrong_credentials_stop_the_host_without_showing_them() {
    let redis = Redis::start_with(
        &["--requirepass", "s3cret"],
        &["-a", "s3cret", "--no-auth-warning"],
    );
    let guest = stateful_guest();
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", redis.port);
    let (status, stdout, stderr) = run_host(
        &[
            guest.to_str().expect("utf-8"),
            "--addr",
            "127.0.0.1:0",
            "--keyvalue-url",
            &url,
        ],
        &[("SERVER_ID", "1")],
    );
    assert!(!status.success(), "started: {stdout}{stderr}");
    assert!(
        stderr.contains("refused this host") && stderr.contains("--keyvalue-url"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-pw"), "{stderr}");
}

fn redis_down_or_slow_fails_store_calls_fast_and_the_host_recovers() {
    let mut redis = Redis::start();
    let timeout = Duration::from_millis(500);
    let server = replica(
        "1",
        &redis.url(),
        &[
            "--keyvalue-timeout",
            "500ms",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    let agent = client();
    assert_eq!(incr(&server, &agent).body, "1");

    redis.stop();
    // Every call fails within the store's timeout; the host serves on.
    for _ in 0..10 {
        let started = Instant::now();
        let reply = incr(&server, &agent);
        let took = started.elapsed();
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert!(
            reply.body.starts_with("keyvalue error:") && reply.body.contains("unavailable"),
            "{}",
            reply.body
        );
        assert!(took < timeout * 4, "a call took {took:?} with Redis down");
        assert_eq!(get(&server.url("/heartbeat")).status, 200);
    }
    // The outage is logged once, not once per call.
    server.wait_for_log("is unavailable", 1);
    assert_eq!(server.stderr().matches("is unavailable").count(), 1);

    // Redis back: the next call succeeds, by itself.
    redis.run();
    let reply = incr(&server, &agent);
    assert_eq!((reply.status, reply.body.as_str()), (200, "1"), "{reply:?}");
    server.wait_for_log("answers again", 1);

    // Redis too slow (its clients paused): the call gives up at the timeout.
    redis.cli(&["CLIENT", "PAUSE", "3000", "ALL"]);
    let started = Instant::now();
    let reply = incr(&server, &agent);
    let took = started.elapsed();
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert!(reply.body.contains("unavailable"), "{}", reply.body);
    assert!(took < timeout * 4, "a call took {took:?} with Redis paused");
    assert_eq!(get(&server.url("/heartbeat")).status, 200);
    redis.cli(&["CLIENT", "UNPAUSE"]);

    let metrics = scrape(&server);
    let errors = metric(
        &metrics,
        r#"replica_keyvalue_operations_total{operation="increment",outcome="error"}"#,
    );
    assert!(errors >= 11.0, "{errors} errors counted");
}

fn rediss_reaches_redis_over_tls() {
    let dir = std::env::temp_dir().join(format!("replica-rediss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("a certificate");
    let (cert_path, key_path) = (dir.join("redis.pem"), dir.join("redis.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let (cert_path, key_path) = (
        cert_path.to_str().expect("utf-8"),
        key_path.to_str().expect("utf-8"),
    );
    let redis = Redis::start_with(
        &[
            "--tls-port",
            "--tls-cert-file",
            cert_path,
            "--tls-key-file",
            key_path,
            "--tls-ca-cert-file",
            cert_path,
            "--tls-auth-clients",
            "no",
        ],
        &["--tls", "--cacert", cert_path],
    );
    // The certificate is trusted through SSL_CERT_FILE, as an operator
    // trusts a private CA.
    let server = Server::start(
        &stateful_guest(),
        &[
            "--keyvalue-url",
            &format!("rediss://localhost:{}", redis.port),
        ],
        &[("SERVER_ID", "1"), ("SSL_CERT_FILE", cert_path)],
    );
    let agent = client();
    assert_eq!(incr(&server, &agent).body, "1");
    assert_eq!(incr(&server, &agent).body, "2");
    assert_eq!(redis.cli(&["HGET", "wasi:keyvalue:", "hits"]), "2");
    let _ = std::fs::remove_dir_all(&dir);
}
