//! What the host says about itself: logs and the lines on stdout
//! (`logging`), each request's span (`span`), Prometheus metrics (`metrics`,
//! labelled by `routes`), OpenTelemetry traces over OTLP (`traces/`).
//! The bottom layer: every other folder may use it, and it uses none of them.

pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod routes;
pub(crate) mod span;
pub(crate) mod traces;
