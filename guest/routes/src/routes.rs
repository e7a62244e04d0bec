//! The replica's routes as plain functions, free of WASI, so that they are
//! unit-tested natively and the component glue in `lib.rs` stays thin.

use crate::openapi;
use serde_json::json;

/// The request methods the routes tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// What to answer: the glue turns it into a `wasi:http` response. Headers are
/// in the form `wasi:http` takes, `content-length` included, so that sending
/// a prepared reply costs no work.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// The methods every route accepts, as sent in `allow` with a 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD";

/// Every reply this server can give, prepared once: they depend only on the
/// SERVER_ID, which is fixed for the life of an instance.
#[derive(Debug)]
pub struct Routes {
    home: Reply,
    heartbeat: Reply,
    openapi: Reply,
    docs: Reply,
    not_found: Reply,
    method_not_allowed: Reply,
}

impl Routes {
    pub fn new(server_id: Option<&str>) -> Self {
        Self {
            home: home(server_id),
            heartbeat: heartbeat(),
            openapi: json_reply(200, &openapi::document()),
            docs: reply(
                200,
                vec![("content-type".into(), b"text/html; charset=utf-8".to_vec())],
                openapi::DOCS_HTML.as_bytes().to_vec(),
            ),
            not_found: not_found(),
            method_not_allowed: method_not_allowed(),
        }
    }

    /// Routes a request. A query string never changes the route, and
    /// neither do repeated slashes or one trailing slash (`//heartbeat`,
    /// `/home/`): Flask and nginx merge slashes, and a course's load
    /// balancer written against Flask polls `//heartbeat`.
    ///
    /// HEAD gets the same reply as GET; the glue leaves the body out.
    pub fn route(&self, method: Method, path_with_query: &str) -> &Reply {
        let path = path_with_query
            .split_once('?')
            .map_or(path_with_query, |(path, _query)| path);
        match self.exact(method, path) {
            Some(reply) => reply,
            // Only a path that matched nothing is looked at again.
            None => meant(path)
                .and_then(|path| self.exact(method, &path))
                .unwrap_or(&self.not_found),
        }
    }

    /// The reply to exactly `path`, if it is a route.
    fn exact(&self, method: Method, path: &str) -> Option<&Reply> {
        Some(match (method, path) {
            (Method::Get | Method::Head, "/home") => &self.home,
            (Method::Get | Method::Head, "/heartbeat") => &self.heartbeat,
            (Method::Get | Method::Head, "/openapi.json") => &self.openapi,
            (Method::Get | Method::Head, "/docs") => &self.docs,
            (Method::Other, "/home" | "/heartbeat" | "/openapi.json" | "/docs") => {
                &self.method_not_allowed
            }
            _ => return None,
        })
    }
}

/// The path a user meant by `path`, if it is another: repeated slashes made
/// one, one trailing slash dropped.
fn meant(path: &str) -> Option<String> {
    let mut meant = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && meant.ends_with('/')) {
            meant.push(c);
        }
    }
    if meant.len() > 1 && meant.ends_with('/') {
        meant.pop();
    }
    (meant != path).then_some(meant)
}

/// `/home`: who answered. The id is serialised by serde_json, so any id (quotes,
/// backslashes, unicode) makes valid JSON.
pub fn home(server_id: Option<&str>) -> Reply {
    match server_id {
        Some(id) => json_reply(
            200,
            &json!({
                "message": format!("Hello from Server: {id}"),
                "status": "successful",
            }),
        ),
        None => error(500, "SERVER_ID is not set"),
    }
}

/// `/heartbeat`: 200 with an empty body, as cheap as a response can be.
pub fn heartbeat() -> Reply {
    reply(200, Vec::new(), Vec::new())
}

/// 404 with the body FastAPI sends for an unknown path.
pub fn not_found() -> Reply {
    error(404, "Not Found")
}

/// 405 with the body FastAPI sends, plus the `allow` header RFC 9110 asks for.
pub fn method_not_allowed() -> Reply {
    let mut reply = error(405, "Method Not Allowed");
    reply.headers.push(("allow".into(), ALLOWED_METHODS.into()));
    reply
}

fn error(status: u16, detail: &str) -> Reply {
    json_reply(status, &json!({ "detail": detail }))
}

fn json_reply(status: u16, value: &serde_json::Value) -> Reply {
    let headers = vec![("content-type".into(), b"application/json".to_vec())];
    reply(status, headers, value.to_string().into_bytes())
}

fn reply(status: u16, mut headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) -> Reply {
    headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    Reply {
        status,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(reply: &Reply) -> &str {
        std::str::from_utf8(&reply.body).expect("bodies are UTF-8")
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| std::str::from_utf8(v).expect("ASCII header"))
    }

    fn route(method: Method, path: &str, server_id: Option<&str>) -> Reply {
        let routes = Routes::new(server_id);
        let reply = routes.route(method, path);
        Reply {
            status: reply.status,
            headers: reply.headers.clone(),
            body: reply.body.clone(),
        }
    }

    #[test]
    fn home_greets_with_the_server_id() {
        let reply = route(Method::Get, "/home", Some("1"));
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        assert_eq!(
            body(&reply),
            r#"{"message":"Hello from Server: 1","status":"successful"}"#
        );
        assert_eq!(header(&reply, "content-length"), Some("56"));
    }

    #[test]
    fn repeated_slashes_and_one_trailing_slash_reach_the_route_meant() {
        for path in [
            "//heartbeat",
            "/heartbeat/",
            "///heartbeat//",
            "//heartbeat?x=1",
        ] {
            assert_eq!(route(Method::Get, path, Some("1")).status, 200, "{path}");
        }
        assert_eq!(
            route(Method::Get, "/home/", Some("1")).body,
            route(Method::Get, "/home", Some("1")).body
        );
        assert_eq!(route(Method::Other, "//home", Some("1")).status, 405);
        for path in ["/hom", "/home/x", "/", "//", "/heartbeatx"] {
            assert_eq!(route(Method::Get, path, Some("1")).status, 404, "{path}");
        }
        assert_eq!(meant("/home"), None);
        assert_eq!(meant("//a//b/").as_deref(), Some("/a/b"));
        assert_eq!(meant("/").as_deref(), None);
    }

    #[test]
    fn home_escapes_json_special_ids() {
        let id = "a\"b\\c\nd é 🦀";
        let reply = route(Method::Get, "/home", Some(id));
        let parsed: serde_json::Value = serde_json::from_slice(&reply.body).expect("valid JSON");
        assert_eq!(parsed["message"], format!("Hello from Server: {id}"));
        assert_eq!(parsed["status"], "successful");
    }

    #[test]
    fn home_without_server_id_is_a_500() {
        let reply = route(Method::Get, "/home", None);
        assert_eq!(reply.status, 500);
        assert_eq!(body(&reply), r#"{"detail":"SERVER_ID is not set"}"#);
    }

    #[test]
    fn heartbeat_is_empty_and_ignores_server_id() {
        for id in [Some("7"), None] {
            let reply = route(Method::Get, "/heartbeat", id);
            assert_eq!(reply.status, 200);
            assert!(reply.body.is_empty());
            assert_eq!(reply.headers, [("content-length".into(), b"0".to_vec())]);
        }
    }

    #[test]
    fn head_routes_like_get() {
        assert_eq!(
            route(Method::Head, "/home", Some("3")),
            route(Method::Get, "/home", Some("3"))
        );
        assert_eq!(
            route(Method::Head, "/heartbeat", None),
            route(Method::Get, "/heartbeat", None)
        );
    }

    #[test]
    fn query_string_does_not_change_the_route() {
        assert_eq!(
            route(Method::Get, "/home?x=1&y", Some("2")),
            route(Method::Get, "/home", Some("2"))
        );
        assert_eq!(route(Method::Get, "/heartbeat?", None).status, 200);
    }

    #[test]
    fn the_server_describes_itself() {
        let spec = route(Method::Get, "/openapi.json", Some("1"));
        assert_eq!(spec.status, 200);
        assert_eq!(header(&spec, "content-type"), Some("application/json"));
        let doc: serde_json::Value = serde_json::from_slice(&spec.body).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let docs = route(Method::Get, "/docs", Some("1"));
        assert_eq!(
            header(&docs, "content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(body(&docs).starts_with("<!doctype html>"));
        assert_eq!(route(Method::Other, "/docs", None).status, 405);
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in ["/", "/homes", "/home/x", "/HOME", "", "/x?home"] {
            let reply = route(Method::Get, path, Some("1"));
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(body(&reply), r#"{"detail":"Not Found"}"#);
        }
        assert_eq!(route(Method::Other, "/nope", Some("1")).status, 404);
    }

    #[test]
    fn other_methods_on_known_paths_are_405_with_allow() {
        for path in ["/home", "/heartbeat?x"] {
            let reply = route(Method::Other, path, Some("1"));
            assert_eq!(reply.status, 405);
            assert_eq!(body(&reply), r#"{"detail":"Method Not Allowed"}"#);
            assert_eq!(header(&reply, "allow"), Some("GET, HEAD"));
            assert_eq!(header(&reply, "content-type"), Some("application/json"));
        }
    }
}
