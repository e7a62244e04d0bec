//! Whether an instance may take another request: it has not failed, nor gone
//! past its memory budget. Shared by an instance's store (its budget), its
//! 0.3 worker and the responses it is sending.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether an instance has failed (trapped, run out of memory, been cut
/// off), or gone past its memory budget (`guest/sandbox/memory.rs`): either way it
/// takes no more requests.
#[derive(Default)]
pub(crate) struct Health {
    failed: AtomicBool,
    spent: AtomicBool,
}

impl Health {
    pub(crate) fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn spend(&self) {
        self.spent.store(true, Ordering::Release);
    }

    /// Whether the instance must take no more requests.
    pub(crate) fn is_done(&self) -> bool {
        self.failed() || self.spent.load(Ordering::Acquire)
    }
}
