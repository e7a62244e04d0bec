//! Prometheus metrics, served on their own opt-in listener (`--metrics-addr`)
//! so that they never share the replica's port with load-balanced traffic.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub(crate) route: &'static str,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub(crate) outcome: &'static str,
}

/// Latency buckets from 100 µs to 10 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
    .into_iter()
}

pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) request_duration: Histogram,
    pub(crate) instantiations: Counter,
    pub(crate) instantiation_duration: Histogram,
    pub(crate) instances_in_use: Gauge,
    pub(crate) traps: Counter,
    pub(crate) timeouts: Counter,
    pub(crate) rejections: Family<ReasonLabels, Counter>,
    pub(crate) reloads: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("replica");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status",
            requests.clone(),
        );
        let request_duration = Histogram::new(latency_buckets());
        registry.register(
            "request_duration_seconds",
            "Time to the response head",
            request_duration.clone(),
        );
        let instantiations = Counter::default();
        registry.register(
            "instantiations",
            "Guest instances created",
            instantiations.clone(),
        );
        let instantiation_duration = Histogram::new(latency_buckets());
        registry.register(
            "instantiation_duration_seconds",
            "Time to create a guest instance",
            instantiation_duration.clone(),
        );
        let instances_in_use = Gauge::default();
        registry.register(
            "instances_in_use",
            "Requests being served by a guest instance now",
            instances_in_use.clone(),
        );
        let traps = Counter::default();
        registry.register(
            "traps",
            "Requests whose guest trapped (panic, memory, ...)",
            traps.clone(),
        );
        let timeouts = Counter::default();
        registry.register(
            "timeouts",
            "Requests cut off by --request-timeout",
            timeouts.clone(),
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rejections",
            "Requests refused before the guest: busy, headers, body",
            rejections.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register("reloads", "Component reloads, by outcome", reloads.clone());
        Self {
            registry,
            requests,
            request_duration,
            instantiations,
            instantiation_duration,
            instances_in_use,
            traps,
            timeouts,
            rejections,
            reloads,
        }
    }

    /// The bounded label for a path: the routes the replica serves, or "other".
    pub(crate) fn route(path: &str) -> &'static str {
        match path {
            "/home" => "/home",
            "/heartbeat" => "/heartbeat",
            "/openapi.json" => "/openapi.json",
            "/docs" => "/docs",
            _ => "other",
        }
    }

    pub(crate) fn observe_request(&self, path: &str, status: u16, latency: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: Self::route(path),
                status,
            })
            .inc();
        self.request_duration.observe(latency.as_secs_f64());
    }

    fn encode(&self) -> Result<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .context("encoding metrics")?;
        Ok(text)
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub(crate) async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot serve metrics on {addr}: pass --metrics-addr with a free address")
    })?;
    let bound = listener
        .local_addr()
        .context("cannot read the metrics address")?;
    crate::server::announce(&format!("metrics on http://{bound}/metrics"));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(scrape(&metrics, req.uri().path())) }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(())
}

fn scrape(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match (path, metrics.encode()) {
        ("/metrics", Ok(text)) => (StatusCode::OK, text),
        ("/metrics", Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
        _ => (
            StatusCode::NOT_FOUND,
            "metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
