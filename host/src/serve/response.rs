//! A guest's response as HTTP lets it go out: a final status, and no body
//! where there may be none.
//!
//! - A 1xx (101 included) is not a final answer, and no client asked for an
//!   upgrade this host would carry out: the client gets a 502 instead
//!   (HAProxy turns a stray 101 into a 502 of its own).
//! - The answer to HEAD, and a 204, 205 or 304, carries no body (RFC 9110,
//!   9.3.2 and 15): the head goes out as the guest gave it (a HEAD keeps the
//!   content-length its GET would have; a 205 says `content-length: 0`), and
//!   what the guest writes is read on and dropped, so that a guest that
//!   writes its body for HEAD too finishes as for GET instead of blocking on
//!   a body nobody reads, and is never a 5xx.

use crate::guest::results::reply::ReplyBody;
use crate::telemetry::span::{self, InRequest};
use http_body_util::{BodyExt as _, Full};
use hyper::header::{CONTENT_LENGTH, HeaderValue};
use hyper::{Response, StatusCode};

/// The guest's status, if it is not one to send: a 1xx.
pub(crate) fn not_final(response: &Response<ReplyBody>) -> Option<StatusCode> {
    let status = response.status();
    status.is_informational().then_some(status)
}

/// Whether the answer to this request may carry no body: a HEAD's, or a
/// 204, 205 or 304.
pub(crate) fn is_bodiless(response: &Response<ReplyBody>, head: bool) -> bool {
    head || matches!(
        response.status(),
        StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
    )
}

/// `response` without its body (read on and dropped); a 205 says
/// `content-length: 0`.
pub(crate) fn emptied(response: Response<ReplyBody>) -> Response<ReplyBody> {
    let (mut parts, body) = response.into_parts();
    if parts.status == StatusCode::RESET_CONTENT {
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    read_on(body);
    Response::from_parts(parts, ReplyBody::Own(Full::default()))
}

/// Reads `body` to its end and drops it, in the request's span: its guest
/// may still be writing it.
fn read_on(body: ReplyBody) {
    // A guest that has finished has nothing left to write.
    if let ReplyBody::Guest(_) | ReplyBody::Own(_) = body {
        return;
    }
    tokio::spawn(InRequest::new(span::current(), async move {
        let mut body = body;
        while let Some(Ok(_)) = body.frame().await {}
    }));
}
