//! A request's place among those served at once: one of `--max-concurrency`
//! permits, counted in the in-use gauge, held as long as the request keeps a
//! guest busy (for a 0.3 response, until its body has been sent). A request
//! whose body is still arriving when its guest is called also holds an
//! upload place, of which there are half as many: requests waiting on their
//! clients can never take the places of those that wait on nobody.

use crate::telemetry::metrics::{InUse, Metrics};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The permits: `--max-concurrency` of them, and half as many upload places.
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    metrics: Metrics,
}

/// A request's upload place; freed when dropped (when its body has arrived).
pub(crate) struct UploadPlace {
    _permit: OwnedSemaphorePermit,
}

/// One request's place; freed when dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _in_use: InUse,
}

impl Slots {
    pub(crate) fn new(max_concurrency: u32, metrics: Metrics) -> Self {
        let uploads = (max_concurrency as usize / 2).max(1);
        Self {
            permits: Arc::new(Semaphore::new(max_concurrency as usize)),
            uploads: Arc::new(Semaphore::new(uploads)),
            metrics,
        }
    }

    /// An upload place, or `None` if every one is taken: never waits.
    pub(crate) fn try_upload(&self) -> Option<UploadPlace> {
        let permit = self.uploads.clone().try_acquire_owned().ok()?;
        Some(UploadPlace { _permit: permit })
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
