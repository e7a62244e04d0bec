//! A real OpenTelemetry collector for the tests: PyPI's `rotel` (its
//! `rotel-agent`, in the project's `.venv`: `make test` installs it), on
//! loopback ports of its own, receiving OTLP over http/protobuf and grpc and
//! printing every span it receives (its debug log, detailed), which is read
//! back here into [`Span`]s. Killed when dropped; it can be stopped and
//! started again on the same ports, as an outage would.

use super::{eventually, venv_file};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `rotel-agent`, from the project's `.venv`.
pub fn rotel() -> PathBuf {
    venv_file("rotel/rotel-agent").unwrap_or_else(|| "rotel-agent".into())
}

/// One span as the collector received it.
#[derive(Clone, Debug, Default)]
pub struct Span {
    pub trace_id: String,
    /// Empty for a root span.
    pub parent_id: String,
    pub span_id: String,
    pub name: String,
    /// `SERVER`, `CLIENT`, `INTERNAL`, ...
    pub kind: String,
    /// `UNSET`, `OK` or `ERROR`.
    pub status: String,
    pub attributes: BTreeMap<String, String>,
    /// Its resource's attributes.
    pub resource: BTreeMap<String, String>,
}

impl Span {
    /// The value of attribute `key`, if it has one.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

pub struct Collector {
    child: Option<Child>,
    pub http_port: u16,
    pub grpc_port: u16,
    log: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Collector {
    /// A collector on two free loopback ports.
    pub fn start() -> Collector {
        let (http_port, grpc_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!(
            "replica-collector-{}-{http_port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a directory for the collector");
        let mut collector = Collector {
            child: None,
            http_port,
            grpc_port,
            log: Arc::default(),
            dir,
        };
        collector.run();
        collector
    }

    /// `http://127.0.0.1:PORT`, the http/protobuf endpoint (the host adds
    /// `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `http://127.0.0.1:PORT`, the grpc endpoint.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Starts the collector (again, on the same ports), and waits until it
    /// takes connections on both.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new(rotel())
            .args(["start", "--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
            .arg("--otlp-http-endpoint")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--otlp-grpc-endpoint")
            .arg(format!("127.0.0.1:{}", self.grpc_port))
            .arg("--pid-file")
            .arg(self.dir.join("rotel.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start rotel-agent: {e} (run the tests with `make test`)")
            });
        for pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let log = self.log.clone();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(pipe);
                let mut line = Vec::new();
                // The debug log is not always valid UTF-8 (ANSI colours, raw
                // bytes): read bytes, keep what reads as text.
                while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    log.lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            });
        }
        self.child = Some(child);
        let ports = [self.http_port, self.grpc_port];
        let up = eventually(Duration::from_secs(20), || {
            ports
                .iter()
                .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok())
        });
        assert!(up, "the collector never listened:\n{}", self.log());
    }

    /// Kills the collector, as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the collector printed.
    pub fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        parse(&self.log())
    }

    /// The spans of trace `trace_id`, once `done` holds of them (waiting up
    /// to 20 s), or the test fails showing what came.
    pub fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let mut seen = Vec::new();
        let ok = eventually(Duration::from_secs(20), || {
            seen = self
                .spans()
                .into_iter()
                .filter(|span| span.trace_id == trace_id)
                .collect();
            done(&seen)
        });
        assert!(
            ok,
            "trace {trace_id} never came whole; received:\n{seen:#?}"
        );
        seen
    }

    /// The spans received once `done` holds of all of them (waiting up to
    /// 20 s).
    pub fn spans_until(&self, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let mut seen = Vec::new();
        let ok = eventually(Duration::from_secs(20), || {
            seen = self.spans();
            done(&seen)
        });
        assert!(ok, "the spans never came; received:\n{seen:#?}");
        seen
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The spans in rotel's detailed debug log (this collector's, or one's in a
/// container): each `Span #N` block's fields
/// and attributes, with the resource attributes printed before it.
pub fn parse(log: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut resource = BTreeMap::new();
    let mut current: Option<Span> = None;
    let mut in_resource = false;
    for line in log.lines() {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        if trimmed.starts_with("ResourceSpans #") {
            spans.extend(current.take());
            resource = BTreeMap::new();
            in_resource = false;
        } else if trimmed == "Resource attributes:" {
            in_resource = true;
        } else if trimmed.starts_with("ScopeSpans #") {
            spans.extend(current.take());
            in_resource = false;
        } else if trimmed.starts_with("Span #") {
            spans.extend(current.take());
            in_resource = false;
            current = Some(Span {
                resource: resource.clone(),
                ..Span::default()
            });
        } else if let Some(attribute) = trimmed.strip_prefix("-> ") {
            let Some((key, value)) = attribute.split_once(": ") else {
                continue;
            };
            let value = unwrapped(value);
            if in_resource {
                resource.insert(key.to_string(), value);
            } else if let Some(span) = current.as_mut() {
                span.attributes.insert(key.to_string(), value);
            }
        } else if let (Some(span), Some((field, value))) =
            (current.as_mut(), trimmed.split_once(':'))
        {
            let value = value.trim().to_string();
            match field.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_id = value,
                "ID" => span.span_id = value,
                "Name" => span.name = value,
                "Kind" => span.kind = value.trim_start_matches("SPAN_KIND_").to_string(),
                "Status code" => span.status = value.trim_start_matches("STATUS_CODE_").to_string(),
                _ => {}
            }
        }
    }
    spans.extend(current);
    spans
}

/// `Str(x)`, `Int(5)`, ... as `x`, `5`.
fn unwrapped(value: &str) -> String {
    match value.split_once('(') {
        Some((_, rest)) if rest.ends_with(')') => rest[..rest.len() - 1].to_string(),
        _ => value.to_string(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
