//! What a guest's request comes to: a response, or why there is none.

use crate::guest::results::reply::ReplyBody;
use bytes::Bytes;
use hyper::Response;
use wasmtime_wasi_http::Error as HttpError;

/// A request body as a guest reads it.
pub(crate) trait RequestBody:
    hyper::body::Body<Data = Bytes, Error = HttpError> + Send + 'static
{
}
impl<B: hyper::body::Body<Data = Bytes, Error = HttpError> + Send + 'static> RequestBody for B {}

/// The guest's response (its body may still be coming), or why there is none.
pub(crate) type Answer = Result<Response<ReplyBody>, Failure>;

/// Why a request got no response from the guest; already logged.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Still running after the request timeout: cut off.
    Timeout,
    /// Trapped, ran out of memory, answered with an error, set no response,
    /// or its instance failed.
    Internal,
}
