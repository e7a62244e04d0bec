//! The replica's routes, over real HTTP, through the real host binary.

mod common;

use common::{Server, client, get, replica_guest, replica_guest_p3, request};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn replica(id: &str) -> Server {
    Server::start(&replica_guest(), &[], &[("SERVER_ID", id)])
}

const HOME_1: &str = r#"{"message":"Hello from Server: 1","status":"successful"}"#;

#[test]
fn home_answers_with_the_server_id() {
    let server = replica("1");
    let reply = get(&server.url("/home"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, HOME_1);
    assert_eq!(reply.header("content-length"), Some("56"));
}

#[test]
fn a_query_string_does_not_change_the_route() {
    let server = replica("1");
    assert_eq!(get(&server.url("/home?x=1&y=2")).body, HOME_1);
    let heartbeat = get(&server.url("/heartbeat?probe=lb"));
    assert_eq!((heartbeat.status, heartbeat.body.as_str()), (200, ""));
}

#[test]
fn heartbeat_is_200_with_an_empty_body() {
    let server = replica("1");
    let reply = get(&server.url("/heartbeat"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "");
    assert_eq!(reply.header("content-length"), Some("0"));
}

#[test]
fn head_answers_like_get_without_a_body() {
    let server = replica("1");
    let agent = client();
    let home = request(&agent, "HEAD", &server.url("/home")).expect("HEAD /home");
    assert_eq!(home.status, 200);
    assert_eq!(home.header("content-type"), Some("application/json"));
    assert_eq!(home.header("content-length"), Some("56"));
    let heartbeat = request(&agent, "HEAD", &server.url("/heartbeat")).expect("HEAD /heartbeat");
    assert_eq!(heartbeat.status, 200);
    assert_eq!(heartbeat.header("content-length"), Some("0"));

    // On the wire: no body bytes follow the HEAD response, and the connection
    // is still usable for the next request.
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .write_all(b"HEAD /home HTTP/1.1\r\nHost: t\r\n\r\nGET /heartbeat HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let responses: Vec<&str> = raw.split("HTTP/1.1 ").filter(|s| !s.is_empty()).collect();
    assert_eq!(responses.len(), 2, "{raw}");
    assert!(responses[0].starts_with("200 OK"), "{raw}");
    assert!(
        responses[0].ends_with("\r\n\r\n"),
        "HEAD sent a body: {raw}"
    );
    assert!(responses[1].starts_with("200 OK"), "{raw}");
}

#[test]
fn unknown_paths_are_404_in_json() {
    let server = replica("1");
    for path in ["/", "/nope", "/home/extra", "/Home"] {
        let reply = get(&server.url(path));
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.body, r#"{"detail":"Not Found"}"#);
    }
}

#[test]
fn other_methods_are_405_with_allow() {
    let server = replica("1");
    let agent = client();
    for (method, path) in [
        ("POST", "/home"),
        ("PUT", "/heartbeat"),
        ("DELETE", "/home"),
        ("PATCH", "/heartbeat"),
    ] {
        let reply = request(&agent, method, &server.url(path)).expect("request");
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.body, r#"{"detail":"Method Not Allowed"}"#);
    }
}

#[test]
fn json_special_server_ids_make_valid_json() {
    let id = r#"a "quoted" \ back\slash, é, 🦀, </script>"#;
    let server = replica(id);
    let reply = get(&server.url("/home"));
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["message"], format!("Hello from Server: {id}"));
    assert_eq!(json["status"], "successful");
}

#[test]
fn server_id_flag_is_used_without_the_variable() {
    let server = Server::start(&replica_guest(), &["--server-id", "flag-7"], &[]);
    assert_eq!(
        get(&server.url("/home")).json()["message"],
        "Hello from Server: flag-7"
    );
}

#[test]
fn one_connection_serves_many_requests() {
    let server = replica("1");
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for _ in 0..20 {
        stream
            .write_all(b"GET /heartbeat HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("content-length: 0"), "{head}");
    }
}

/// A guest that answers without reading the request's body (the replica's
/// 405), before the client has sent it: the host reads the rest, so the
/// keep-alive connection serves the next request (hyper alone would close
/// it after a response that did not say so, and a client's next request on
/// it would fail).
#[test]
fn a_body_the_guest_did_not_read_leaves_the_connection_open() {
    for guest in [replica_guest(), replica_guest_p3()] {
        let server = Server::start(&guest, &[], &[("SERVER_ID", "1")]);
        for (framing, rest) in [
            ("transfer-encoding: chunked", "5\r\nhello\r\n0\r\n\r\n"),
            ("content-length: 5", "hello"),
        ] {
            let mut stream = TcpStream::connect(server.addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let head = format!("POST /home HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n");
            stream.write_all(head.as_bytes()).expect("write");
            let refused = one_response(&mut stream);
            assert!(refused.starts_with("HTTP/1.1 405"), "{refused}");
            assert!(!refused.contains("connection: close"), "{refused}");
            let next = format!("{rest}GET /home HTTP/1.1\r\nHost: t\r\n\r\n");
            stream.write_all(next.as_bytes()).expect("write");
            let home = one_response(&mut stream);
            assert!(
                home.starts_with("HTTP/1.1 200") && home.ends_with(HOME_1),
                "{framing}, {}: {home:?}",
                guest.display()
            );
        }
    }
}

/// Reads one response with a content-length from `stream`; what was read
/// when the connection closes or goes quiet otherwise.
fn one_response(stream: &mut TcpStream) -> String {
    let mut read = Vec::new();
    let mut byte = [0u8; 1];
    while !read.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => read.push(byte[0]),
            _ => return String::from_utf8_lossy(&read).into_owned(),
        }
    }
    let head = String::from_utf8_lossy(&read).to_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .expect("a content-length");
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).is_err() {
        return format!("{head}(body cut short)");
    }
    read.extend(body);
    String::from_utf8_lossy(&read).into_owned()
}
