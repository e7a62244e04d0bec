//! The network side: per-core `workers`, each with its listening socket
//! (`listeners`) and accept loop (`server`), under the `settings`, connections told apart by
//! protocol (`protocol`) and served until closed or drained (`connection`),
//! over TLS if asked (`tls`); each request checked and answered (`handler`),
//! its unread body read on (`drain`); SIGTERM and SIGINT (`shutdown`). Uses
//! `guest/` and `telemetry/`.

pub(crate) mod connection;
pub(crate) mod drain;
pub(crate) mod handler;
pub(crate) mod listeners;
pub(crate) mod protocol;
pub(crate) mod server;
pub(crate) mod settings;
pub(crate) mod shutdown;
pub(crate) mod tls;
pub(crate) mod workers;
