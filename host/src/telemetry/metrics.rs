//! Prometheus metrics: one [`Metrics`] object that every part of the host
//! counts with, whose methods do nothing when metrics are off. Served on a
//! listener of its own (`--metrics-addr`), so that they never share the
//! replica's port with load-balanced traffic.

use crate::telemetry::routes::Routes;
use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    outcome: &'static str,
}

/// Latency buckets from 100 µs to 10 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
    .into_iter()
}

/// The host's metrics, or nothing when they are off. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Metrics(Option<Arc<Registered>>);

struct Registered {
    registry: Registry,
    routes: Routes,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histogram,
    instantiations: Counter,
    instantiation_duration: Histogram,
    instances_in_use: Gauge,
    traps: Counter,
    timeouts: Counter,
    rejections: Family<ReasonLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    keyvalue: Family<StoreLabels, Counter>,
    spans_dropped: Counter,
}

impl Metrics {
    /// Metrics that count, labelling requests with `routes` (see [`Routes`]).
    pub(crate) fn on(routes: Vec<String>) -> Self {
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
            "Requests the host answered itself instead of the guest: busy, headers, body, host, status (a guest's 1xx), slow (a body under --min-body-rate)",
            rejections.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register("reloads", "Component reloads, by outcome", reloads.clone());
        let keyvalue = Family::<StoreLabels, Counter>::default();
        registry.register(
            "keyvalue_operations",
            "Key-value calls (wasi:keyvalue, Spin) that reached the store, by operation and outcome (ok, error)",
            keyvalue.clone(),
        );
        let spans_dropped = Counter::default();
        registry.register(
            "spans_dropped",
            "Trace spans not exported: over the export queue's bound, or in a batch the collector did not take",
            spans_dropped.clone(),
        );
        Self(Some(Arc::new(Registered {
            registry,
            routes: Routes::new(routes),
            requests,
            request_duration,
            instantiations,
            instantiation_duration,
            instances_in_use,
            traps,
            timeouts,
            rejections,
            reloads,
            keyvalue,
            spans_dropped,
        })))
    }

    /// Metrics that count nothing.
    pub(crate) fn off() -> Self {
        Self(None)
    }

    pub(crate) fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// A request answered with `status` after `latency`.
    pub(crate) fn request(&self, path: &str, status: u16, latency: Duration) {
        if let Some(m) = &self.0 {
            let route = m.routes.label(path);
            m.requests
                .get_or_create(&RequestLabels { route, status })
                .inc();
            m.request_duration.observe(latency.as_secs_f64());
        }
    }

    /// A request refused before the guest, for `reason`.
    pub(crate) fn rejected(&self, reason: &'static str) {
        if let Some(m) = &self.0 {
            m.rejections.get_or_create(&ReasonLabels { reason }).inc();
        }
    }

    pub(crate) fn trapped(&self) {
        if let Some(m) = &self.0 {
            m.traps.inc();
        }
    }

    pub(crate) fn timed_out(&self) {
        if let Some(m) = &self.0 {
            m.timeouts.inc();
        }
    }

    /// A guest instance created in `took`.
    pub(crate) fn instantiated(&self, took: Duration) {
        if let Some(m) = &self.0 {
            m.instantiations.inc();
            m.instantiation_duration.observe(took.as_secs_f64());
        }
    }

    /// Counts an instance as in use until the guard is dropped.
    pub(crate) fn in_use(&self) -> InUse {
        if let Some(m) = &self.0 {
            m.instances_in_use.inc();
        }
        InUse(self.clone())
    }

    /// A reload, `ok` or `rejected`.
    pub(crate) fn reloaded(&self, outcome: &'static str) {
        if let Some(m) = &self.0 {
            m.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
        }
    }

    /// A wasi:keyvalue `operation` that reached the store, and whether it
    /// succeeded.
    pub(crate) fn keyvalue(&self, operation: &'static str, ok: bool) {
        if let Some(m) = &self.0 {
            let outcome = if ok { "ok" } else { "error" };
            m.keyvalue
                .get_or_create(&StoreLabels { operation, outcome })
                .inc();
        }
    }

    /// A trace span that was not exported.
    pub(crate) fn span_dropped(&self) {
        if let Some(m) = &self.0 {
            m.spans_dropped.inc();
        }
    }

    /// `GET /metrics`: the OpenMetrics text; any other path is a 404.
    pub(crate) fn scrape(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, body) = match (path, self.encode()) {
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

    fn encode(&self) -> Result<String> {
        let mut text = String::new();
        if let Some(m) = &self.0 {
            prometheus_client::encoding::text::encode(&mut text, &m.registry)
                .context("encoding metrics")?;
        }
        Ok(text)
    }
}

/// An instance in use, counted until dropped.
pub(crate) struct InUse(Metrics);

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(m) = &(self.0).0 {
            m.instances_in_use.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_that_are_off_count_nothing_and_encode_empty() {
        let off = Metrics::off();
        off.request("/home", 200, Duration::from_millis(1));
        drop(off.in_use());
        assert!(!off.is_on());
        assert_eq!(off.encode().expect("encodes"), "");
    }

    #[test]
    fn metrics_that_are_on_count_by_route_and_status() {
        let on = Metrics::on(vec!["/home".into()]);
        on.request("/home", 200, Duration::from_millis(1));
        on.request("/nope", 404, Duration::from_millis(1));
        let in_use = on.in_use();
        let text = on.encode().expect("encodes");
        assert!(
            text.contains(r#"replica_requests_total{route="/home",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"replica_requests_total{route="other",status="404"} 1"#),
            "{text}"
        );
        assert!(text.contains("replica_instances_in_use 1"), "{text}");
        drop(in_use);
        assert!(
            on.encode()
                .expect("encodes")
                .contains("replica_instances_in_use 0")
        );
    }
}
