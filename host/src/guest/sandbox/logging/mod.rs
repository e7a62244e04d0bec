//! wasi:logging (`logging@0.1.0-draft`, as wasmCloud gives it, and its
//! SDK's `info!` and `error!` use): each call is one entry in the host's log,
//! at the level the guest gave (`critical` at ERROR, marked so), with the
//! guest's `context`, in the request's span, target `guest` as its stdout
//! is; both escaped as guest output is, so that no call can forge a line.

use crate::telemetry::{logging::escaped, span};
use wasmtime::component::{HasData, Linker};

mod draft {
    wasmtime::component::bindgen!({
        path: "../wit/deps/logging",
        world: "wasi:logging/imports",
    });
}

use draft::wasi::logging::logging::{self, Level};

/// The logging interface's view of a store: it needs nothing of it.
pub(crate) struct Logging;

struct HasLogging;

impl HasData for HasLogging {
    type Data<'a> = Logging;
}

pub(crate) fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    logging::add_to_linker::<T, HasLogging>(linker, |_| Logging)
}

impl logging::Host for Logging {
    fn log(&mut self, level: Level, context: String, message: String) {
        let (context, message) = (escaped(&context), escaped(&message));
        span::log(|| match level {
            Level::Trace => tracing::trace!(target: "guest", context = %context, "{message}"),
            Level::Debug => tracing::debug!(target: "guest", context = %context, "{message}"),
            Level::Info => tracing::info!(target: "guest", context = %context, "{message}"),
            Level::Warn => tracing::warn!(target: "guest", context = %context, "{message}"),
            Level::Error => tracing::error!(target: "guest", context = %context, "{message}"),
            Level::Critical => {
                tracing::error!(target: "guest", context = %context, critical = true, "{message}")
            }
        });
    }
}
