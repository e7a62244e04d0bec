//! The operator's side: hot swap on SIGHUP or a changed file (`reload`), and
//! the subcommands `check`, `compile` and `probe` (`commands`, `probe`). The
//! top layer: uses `guest/`, `serve/` and `telemetry/`; nothing uses it but
//! `lib.rs` and `main.rs`.

pub mod commands;
pub(crate) mod probe;
pub(crate) mod reload;
