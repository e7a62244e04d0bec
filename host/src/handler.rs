//! One request: a guest instance from a fresh store, its response or a JSON
//! error, and nothing a guest does escaping this request.

use crate::runtime::{self, Limits};
use crate::state::Host;
use anyhow::{Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Everything a request needs, built once before the accept loop.
pub(crate) struct Handler {
    pre: ProxyPre<Host>,
    env: Vec<(String, String)>,
    limits: Limits,
    request_timeout: Duration,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// How a request failed, for its status and its log line.
enum Failure {
    Busy,
    Timeout,
    Internal(anyhow::Error),
}

impl Handler {
    pub(crate) fn new(
        pre: ProxyPre<Host>,
        env: Vec<(String, String)>,
        limits: Limits,
        request_timeout: Duration,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_instances as usize));
        Self {
            pre,
            env,
            limits,
            request_timeout,
            slots,
            next_id: AtomicU64::new(0),
        }
    }

    /// Serves one request; every failure becomes a JSON error response.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, std::convert::Infallible> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let start = Instant::now();
        let response = match self.clone().call_guest(id, req).await {
            Ok(response) => response,
            Err(Failure::Busy) => {
                let mut response =
                    json_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Err(Failure::Timeout) => {
                tracing::warn!(id, %method, path, "guest timed out after {:?}", self.request_timeout);
                json_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
            }
            Err(Failure::Internal(e)) => {
                tracing::error!(id, %method, path, "request failed: {e:?}");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        };
        tracing::debug!(id, %method, path, status = response.status().as_u16(), latency = ?start.elapsed(), "served");
        Ok(response)
    }

    async fn call_guest(
        self: Arc<Self>,
        id: u64,
        req: Request<Incoming>,
    ) -> Result<Response<HyperOutgoingBody>, Failure> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Failure::Busy)?;
        let mut store = runtime::new_store(self.pre.engine(), &self.env, self.limits);
        let (sender, receiver) = oneshot::channel();
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http
                .new_incoming_request(Scheme::Http, req)
                .map_err(internal)?;
            let out = http.new_response_outparam(sender).map_err(internal)?;
            (req, out)
        };

        // The guest runs in its own task: it may go on writing the body after it
        // has handed over the response head.
        let pre = self.pre.clone();
        let timeout = self.request_timeout;
        let guest = tokio::spawn(async move {
            let _permit = permit;
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Failure::Internal(anyhow!(e))),
                Err(_elapsed) => Err(Failure::Timeout),
            }
        });

        match receiver.await {
            Ok(Ok(response)) => {
                // The head is sent; a later failure can only cut the body short,
                // so log it here where the guest task ends.
                tokio::spawn(async move {
                    match guest.await {
                        Ok(Ok(())) => {}
                        Ok(Err(Failure::Timeout)) => {
                            tracing::warn!(id, "guest timed out while writing the body")
                        }
                        Ok(Err(Failure::Internal(e))) => {
                            tracing::error!(id, "guest failed after responding: {e:?}")
                        }
                        Ok(Err(Failure::Busy)) => {}
                        Err(e) => tracing::error!(id, "guest task failed: {e}"),
                    }
                });
                Ok(response)
            }
            Ok(Err(code)) => Err(Failure::Internal(anyhow!(
                "guest answered with an error: {code:?}"
            ))),
            // The outparam was dropped unset: the task tells why.
            Err(_) => match guest.await {
                Ok(Ok(())) => Err(Failure::Internal(anyhow!(
                    "guest returned without setting a response"
                ))),
                Ok(Err(failure)) => Err(failure),
                Err(e) => Err(Failure::Internal(anyhow!(e).context("guest task failed"))),
            },
        }
    }
}

fn internal(e: wasmtime::Error) -> Failure {
    Failure::Internal(anyhow!(e))
}

/// A JSON error in the shape FastAPI uses: `{"detail": "..."}`.
pub(crate) fn json_error(status: StatusCode, detail: &str) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "detail": detail }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
