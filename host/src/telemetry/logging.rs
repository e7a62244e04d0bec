//! What the host says: logs (text or JSON lines on stderr through `tracing`,
//! filtered by RUST_LOG), the access log (target `access`), and the few lines
//! on stdout that scripts and tests read ([`announce`]).

use replica_config::LogFormat;
use std::borrow::Cow;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

/// Whether lines are written as JSON, which escapes control characters
/// itself; text lines get [`escaped`].
static JSON: AtomicBool = AtomicBool::new(false);

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
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
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

/// Text a guest wrote, as it may go into a log line: in the text format,
/// control characters are escaped as JSON escapes them (and DEL and the C1
/// controls too, which terminals act on), so that a guest cannot end a line,
/// overwrite one (`\r`) or send a terminal escape: it cannot forge a line of
/// the host's. The JSON format escapes them itself.
pub(crate) fn escaped(text: &str) -> Cow<'_, str> {
    if JSON.load(Ordering::Relaxed) || !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
}

/// Prints a line on stdout (`listening on http://…` and the like); a stdout
/// that cannot be written to is logged, never a panic (as `println!` would be).
pub(crate) fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::warn!("cannot write to stdout ({e}): {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_as_json_escapes_them() {
        assert_eq!(escaped("plain text, tab-free"), "plain text, tab-free");
        assert_eq!(
            escaped("ok\r2026-12-01T00:00:00Z ERROR replica_host: FAKE"),
            "ok\\r2026-12-01T00:00:00Z ERROR replica_host: FAKE"
        );
        assert_eq!(
            escaped("a\tb\nc\u{1b}[2K\u{7}"),
            "a\\tb\\nc\\u001b[2K\\u0007"
        );
        assert_eq!(escaped("\u{7f}\u{9b}é"), "\\u007f\\u009bé");
    }
}
