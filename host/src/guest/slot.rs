//! A request's place among those served at once: one of `--max-concurrency`
//! permits, counted in the in-use gauge, held as long as the request keeps a
//! guest busy (for a 0.3 response, until its body has been sent).

use crate::telemetry::metrics::{InUse, Metrics};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The permits: `--max-concurrency` of them.
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

/// One request's place; freed when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _in_use: InUse,
}

impl Slots {
    pub(crate) fn new(max_concurrency: u32, metrics: Metrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency as usize)),
            metrics,
        }
    }

    /// A place, or `None` if every one is taken: never waits.
    pub(crate) fn try_take(&self) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(Slot {
            _permit: permit,
            _in_use: self.metrics.in_use(),
        })
    }
}
