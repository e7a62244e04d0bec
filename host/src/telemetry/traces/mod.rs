//! Traces: OpenTelemetry spans of each request, its guest's call and what
//! the guest calls, exported over OTLP when a collector is configured the
//! standard way (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `--otlp-endpoint`), and
//! nothing otherwise: no exporter, no connection, and on the request path one
//! check that finds tracing off.
//!
//! - A request's SERVER span joins the caller's trace (W3C `traceparent` and
//!   `tracestate`, HTTP/1.1 and HTTP/2), or starts one, sampled by the
//!   sampler `OTEL_TRACES_SAMPLER` names (parent-based, always on, by
//!   default); it carries the HTTP semantic conventions and the component
//!   served, and lives as long as the request (its body included).
//! - Under it: the instantiation when one happens, the guest's call, each
//!   key-value call, each outgoing request (a CLIENT span, whose
//!   `traceparent` goes out with it unless the guest set its own).
//! - The resource names the service (`OTEL_SERVICE_NAME`, `replica` by
//!   default), the replica (`service.instance.id` is `SERVER_ID`), this
//!   host's version, the component first served, and what
//!   `OTEL_RESOURCE_ATTRIBUTES` adds.
//! - Spans leave through the SDK's batch processor (`OTEL_BSP_*`), over
//!   http/protobuf (the default) or grpc (`OTEL_EXPORTER_OTLP_PROTOCOL`), on
//!   threads of their own (`export.rs`).

mod export;
mod root;

use anyhow::{Context as _, Result, bail};
use export::{Bounded, OnRuntime, Waiting};
use hyper::HeaderMap;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, ShouldSample,
};
use replica_config::{Config, DEFAULT_SERVICE_NAME};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crate::telemetry::metrics::Metrics;
use crate::telemetry::routes::Routes;

/// The tracer, once tracing is on: every call site asks for it first, and
/// finds nothing when tracing is off.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The paths a SERVER span is named after (`GET /home`, its `http.route`):
/// those listed with `--metrics-route`; any other is named by its method
/// alone, so that clients cannot grow the set of span names.
static ROUTES: OnceLock<Routes> = OnceLock::new();

/// The sampler `OTEL_TRACES_SAMPLER` names, as the SDK reads it: asked first
/// about a request that starts a trace (`root.rs`).
static SAMPLER: OnceLock<Box<dyn ShouldSample>> = OnceLock::new();

/// The header a caller's trace comes in.
const TRACEPARENT: &str = "traceparent";

/// Whether tracing is on: one load.
pub(crate) fn is_on() -> bool {
    TRACER.get().is_some()
}

/// How long the spans still queued at exit may take to leave.
const EXIT_FLUSH: Duration = Duration::from_secs(2);

/// Tracing as configured: the provider to flush at exit, if it is on.
pub(crate) struct Traces {
    provider: Option<SdkTracerProvider>,
}

impl Traces {
    /// Tracing as `config` (and the `OTEL_*` variables) asks for it: on
    /// only with an endpoint and without `OTEL_SDK_DISABLED=true`. A setting
    /// that cannot be used stops the host, saying which.
    pub(crate) fn from_config(config: &Config, metrics: Metrics, component: &str) -> Result<Self> {
        let off = Self { provider: None };
        let disabled = std::env::var("OTEL_SDK_DISABLED")
            .is_ok_and(|value| value.trim().eq_ignore_ascii_case("true"));
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .unwrap_or_else(|_| config.otlp_protocol.clone());
        let Some(endpoint) = endpoint(config, &protocol)? else {
            return Ok(off);
        };
        if disabled {
            tracing::info!("traces: off (OTEL_SDK_DISABLED=true)");
            return Ok(off);
        }
        let timeout = timeout()?;
        let waiting = Arc::new(Waiting::default());
        let batch = BatchConfigBuilder::default().build();
        let max_queue = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
            .ok()
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(2048);
        let shown = endpoint.clone();
        if !matches!(protocol.as_str(), "grpc" | "http/protobuf") {
            bail!(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL={protocol} is not one this host speaks: use \
                 http/protobuf or grpc"
            );
        }
        let over = protocol.clone();
        let exporter = OnRuntime::start(
            move || exporter(&over, endpoint, timeout),
            waiting.clone(),
            metrics.clone(),
            &shown,
        )?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = resource(config, component);
        let sampler = opentelemetry_sdk::trace::Config::default().sampler;
        let _ = SAMPLER.set(sampler.clone());
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_id_generator(root::Ids::default())
            .with_span_processor(Bounded {
                inner: processor,
                waiting,
                max: max_queue,
                metrics,
            })
            .with_resource(resource)
            .build();
        let _ = ROUTES.set(Routes::new(config.metrics_routes.clone()));
        let _ = TRACER.set(provider.tracer("replica-host"));
        tracing::info!("traces: to {shown} over {protocol}");
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// Sends what is still queued, before the host exits: for at most
    /// [`EXIT_FLUSH`], so that a collector that is down does not hold the
    /// exit past a container's stop timeout.
    pub(crate) fn shutdown(&self) {
        if let Some(provider) = &self.provider
            && let Err(e) = provider.shutdown_with_timeout(EXIT_FLUSH)
        {
            tracing::debug!("traces: at exit: {e}");
        }
    }
}

/// The OTLP exporter of `protocol` (grpc over tonic, or http/protobuf over
/// hyper, with rustls for https), sending to `endpoint`.
fn exporter(
    protocol: &str,
    endpoint: String,
    timeout: Duration,
) -> Result<opentelemetry_otlp::SpanExporter> {
    if protocol == "grpc" {
        return opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .build()
            .context("cannot set up the grpc trace exporter");
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = opentelemetry_http::hyper::HyperClient::new(https, timeout, None);
    opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .with_http_client(client)
        .build()
        .context("cannot set up the http/protobuf trace exporter")
}

/// The resource every span names: the service (`OTEL_SERVICE_NAME`, or
/// `--service-name`), the replica (`service.instance.id`, its `SERVER_ID`),
/// this host's version and the component first served, each overridden by
/// what `OTEL_RESOURCE_ATTRIBUTES` says (its `service.name` too, unless a
/// name other than the default was given).
fn resource(config: &Config, component: &str) -> Resource {
    let ours = [
        KeyValue::new("service.name", config.service_name.clone()),
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new(
            "service.instance.id",
            config.server_id.clone().unwrap_or_default(),
        ),
        KeyValue::new("replica.component.sha256", component.to_string()),
    ];
    let builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(ours)
        .with_detector(Box::new(EnvResourceDetector::new()));
    if config.service_name == DEFAULT_SERVICE_NAME {
        builder.build()
    } else {
        builder
            .with_service_name(config.service_name.clone())
            .build()
    }
}

/// Where traces go, if anywhere: the traces endpoint as given, or the
/// endpoint for every signal (with `/v1/traces` for http/protobuf).
fn endpoint(config: &Config, protocol: &str) -> Result<Option<String>> {
    let given = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
    let (given, signal) = match (
        given(&config.otlp_traces_endpoint),
        given(&config.otlp_endpoint),
    ) {
        (Some(traces), _) => (traces, false),
        (None, Some(all)) => (all, true),
        (None, None) => return Ok(None),
    };
    let uri: hyper::Uri = given.parse().with_context(|| {
        format!("the OTLP endpoint {given:?} is not a URL: write it as http://HOST:PORT")
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!(
            "the OTLP endpoint {given:?} is not an http:// or https:// URL with a host: write it \
             as http://HOST:PORT"
        );
    }
    Ok(Some(if signal && protocol != "grpc" {
        format!("{}/v1/traces", given.trim_end_matches('/'))
    } else {
        given
    }))
}

/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT`, in
/// milliseconds (10 s by default).
fn timeout() -> Result<Duration> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ] {
        if let Ok(value) = std::env::var(name) {
            let millis: u64 = value
                .trim()
                .parse()
                .with_context(|| format!("{name}={value} is not a number of milliseconds"))?;
            return Ok(Duration::from_millis(millis));
        }
    }
    Ok(Duration::from_secs(10))
}

/// Who asked, as a request's SERVER span records it.
pub(crate) struct Asker<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) version: hyper::Version,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) local: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
    /// The generation serving it (0 for the first, one more at each hot
    /// swap) and its component's SHA-256: asked only of a recorded span.
    pub(crate) serving: &'a dyn Fn() -> (u64, Arc<str>),
}

/// A request's SERVER span, in the trace its caller sent, if tracing is on:
/// none for a request that starts a trace the sampler drops.
pub(crate) fn server(asker: &Asker<'_>) -> Option<Context> {
    let tracer = TRACER.get()?;
    // A look along the few headers a request has costs less than hashing
    // the name to find it.
    let parent = if asker.headers.keys().any(|name| name == TRACEPARENT) {
        TraceContextPropagator::new().extract(&HeaderExtractor(asker.headers))
    } else {
        let sampler = SAMPLER.get()?;
        if !root::sampled(sampler.as_ref(), asker.method) {
            return None;
        }
        Context::new()
    };
    let route = ROUTES.get().and_then(|routes| routes.route(asker.path));
    let name = match route {
        Some(route) => format!("{} {route}", asker.method),
        None => asker.method.to_string(),
    };
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .start_with_context(tracer, &parent);
    root::forget();
    if span.is_recording() {
        let (generation, component) = (asker.serving)();
        let version = match asker.version {
            hyper::Version::HTTP_2 => "2",
            hyper::Version::HTTP_10 => "1.0",
            _ => "1.1",
        };
        span.set_attributes([
            KeyValue::new("http.request.method", asker.method.to_string()),
            KeyValue::new("url.path", asker.path.to_string()),
            KeyValue::new("url.scheme", if asker.tls { "https" } else { "http" }),
            KeyValue::new("network.protocol.name", "http"),
            KeyValue::new("network.protocol.version", version),
            KeyValue::new("server.address", asker.local.ip().to_string()),
            KeyValue::new("server.port", i64::from(asker.local.port())),
            KeyValue::new("client.address", asker.peer.ip().to_string()),
            KeyValue::new("client.port", i64::from(asker.peer.port())),
            KeyValue::new("replica.component.sha256", component),
            KeyValue::new("replica.component.generation", generation as i64),
        ]);
        if let Some(route) = route {
            span.set_attribute(KeyValue::new("http.route", route.to_string()));
        }
        if let Some(agent) = asker
            .headers
            .get(hyper::header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
        {
            span.set_attribute(KeyValue::new("user_agent.original", agent.to_string()));
        }
    }
    Some(parent.with_span(span))
}

/// Ends a request's SERVER span: `status` is what the client was answered
/// (0 if nothing was), `failure` how the request failed, if it did (a trap,
/// a timeout, a cut body); a 5xx is a failure too (`error.type` its code).
pub(crate) fn end(cx: &Context, status: u16, failure: Option<&'static str>) {
    let span = cx.span();
    if span.is_recording() {
        if status != 0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let error = match failure {
            Some(kind) => Some(Cow::Borrowed(kind)),
            None if status >= 500 => Some(Cow::Owned(status.to_string())),
            None => None,
        };
        if let Some(error) = error {
            span.set_status(Status::error(error.clone()));
            span.set_attribute(KeyValue::new("error.type", error));
        }
    }
    span.end();
}

/// A span under a request's, ended when dropped: nothing when tracing is
/// off or the request has no span.
pub(crate) struct Child(Option<Context>);

impl Child {
    /// No span.
    pub(crate) const NONE: Self = Self(None);

    /// A span under `parent`, named by `name` (called only if there is one).
    pub(crate) fn under(
        parent: Option<&Context>,
        kind: SpanKind,
        name: impl FnOnce() -> Cow<'static, str>,
    ) -> Self {
        let (Some(tracer), Some(parent)) = (TRACER.get(), parent) else {
            return Self::NONE;
        };
        let span = tracer
            .span_builder(name())
            .with_kind(kind)
            .start_with_context(tracer, parent);
        Self(Some(parent.with_span(span)))
    }

    /// A span under `parent` for what ran from `start` to `end`, already
    /// over (an instantiation, recorded once its request is known).
    pub(crate) fn over(
        parent: Option<&Context>,
        name: &'static str,
        start: SystemTime,
        end: SystemTime,
    ) {
        let (Some(tracer), Some(parent)) = (TRACER.get(), parent) else {
            return;
        };
        let mut span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(start)
            .start_with_context(tracer, parent);
        span.end_with_timestamp(end);
    }

    /// The span's context, as the parent of spans under it.
    pub(crate) fn context(&self) -> Option<&Context> {
        self.0.as_ref()
    }

    /// Adds an attribute, if the span records.
    pub(crate) fn attribute(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Some(cx) = &self.0 {
            let span = cx.span();
            if span.is_recording() {
                span.set_attribute(KeyValue::new(key, value));
            }
        }
    }

    /// Whether the span records what it is given (it exists, and is
    /// sampled): what only it would use need not be made otherwise.
    pub(crate) fn is_recording(&self) -> bool {
        self.0.as_ref().is_some_and(|cx| cx.span().is_recording())
    }

    /// Marks the span as failed, `kind` saying how (its `error.type`), `why`
    /// in its status.
    pub(crate) fn fail(&self, kind: impl Into<Cow<'static, str>>, why: impl FnOnce() -> String) {
        if let Some(cx) = &self.0 {
            let span = cx.span();
            if span.is_recording() {
                span.set_attribute(KeyValue::new("error.type", kind.into()));
                span.set_status(Status::error(why()));
            }
        }
    }

    /// Puts this span's trace context into `headers` (`traceparent`,
    /// `tracestate`), unless they already carry a `traceparent`.
    pub(crate) fn inject(&self, headers: &mut HeaderMap) {
        if let Some(cx) = &self.0
            && !headers.contains_key("traceparent")
        {
            TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(cx) = &self.0 {
            cx.span().end();
        }
    }
}

/// The trace and span ids of `cx`, for the log lines of its request.
pub(crate) fn ids(cx: &Context) -> (String, String) {
    let span = cx.span();
    let context = span.span_context();
    (
        context.trace_id().to_string(),
        context.span_id().to_string(),
    )
}
