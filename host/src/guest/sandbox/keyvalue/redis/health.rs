//! Whether Redis answers: which errors are an outage rather than one refused
//! command, and the state that logs an outage once when it starts and once
//! when it ends.

use redis::{ErrorKind, RedisError};
use std::sync::atomic::{AtomicU8, Ordering};

/// Whether `e` says Redis cannot be used now (rather than refusing one
/// command): I/O, time-outs, credentials, a connection to replace.
pub(super) fn is_outage(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
        || is_auth(e)
}

pub(super) fn is_auth(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
}

/// Whether Redis answered the last call (0 until the first), so that an
/// outage is logged once.
#[derive(Default)]
pub(super) struct Health(AtomicU8);

impl Health {
    pub(super) const UP: u8 = 1;
    pub(super) const DOWN: u8 = 2;

    pub(super) fn store(&self, state: u8) {
        self.0.store(state, Ordering::Relaxed);
    }

    pub(super) fn up(&self, shown: &str) {
        if self.0.swap(Self::UP, Ordering::Relaxed) == Self::DOWN {
            tracing::info!("wasi:keyvalue: Redis at {shown} answers again");
        }
    }

    pub(super) fn down(&self, shown: &str, why: &str) {
        if self.0.swap(Self::DOWN, Ordering::Relaxed) != Self::DOWN {
            tracing::warn!(
                "wasi:keyvalue: Redis at {shown} is unavailable ({why}): key-value calls fail \
                 until it answers again; everything else is served"
            );
        }
    }
}
