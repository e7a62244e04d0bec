//! HTTP/2 and TLS on the replica's port: cleartext HTTP/2 by prior knowledge
//! beside HTTP/1.1, TLS with HTTP/2 or HTTP/1.1 by ALPN, the certificate
//! reloaded on SIGHUP and refused at start when it cannot be used, the limits
//! of HTTP/1.1 and HTTP/2's own, the known HTTP/2 floods (sent by hand, frame
//! by frame) while /heartbeat keeps answering, and drain and hot swap with
//! HTTP/2 connections open. Real clients: hyper's HTTP/2 client, rustls, and
//! curl (where it is installed).

mod common;

use bytes::Bytes;
use common::needs::{Test, Tool};
use common::{Server, faulty_guest, get, replica_guest, run_host};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const HOME_1: &str = r#"{"message":"Hello from Server: 1","status":"successful"}"#;

fn main() -> std::process::ExitCode {
    macro_rules! tests {
        ($($name:ident $(needs $tool:ident)?),* $(,)?) => {
            vec![$(Test { name: stringify!($name), needs: &[$(Tool::$tool)?], run: $name }),*]
        };
    }
    common::needs::main(tests![
        http1_and_cleartext_http2_share_the_port,
        curl_speaks_both_over_cleartext_and_tls needs Curl,
        tls_offers_http2_and_http1_by_alpn,
        a_certificate_that_cannot_be_used_stops_the_host_before_it_binds,
        sighup_reloads_the_certificate,
        probe_speaks_tls,
        http2_has_the_http1_limits,
        a_client_past_max_streams_is_refused_the_stream,
        a_silent_http2_connection_is_closed,
        rapid_reset_is_cut_off_while_heartbeat_answers,
        endless_continuation_is_cut_off_while_heartbeat_answers,
        settings_and_ping_floods_do_not_starve_heartbeat,
        http2_connections_drain_and_follow_a_hot_swap,
    ])
}

/// A runtime whose tasks go on while a test blocks its own thread waiting.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// An HTTP/2 connection (hyper's client) over `io`.
async fn h2<I>(io: I) -> SendRequest<Full<Bytes>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

async fn h2c(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    h2(tokio::net::TcpStream::connect(addr).await.expect("connect")).await
}

/// GET `path` on an HTTP/2 connection: status and body.
async fn h2_get(sender: &mut SendRequest<Full<Bytes>>, path: &str) -> (u16, String) {
    h2_request(sender, "GET", path, &[], Bytes::new()).await
}

/// Any request on an HTTP/2 connection (hyper declares the body's length).
async fn h2_request(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
) -> (u16, String) {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    sender.ready().await.expect("ready");
    let response = sender
        .send_request(request.body(Full::new(body)).expect("a request"))
        .await
        .expect("a response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn replica(args: &[&str]) -> Server {
    Server::start(&replica_guest(), args, &[("SERVER_ID", "1")])
}

fn http1_and_cleartext_http2_share_the_port() {
    let server = replica(&[]);
    assert_eq!(get(&server.url("/home")).body, HOME_1);
    runtime().block_on(async {
        let mut sender = h2c(server.addr).await;
        // Several requests on the one connection, some at once.
        let (mut one, mut two) = (sender.clone(), sender.clone());
        let (a, b) = tokio::join!(h2_get(&mut one, "/home"), h2_get(&mut two, "/heartbeat"));
        assert_eq!(a, (200, HOME_1.to_string()));
        assert_eq!(b, (200, String::new()));
        assert_eq!(h2_get(&mut sender, "/nope").await.0, 404);
    });
    // A preface that arrives in pieces is still HTTP/2: the host waits for
    // enough of it to tell (a request line starting "P" could be either).
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    for piece in frames::PREFACE.chunks(3) {
        // Refused as HTTP/1.1, the connection may close before the rest.
        let _ = stream.write_all(piece);
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = stream.write_all(&frames::frame(frames::SETTINGS, 0, 0, &[]));
    let sent = read_frames(&mut stream, Duration::from_secs(1));
    assert!(
        sent.frames.iter().any(|f| f.0 == frames::SETTINGS) && !sent.closed,
        "not answered as HTTP/2: {} frames, closed: {}",
        sent.frames.len(),
        sent.closed
    );
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            " %{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn curl_speaks_both_over_cleartext_and_tls() {
    let server = replica(&[]);
    let url = server.url("/home");
    assert_eq!(
        curl(&["--http2-prior-knowledge", &url]),
        format!("{HOME_1} 2 200")
    );
    assert_eq!(curl(&["--http1.1", &url]), format!("{HOME_1} 1.1 200"));

    let certs = Certs::new("curl");
    let server = tls_replica(&certs);
    let url = format!("https://localhost:{}/home", server.addr.port());
    let ca = certs.cert.to_str().expect("utf-8");
    assert_eq!(curl(&["--cacert", ca, &url]), format!("{HOME_1} 2 200"));
    assert_eq!(
        curl(&["--cacert", ca, "--http1.1", &url]),
        format!("{HOME_1} 1.1 200")
    );
}

/// A self-signed certificate for localhost and its key, as PEM files.
struct Certs {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("replica-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let certs = Certs {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        certs.write_new("first");
        certs
    }

    /// A new certificate (and key), told apart by `organization`.
    fn write_new(&self, organization: &str) {
        let (cert, key) = self_signed(organization);
        std::fs::write(&self.cert, cert).expect("write");
        std::fs::write(&self.key, key).expect("write");
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, and its key (PEM).
fn self_signed(organization: &str) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, organization);
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = params.self_signed(&key).expect("a certificate");
    (cert.pem(), key.serialize_pem())
}

fn tls_replica(certs: &Certs) -> Server {
    replica(&[
        "--tls-cert",
        certs.cert.to_str().expect("utf-8"),
        "--tls-key",
        certs.key.to_str().expect("utf-8"),
    ])
}

/// A TLS connection to `addr` trusting `ca`, offering `alpn`: the protocol
/// negotiated, the server's certificate, and the stream.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[&[u8]],
) -> (
    Option<Vec<u8>>,
    Vec<u8>,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("the CA") {
        roots.add(cert.expect("a certificate")).expect("added");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().expect("a name"), tcp)
        .await
        .expect("a TLS handshake");
    let session = stream.get_ref().1;
    let protocol = session.alpn_protocol().map(<[u8]>::to_vec);
    let peer = session.peer_certificates().expect("a certificate")[0].to_vec();
    (protocol, peer, stream)
}

fn tls_offers_http2_and_http1_by_alpn() {
    let certs = Certs::new("alpn");
    let server = tls_replica(&certs);
    assert!(
        server.stdout().contains("listening on https://"),
        "{}",
        server.stdout()
    );
    runtime().block_on(async {
        let (protocol, _, stream) =
            tls_connect(server.addr, &certs.cert, &[b"h2", b"http/1.1"]).await;
        assert_eq!(protocol.as_deref(), Some(&b"h2"[..]));
        let mut sender = h2(stream).await;
        assert_eq!(
            h2_get(&mut sender, "/home").await,
            (200, HOME_1.to_string())
        );

        let (protocol, _, mut stream) = tls_connect(server.addr, &certs.cert, &[b"http/1.1"]).await;
        assert_eq!(protocol.as_deref(), Some(&b"http/1.1"[..]));
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(b"GET /home HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.ends_with(HOME_1),
            "{reply}"
        );
    });
    // Cleartext is not served on a TLS port.
    let mut plain = TcpStream::connect(server.addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = plain.write_all(b"GET /home HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(!reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
}

fn assert_refused(args: &[&str], expected: &[&str]) {
    let mut all = vec![replica_guest().to_str().expect("utf-8").to_string()];
    all.extend(["--addr", "127.0.0.1:0"].map(String::from));
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (status, stdout, stderr) = run_host(&all, &[("SERVER_ID", "1")]);
    assert!(!status.success(), "the host started: {stdout}{stderr}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    for text in expected {
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
    }
}

fn a_certificate_that_cannot_be_used_stops_the_host_before_it_binds() {
    let certs = Certs::new("refused");
    let (cert, key) = (
        certs.cert.to_str().expect("utf-8"),
        certs.key.to_str().expect("utf-8"),
    );
    // Each flag needs the other.
    assert_refused(&["--tls-cert", cert], &["--tls-key"]);
    assert_refused(
        &["--tls-cert", "/no/such/cert.pem", "--tls-key", key],
        &["/no/such/cert.pem", "--tls-cert"],
    );
    let garbage = certs.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let garbage = garbage.to_str().expect("utf-8");
    assert_refused(
        &["--tls-cert", garbage, "--tls-key", key],
        &[garbage, "no PEM certificate"],
    );
    assert_refused(
        &["--tls-cert", cert, "--tls-key", garbage],
        &[garbage, "private key"],
    );
    // A key from another pair.
    let other = certs.dir.join("other-key.pem");
    std::fs::write(&other, self_signed("other").1).expect("write");
    let other = other.to_str().expect("utf-8");
    assert_refused(
        &["--tls-cert", cert, "--tls-key", other],
        &["cannot be used together", other],
    );
}

fn sighup_reloads_the_certificate() {
    let certs = Certs::new("reload");
    let server = tls_replica(&certs);
    let peer =
        || runtime().block_on(async { tls_connect(server.addr, &certs.cert, &[b"h2"]).await.1 });
    let first = peer();
    // A broken pair is refused and the one before goes on serving.
    std::fs::write(&certs.key, "broken").expect("write");
    server.signal(Signal::SIGHUP);
    server.wait_for_log("rejected the new TLS certificate", 1);
    assert_eq!(peer(), first);
    certs.write_new("second");
    server.signal(Signal::SIGHUP);
    server.wait_for_log("reloaded the TLS certificate", 1);
    let second = peer();
    assert_ne!(second, first, "still the first certificate");
}

fn probe_speaks_tls() {
    let certs = Certs::new("probe");
    let server = tls_replica(&certs);
    let url = format!("https://127.0.0.1:{}/heartbeat", server.addr.port());
    // Self-signed: refused unless told otherwise.
    let (status, _, stderr) = run_host(&["probe", &url], &[]);
    assert!(
        !status.success() && stderr.contains("--insecure"),
        "{stderr}"
    );
    let (status, stdout, stderr) = run_host(&["probe", "--insecure", &url], &[]);
    assert!(status.success(), "{stdout}{stderr}");
    // Its own port, as the container's health check asks: TLS when the host serves it.
    let addr = format!("0.0.0.0:{}", server.addr.port());
    let cert = certs.cert.to_str().expect("utf-8");
    let (status, stdout, stderr) = run_host(
        &["probe"],
        &[("REPLICA_ADDR", &addr), ("REPLICA_TLS_CERT", cert)],
    );
    assert!(
        status.success() && stdout.contains("https://"),
        "{stdout}{stderr}"
    );
}

fn http2_has_the_http1_limits() {
    let server = Server::start(
        &faulty_guest(),
        &[
            "--max-header-bytes",
            "4096",
            "--max-concurrency",
            "2",
            "--max-body-bytes",
            "1000",
        ],
        &[("SERVER_ID", "1")],
    );
    runtime().block_on(async {
        let mut sender = h2c(server.addr).await;
        // Headers over the limit: the handler's JSON 431.
        let big = "a".repeat(5000);
        let (status, body) =
            h2_request(&mut sender, "GET", "/ok", &[("x-big", big)], Bytes::new()).await;
        assert_eq!(
            (status, body.as_str()),
            (431, r#"{"detail":"Request Header Fields Too Large"}"#)
        );
        // A declared body over the limit: 413.
        let body = Bytes::from(vec![b'x'; 5000]);
        let (status, _) = h2_request(&mut sender, "POST", "/body", &[], body).await;
        assert_eq!(status, 413);
        // --max-concurrency counts streams: two slow ones take both slots.
        let slow =
            |mut s: SendRequest<Full<Bytes>>| async move { h2_get(&mut s, "/slow?ms=3000").await };
        let first = tokio::spawn(slow(sender.clone()));
        let second = tokio::spawn(slow(sender.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let busy = h2_get(&mut sender, "/ok").await;
        assert_eq!(
            busy,
            (503, r#"{"detail":"Service Unavailable"}"#.to_string())
        );
        assert_eq!(first.await.expect("joined").0, 200);
        assert_eq!(second.await.expect("joined").0, 200);
    });
}

/// HTTP/2 frames, written by hand, for the clients that misbehave on purpose.
mod frames {
    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;
    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        bytes.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// HPACK: a header with a name from the static table (`index`) and a
    /// literal value, not indexed.
    fn literal(index: u8, value: &str) -> Vec<u8> {
        let mut bytes = vec![index, value.len() as u8];
        bytes.extend_from_slice(value.as_bytes());
        bytes
    }

    /// The header block of `GET path` (HPACK: :method GET, :scheme http,
    /// :authority, :path).
    pub fn get(path: &str) -> Vec<u8> {
        let mut block = vec![0x82, 0x86];
        block.extend(literal(0x01, "localhost"));
        block.extend(literal(0x04, path));
        block
    }

    /// A literal header with a new name: `name: value`.
    pub fn header(name: &str, value: &str) -> Vec<u8> {
        let mut bytes = vec![0x00, name.len() as u8];
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(value.len() as u8);
        bytes.extend_from_slice(value.as_bytes());
        bytes
    }
}

/// A raw HTTP/2 connection: the preface and an empty SETTINGS frame sent.
fn raw_h2(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream.write_all(frames::PREFACE).expect("preface");
    stream
        .write_all(&frames::frame(frames::SETTINGS, 0, 0, &[]))
        .expect("settings");
    stream
}

/// What the server sent on a raw connection: its frames, as (type, flags,
/// stream, payload), and whether it closed the connection.
struct Sent {
    frames: Vec<(u8, u8, u32, Vec<u8>)>,
    closed: bool,
}

impl Sent {
    fn goaway(&self) -> bool {
        self.frames.iter().any(|f| f.0 == frames::GOAWAY)
    }
}

/// Reads frames until the server closes the connection, or `limit` passes.
fn read_frames(stream: &mut TcpStream, limit: Duration) -> Sent {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut closed = false;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    let mut frames_seen = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        if rest.len() < 9 + len {
            break;
        }
        let stream_id = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        frames_seen.push((rest[3], rest[4], stream_id, rest[9..9 + len].to_vec()));
        rest = &rest[9 + len..];
    }
    Sent {
        frames: frames_seen,
        closed,
    }
}

fn a_client_past_max_streams_is_refused_the_stream() {
    let server = Server::start(
        &faulty_guest(),
        &["--max-streams", "2"],
        &[("SERVER_ID", "1")],
    );
    let mut stream = raw_h2(server.addr);
    // Three slow requests at once, one stream over the advertised limit.
    for id in [1, 3, 5] {
        let block = frames::get("/slow?ms=2000");
        stream
            .write_all(&frames::frame(
                frames::HEADERS,
                frames::END_HEADERS | frames::END_STREAM,
                id,
                &block,
            ))
            .expect("headers");
    }
    let seen = read_frames(&mut stream, Duration::from_secs(4)).frames;
    // The server's SETTINGS say 2 streams (MAX_CONCURRENT_STREAMS, id 3).
    let settings = seen
        .iter()
        .find(|f| f.0 == frames::SETTINGS && f.1 == 0)
        .expect("server settings");
    let advertised = settings
        .3
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(advertised, Some(2));
    // Stream 5 is refused (RST_STREAM, REFUSED_STREAM = 7); 1 and 3 answered.
    let refused = seen
        .iter()
        .any(|f| f.0 == frames::RST_STREAM && f.2 == 5 && f.3 == [0, 0, 0, 7]);
    assert!(refused, "stream 5 not refused: {seen:?}");
    for id in [1, 3] {
        assert!(
            seen.iter().any(|f| f.0 == frames::DATA && f.2 == id),
            "stream {id} unanswered: {seen:?}"
        );
    }
}

fn a_silent_http2_connection_is_closed() {
    let server = replica(&["--header-read-timeout", "500ms"]);
    let started = Instant::now();
    let mut stream = raw_h2(server.addr);
    let sent = read_frames(&mut stream, Duration::from_secs(10));
    // Closed, and well before the 10 s read limit: several times the timeout.
    assert!(
        sent.closed && started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(sent.goaway(), "closed without a GOAWAY");
    // Silent before even the preface: closed too.
    let mut silent = TcpStream::connect(server.addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let _ = silent.read(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Runs `flood` on one connection while another client GETs /heartbeat over
/// HTTP/1.1 every 50 ms: each answer must come within a second. Returns what
/// the flooding connection got back.
fn under_flood(server: &Server, flood: impl FnOnce(&mut TcpStream)) -> Sent {
    let done = Arc::new(AtomicBool::new(false));
    let url = server.url("/heartbeat");
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut answered = 0;
            // At least once, even if the flood is over at once.
            loop {
                let started = Instant::now();
                assert_eq!(get(&url).status, 200);
                slowest = slowest.max(started.elapsed());
                answered += 1;
                if done.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (answered, slowest)
        })
    };
    let mut stream = raw_h2(server.addr);
    flood(&mut stream);
    let outcome = read_frames(&mut stream, Duration::from_secs(5));
    done.store(true, Ordering::Relaxed);
    let (answered, slowest) = watcher.join().expect("the watcher");
    println!("  /heartbeat meanwhile: {answered} answers, the slowest in {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "/heartbeat took {slowest:?}"
    );
    outcome
}

fn rapid_reset_is_cut_off_while_heartbeat_answers() {
    let server = replica(&[]);
    let sent = under_flood(&server, |stream| {
        // Streams opened and cancelled at once (CVE-2023-44487).
        let mut burst = Vec::new();
        for id in (1..20_000u32).step_by(2) {
            burst.extend(frames::frame(
                frames::HEADERS,
                frames::END_HEADERS | frames::END_STREAM,
                id,
                &frames::get("/home"),
            ));
            burst.extend(frames::frame(frames::RST_STREAM, 0, id, &[0, 0, 0, 8]));
        }
        let _ = stream.write_all(&burst);
    });
    assert!(
        sent.goaway() && sent.closed,
        "the flooding connection was not cut off"
    );
}

fn endless_continuation_is_cut_off_while_heartbeat_answers() {
    let server = replica(&[]);
    let sent = under_flood(&server, |stream| {
        // A header block that never ends (CVE-2024-27316 and kin).
        let _ = stream.write_all(&frames::frame(
            frames::HEADERS,
            frames::END_STREAM,
            1,
            &frames::get("/home"),
        ));
        let filler = frames::header("x-filler", &"a".repeat(100));
        for _ in 0..20_000 {
            if stream
                .write_all(&frames::frame(frames::CONTINUATION, 0, 1, &filler))
                .is_err()
            {
                break;
            }
        }
    });
    // Past the header list limit the connection is closed.
    assert!(sent.closed, "the flooding connection was not cut off");
    assert_eq!(get(&server.url("/home")).body, HOME_1);
}

fn settings_and_ping_floods_do_not_starve_heartbeat() {
    let server = replica(&[]);
    for (name, kind, payload) in [
        ("SETTINGS", frames::SETTINGS, vec![0, 3, 0, 0, 0, 100]),
        ("PING", frames::PING, vec![0; 8]),
    ] {
        println!("{name} flood:");
        under_flood(&server, |stream| {
            let one = frames::frame(kind, 0, 0, &payload);
            let burst: Vec<u8> = one
                .iter()
                .copied()
                .cycle()
                .take(one.len() * 50_000)
                .collect();
            // The server may stop reading (or close) once its replies back up.
            let _ = stream.set_write_timeout(Some(Duration::from_secs(3)));
            let _ = stream.write_all(&burst);
        });
    }
    assert_eq!(get(&server.url("/home")).body, HOME_1);
}

fn http2_connections_drain_and_follow_a_hot_swap() {
    // A hot swap: the next stream on an open connection gets the new guest.
    let dir = std::env::temp_dir().join(format!("replica-h2-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("guest.wasm");
    std::fs::copy(replica_guest(), &path).expect("copy");
    let mut server = Server::start(&path, &["--workers", "1"], &[("SERVER_ID", "1")]);
    runtime().block_on(async {
        let mut sender = h2c(server.addr).await;
        assert_eq!(h2_get(&mut sender, "/home").await.1, HOME_1);
        std::fs::copy(faulty_guest(), dir.join("next.wasm")).expect("copy");
        std::fs::rename(dir.join("next.wasm"), &path).expect("rename");
        server.signal(Signal::SIGHUP);
        server.wait_for_log("generation 1", 1);
        assert_eq!(h2_get(&mut sender, "/home").await.1, "faulty-home");

        // SIGTERM with a stream in flight: it finishes, the connection is sent
        // a GOAWAY (no new stream is taken), and the host exits 0.
        let in_flight = tokio::spawn({
            let mut sender = sender.clone();
            async move { h2_get(&mut sender, "/slow?ms=2000").await }
        });
        server.wait_for_log("slow request started", 1);
        server.signal(Signal::SIGTERM);
        server.wait_for_log("draining", 1);
        assert_eq!(
            in_flight.await.expect("joined"),
            (200, "slow done".to_string())
        );
        let after = sender
            .send_request(
                hyper::Request::get("http://localhost/ok")
                    .body(Full::new(Bytes::new()))
                    .expect("a request"),
            )
            .await;
        assert!(after.is_err(), "a new stream was taken while draining");
    });
    let status = server.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{}", server.stderr());
    let _ = std::fs::remove_dir_all(&dir);
}
