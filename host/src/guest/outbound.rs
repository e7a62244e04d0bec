//! Outgoing HTTP from the guest: refused with `HTTP-request-denied` unless the
//! request's host is one the operator allowed with `--allow-outbound`. And
//! the headers no guest may set, as upstream forbids them.

use http_body_util::BodyExt;
use hyper::header::HeaderName;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use wasmtime_wasi_http::{
    Error as HttpError, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

/// The allow-list: `host` entries allow any port of that host, `host:port`
/// entries that port only. Hosts match whatever their case.
#[derive(Clone)]
pub(crate) struct Outbound {
    allowed: Arc<[String]>,
}

type Completion = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl Outbound {
    /// `allowed` holds lower-case `host` or `host:port` entries, as
    /// `replica_config::parse_outbound_host` makes them.
    pub(crate) fn new(allowed: Vec<String>) -> Self {
        Self {
            allowed: allowed.into(),
        }
    }

    /// Whether a request to `uri` may go out. A URI without a port means the
    /// scheme's default: 443 for https, 80 otherwise.
    fn allows(&self, uri: &hyper::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let host = authority.host().to_ascii_lowercase();
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let host_port = format!("{host}:{port}");
        self.allowed
            .iter()
            .any(|entry| *entry == host || *entry == host_port)
    }
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

    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        FORBIDDEN.clone()
    }

    fn send_request(
        &mut self,
        request: hyper::Request<WasiBody>,
        options: Option<RequestOptions>,
        _completion: Completion,
    ) -> Box<dyn Future<Output = Result<(hyper::Response<WasiBody>, Completion), HttpError>> + Send>
    {
        if !self.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "guest's outgoing request denied: allow its host with --allow-outbound");
            return Box::new(std::future::ready(Err(HttpError::HttpRequestDenied)));
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Completion,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], uri: &str) -> bool {
        let outbound = Outbound::new(entries.iter().map(|e| e.to_string()).collect());
        outbound.allows(&uri.parse().expect("a URI"))
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
}
