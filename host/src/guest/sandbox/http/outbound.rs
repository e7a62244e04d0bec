//! Outgoing HTTP from the guest: refused with `HTTP-request-denied` unless the
//! request's host is one the operator allowed with `--allow-outbound`. And
//! the headers no guest may set, as upstream forbids them.
//!
//! A request's authority is read once ([`HostPort::parse`], the parse the
//! allow-list's entries had too), and the connection goes to the host and
//! port that reading found, written back into the request: the connector
//! never reads the authority the guest wrote for itself. Userinfo
//! (`user@host`) is refused: the allow-list and a connector could read it
//! differently (`127.0.0.1:B@localhost:A`).

use crate::guest::sandbox::memory;
use crate::telemetry::traces::Child;
use http_body_util::BodyExt;
use hyper::Uri;
use hyper::header::HeaderName;
use opentelemetry::Context as TraceContext;
use opentelemetry::trace::SpanKind;
use replica_config::HostPort;
use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use wasmtime_wasi_http::{
    Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

/// The allow-list: `host` entries allow any port of that host, `host:port`
/// entries that port only. Hosts match whatever their case. And the trace
/// span the instance's outgoing requests go under, if any.
#[derive(Clone)]
pub(crate) struct Outbound {
    allowed: Arc<[HostPort]>,
    trace: Option<TraceContext>,
}

type Completion = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl Outbound {
    pub(crate) fn new(allowed: Vec<HostPort>) -> Self {
        Self {
            allowed: allowed.into(),
            trace: None,
        }
    }

    /// The span the instance's requests go under from now on, if any.
    pub(crate) fn trace_under(&mut self, trace: Option<TraceContext>) {
        self.trace = trace;
    }

    /// Where a request to `uri` may go: its host and port (without a port,
    /// the scheme's default: 443 for https, 80 otherwise), if an entry allows
    /// them; `None` if none does, or the URI has no usable authority.
    fn destination(&self, uri: &Uri) -> Option<(String, u16)> {
        let asked = HostPort::parse(uri.authority()?.as_str()).ok()?;
        let port = asked.port.unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
        self.allowed
            .iter()
            .any(|entry| entry.host == asked.host && entry.port.is_none_or(|p| p == port))
            .then_some((asked.host, port))
    }
}

/// `uri` with its authority replaced by `host:port`.
fn addressed(uri: &Uri, host: &str, port: u16) -> Option<Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(format!("{host}:{port}").parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// The headers a guest may neither read nor set: upstream's
/// `DEFAULT_FORBIDDEN_HEADERS`, compared without building that list (and an
/// `Arc` around it) at every call, as upstream's default does: those were 3
/// allocations and about 600 instructions of every request.
fn forbidden(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "http2-settings"
    )
}

static FORBIDDEN: LazyLock<ForbiddenHeaderFilter> = LazyLock::new(|| Arc::new(forbidden));

impl WasiHttpHooks for Outbound {
    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        forbidden(name)
    }

    /// Smaller than upstream's 1 MiB, so that what a body in flight holds is
    /// small enough to count each one at its most (`guest/sandbox/memory.rs`).
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        memory::BODY_CHUNK
    }

    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        FORBIDDEN.clone()
    }

    fn send_request(
        &mut self,
        mut request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _completion: Completion,
    ) -> Box<dyn Future<Output = Result<(hyper::Response<WasiBody>, Completion), HttpError>> + Send>
    {
        let span = Child::under(self.trace.as_ref(), SpanKind::Client, || {
            Cow::Owned(request.method().as_str().to_owned())
        });
        if span.is_recording() {
            span.attribute("http.request.method", request.method().as_str().to_owned());
            span.attribute("url.full", request.uri().to_string());
        }
        let destination = self.destination(request.uri());
        let Some((uri, host, port)) = destination
            .and_then(|(host, port)| Some((addressed(request.uri(), &host, port)?, host, port)))
        else {
            tracing::warn!(uri = %request.uri(), "guest's outgoing request denied: allow its host with --allow-outbound");
            span.fail("HttpRequestDenied", || {
                "not allowed by --allow-outbound".into()
            });
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        };
        *request.uri_mut() = uri;
        if span.is_recording() {
            span.attribute("server.address", host);
            span.attribute("server.port", i64::from(port));
        }
        // The next hop joins the trace, unless the guest set its own.
        span.inject(request.headers_mut());
        Box::new(async move {
            match wasmtime_wasi_http::default_send_request(request, options).await {
                Ok((response, io)) => {
                    let status = response.status();
                    if span.is_recording() {
                        span.attribute("http.response.status_code", i64::from(status.as_u16()));
                        if status.as_u16() >= 400 {
                            span.fail(status.as_str().to_owned(), || format!("answered {status}"));
                        }
                    }
                    Ok((
                        response.map(BodyExt::boxed_unsync),
                        Box::new(io) as Completion,
                    ))
                }
                Err(e) => {
                    span.fail(kind_of(&e), || e.to_string());
                    Err(e)
                }
            }
        })
    }
}

/// The kind of a failed outgoing request, as its span's `error.type`: the
/// error's name (`ConnectionRefused`, `DnsTimeout`, ...).
fn kind_of(e: &HttpError) -> String {
    let shown = format!("{e:?}");
    let end = shown
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(shown.len());
    shown[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(entries: &[&str], uri: &str) -> Option<(String, u16)> {
        let entries = entries
            .iter()
            .map(|e| HostPort::parse(e).expect("an entry"))
            .collect();
        Outbound::new(entries).destination(&uri.parse().expect("a URI"))
    }

    fn allows(entries: &[&str], uri: &str) -> bool {
        destination(entries, uri).is_some()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "http://example.com/"));
    }

    #[test]
    fn a_host_entry_allows_every_port_of_that_host() {
        assert!(allows(&["example.com"], "http://example.com/"));
        assert!(allows(&["example.com"], "https://example.com:8443/x"));
        assert!(!allows(&["example.com"], "http://example.org/"));
        assert!(!allows(&["example.com"], "http://sub.example.com/"));
    }

    #[test]
    fn a_host_port_entry_allows_that_port_only() {
        assert!(allows(&["example.com:8080"], "http://example.com:8080/"));
        assert!(!allows(&["example.com:8080"], "http://example.com:8081/"));
        assert!(!allows(&["example.com:8080"], "http://example.com/"));
    }

    #[test]
    fn a_missing_port_is_the_scheme_default() {
        assert!(allows(&["example.com:80"], "http://example.com/"));
        assert!(!allows(&["example.com:80"], "https://example.com/"));
        assert!(allows(&["example.com:443"], "https://example.com/"));
    }

    #[test]
    fn hosts_match_whatever_their_case() {
        assert!(allows(&["example.com"], "http://EXAMPLE.com/"));
        assert!(allows(&["example.com:80"], "http://Example.Com:80/"));
    }

    #[test]
    fn the_forbidden_headers_are_upstreams() {
        for name in wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS {
            assert!(forbidden(&name), "{name}");
        }
        for allowed in ["content-type", "content-length", "x-connection", "hosts"] {
            assert!(!forbidden(&HeaderName::from_static(allowed)), "{allowed}");
        }
    }

    #[test]
    fn a_uri_without_authority_is_denied() {
        assert!(!allows(&["example.com"], "/relative"));
    }

    #[test]
    fn userinfo_is_denied_and_the_destination_is_what_was_checked() {
        // The host after `@` is allowed; the whole string would be another.
        assert!(!allows(
            &["localhost:8080"],
            "http://127.0.0.1:9@localhost:8080/"
        ));
        assert!(!allows(&["localhost"], "http://user@localhost/"));
        assert_eq!(
            destination(&["example.com"], "http://Example.COM/x"),
            Some(("example.com".into(), 80))
        );
        let uri: Uri = "https://Example.COM/x?y=1".parse().expect("a URI");
        assert_eq!(
            addressed(&uri, "example.com", 443).map(|u| u.to_string()),
            Some("https://example.com:443/x?y=1".into())
        );
    }
}
