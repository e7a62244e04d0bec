//! A tokio runtime on a thread of its own, for work that must never make a
//! worker's runtime wait, and that its own runtime must drive: the Redis
//! connection (`guest/sandbox/keyvalue/redis`) and the trace exporter
//! (`telemetry/traces/export.rs`). The thread ends when its [`SideRuntime`]
//! goes.

use anyhow::{Context as _, Result};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub(crate) struct SideRuntime {
    handle: Handle,
    /// Ends the thread when dropped.
    _stop: oneshot::Sender<()>,
}

impl SideRuntime {
    /// Starts the runtime, on a thread named `thread`; `what` names its
    /// user in an error.
    pub(crate) fn start(thread: &str, what: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .with_context(|| format!("cannot start {what}'s async runtime"))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .with_context(|| format!("cannot start {what}'s thread"))?;
        Ok(Self {
            handle,
            _stop: stop,
        })
    }

    /// Where its work is spawned (or entered, for what sets itself up in a
    /// runtime).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}
