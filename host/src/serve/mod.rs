//! The network side: per-core `workers`, each with its listening socket
//! (`listeners`) and accept loop (`server`), under the `settings`;
//! connections told apart by protocol (`protocol`), over TLS if asked
//! (`tls`), served until closed or drained within one window for their first
//! request (`connection`), a client that stops reading cut off (`stall`);
//! each request checked, its authority first (`authority`), its body bounded
//! and timed (`upload`) and read on if left (`drain`), answered (`handler`)
//! as HTTP lets a guest's response go out (`response`); SIGTERM and SIGINT
//! (`shutdown`). Uses `guest/` and `telemetry/`.

pub(crate) mod authority;
pub(crate) mod connection;
pub(crate) mod drain;
pub(crate) mod handler;
pub(crate) mod listeners;
pub(crate) mod protocol;
pub(crate) mod response;
pub(crate) mod server;
pub(crate) mod settings;
pub(crate) mod shutdown;
pub(crate) mod stall;
pub(crate) mod tls;
pub(crate) mod upload;
pub(crate) mod workers;
