//! What the host says: logs (text or JSON lines on stderr through `tracing`,
//! filtered by RUST_LOG), the access log (target `access`), and the few lines
//! on stdout that scripts and tests read ([`announce`]).

use replica_config::LogFormat;
use std::io::Write as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Without RUST_LOG (or with an empty one):
/// `info`, with the access log off unless asked for. A request's log lines
/// carry its span (`request{id method path}`); in JSON, as the `span` object.
pub fn init_logging(format: LogFormat, access_log: bool) {
    let default = if access_log {
        "info"
    } else {
        "info,access=off"
    };
    let mut filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .and_then(|directives| match EnvFilter::try_new(&directives) {
            Ok(filter) => Some(filter),
            Err(e) => {
                eprintln!(
                    "warning: ignoring RUST_LOG={directives:?} ({e}); logging at `{default}`"
                );
                None
            }
        })
        .unwrap_or_else(|| EnvFilter::new(default));
    if access_log && let Ok(directive) = "access=info".parse() {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Prints a line on stdout (`listening on http://…` and the like); a stdout
/// that cannot be written to is logged, never a panic (as `println!` would be).
pub(crate) fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!("cannot write to stdout ({e}): {line}");
    }
}
