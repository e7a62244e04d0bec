//! Which authority a request names, checked before any guest work (RFC 9112,
//! 3.2 and 3.2.2): more than one `Host`, an invalid one, or userinfo in it or
//! in an absolute-form target is refused with a 400. An absolute-form
//! target's (or HTTP/2's `:authority`) wins over `Host`, as wasi:http gives it
//! to the guest. A request that names none is given one, unless it is
//! HTTP/1.1, which must name one: HTTP/1.0 health checks (HAProxy's `option
//! httpchk` sends `GET /heartbeat HTTP/1.0` without a `Host`) and HTTP/2
//! requests without `:authority` are served.

use hyper::Request;
use hyper::Version;
use hyper::header::{HOST, HeaderValue};
use std::net::SocketAddr;

/// Why a request's authority was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// HTTP/1.1 without `Host` or an absolute-form target.
    Missing,
    /// More than one `Host`.
    Repeated,
    /// A `Host` (or a target's authority) that is not `host[:port]`.
    Invalid,
}

impl Refused {
    /// What the log and the metrics call it.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Refused::Missing => "no Host",
            Refused::Repeated => "more than one Host",
            Refused::Invalid => "an invalid Host",
        }
    }
}

/// What a request that names no authority is given: `--authority`, or the
/// address its connection came in on.
#[derive(Clone, Debug)]
pub(crate) enum Fallback {
    Configured(HeaderValue),
    Local,
}

/// Checks `req`'s authority, giving one to a request that may name none.
pub(crate) fn settle<B>(
    req: &mut Request<B>,
    fallback: &Fallback,
    local: SocketAddr,
) -> Result<(), Refused> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refused::Repeated);
    }
    if host.is_some_and(|host| !is_host(host.as_bytes())) {
        return Err(Refused::Invalid);
    }
    match req.uri().authority() {
        // hyper has parsed it; only userinfo is left to refuse (RFC 9110,
        // 4.2.4: an `http` URI's authority has none).
        Some(authority) if authority.as_str().contains('@') => Err(Refused::Invalid),
        Some(_) => Ok(()),
        None if host.is_some() => Ok(()),
        None if req.version() == Version::HTTP_11 => Err(Refused::Missing),
        None => {
            let given = match fallback {
                Fallback::Configured(value) => value.clone(),
                Fallback::Local => local_authority(local),
            };
            req.headers_mut().insert(HOST, given);
            Ok(())
        }
    }
}

fn local_authority(local: SocketAddr) -> HeaderValue {
    // An address's text is always a valid header value.
    HeaderValue::from_str(&local.to_string()).unwrap_or(HeaderValue::from_static("localhost"))
}

/// Whether `value` is a `Host` field value: `uri-host [ ":" port ]` (RFC
/// 9110, 7.2), where the host is a reg-name, an IPv4 address or a bracketed
/// IP literal. An empty value is allowed (a target without an authority).
pub(crate) fn is_host(value: &[u8]) -> bool {
    let (host, port) = match value.first() {
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(end) => {
                let literal = &value[1..end];
                if literal.is_empty() || !literal.iter().all(|&b| is_literal_byte(b)) {
                    return false;
                }
                (&value[..=end], &value[end + 1..])
            }
            None => return false,
        },
        _ => match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &value[value.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    port_ok && (host.first() == Some(&b'[') || host.iter().all(|&b| is_reg_name_byte(b)))
}

/// unreserved, sub-delims and `%` (pct-encoded): RFC 3986, 3.2.2. A table:
/// every request's Host goes through it, a byte at a time.
fn is_reg_name_byte(b: u8) -> bool {
    REG_NAME[usize::from(b)]
}

const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    table
};

/// What an IPv6 address or IPvFuture literal holds between its brackets.
fn is_literal_byte(b: u8) -> bool {
    b == b':' || is_reg_name_byte(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(raw: &[(&str, &[u8])], uri: &str, version: Version) -> Result<String, Refused> {
        let mut builder = Request::builder().uri(uri).version(version);
        for (name, value) in raw {
            builder = builder.header(*name, HeaderValue::from_bytes(value).expect("a value"));
        }
        let mut req = builder.body(()).expect("a request");
        let local: SocketAddr = "10.0.0.5:5000".parse().expect("an address");
        settle(&mut req, &Fallback::Local, local)?;
        Ok(req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .or_else(|| {
                req.headers()
                    .get(HOST)
                    .map(|h| h.to_str().unwrap_or("?").into())
            })
            .unwrap_or_default())
    }

    #[test]
    fn host_values_are_a_host_and_an_optional_port() {
        for good in [
            &b"example.com"[..],
            b"example.com:8080",
            b"127.0.0.1:5000",
            b"[::1]:5000",
            b"[::1]",
            b"lb",
            b"",
            b"xn--caf-dma.example",
        ] {
            assert!(is_host(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b"a b"[..],
            b"u@a.example",
            b"a.example/x",
            b"a:b",
            b"a:123456",
            b"[::1",
            b"[]:80",
            b"a:80:81",
            b"[::1]x",
            b"caf\xc3\xa9",
            b"a\tb",
        ] {
            assert!(!is_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn one_valid_host_is_kept_and_more_or_invalid_are_refused() {
        assert_eq!(
            settled(&[("host", b"a.example")], "/", Version::HTTP_11).as_deref(),
            Ok("a.example")
        );
        let two = [("host", &b"a.example"[..]), ("host", b"b.example")];
        assert_eq!(settled(&two, "/", Version::HTTP_11), Err(Refused::Repeated));
        assert_eq!(
            settled(&[("host", b"u@a.example")], "/", Version::HTTP_11),
            Err(Refused::Invalid)
        );
    }

    #[test]
    fn an_absolute_target_wins_but_its_userinfo_is_refused() {
        assert_eq!(
            settled(
                &[("host", b"b.example")],
                "http://a.example/x",
                Version::HTTP_11
            )
            .as_deref(),
            Ok("a.example")
        );
        assert_eq!(
            settled(&[], "http://u@a.example/x", Version::HTTP_11),
            Err(Refused::Invalid)
        );
    }

    #[test]
    fn only_http_1_1_must_name_an_authority() {
        assert_eq!(settled(&[], "/", Version::HTTP_11), Err(Refused::Missing));
        for version in [Version::HTTP_10, Version::HTTP_2] {
            assert_eq!(
                settled(&[], "/heartbeat", version).as_deref(),
                Ok("10.0.0.5:5000")
            );
        }
    }
}
