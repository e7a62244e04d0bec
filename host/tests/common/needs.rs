//! Tests that need a tool this machine may lack (a Docker engine, Compose,
//! Chromium, curl, a Redis server, HAProxy, componentize-py, an OpenTelemetry
//! collector) run under this harness, built on `libtest-mimic`, instead of
//! libtest's: libtest can only pass a test that returns early, so a missing
//! tool would read as `ok`. Here a test whose tool is missing is reported as
//! `ignored` and counted so by the runner's summary; the reason goes to
//! stderr and to `target/test-skips/`, which `make test` lists at its end.
//!
//! `REPLICA_REQUIRE` (comma-separated tool names, or `all`) turns a missing
//! tool into a failure: CI sets it for every tool its machine has, so that a
//! test that could run there never quietly does not.

use super::workspace;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;

/// Something outside Rust that some tests need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// A reachable Docker engine (`docker info` succeeds).
    Docker,
    /// Docker Compose, v2 (`docker compose`) or v1 (`docker-compose`).
    Compose,
    /// A headless Chromium.
    Chromium,
    /// curl, built with HTTP/2.
    Curl,
    /// A Redis server to start (`redis-server`, with `redis-cli`).
    Redis,
    /// HAProxy, to put in front of a replica (`haproxy`).
    Haproxy,
    /// componentize-py in the project's `.venv` (`make test` installs it).
    ComponentizePy,
    /// rotel, an OpenTelemetry collector, in the project's `.venv` (`make
    /// test` installs it).
    Rotel,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Docker => "docker",
            Tool::Compose => "compose",
            Tool::Chromium => "chromium",
            Tool::Curl => "curl",
            Tool::Redis => "redis",
            Tool::Haproxy => "haproxy",
            Tool::ComponentizePy => "componentize-py",
            Tool::Rotel => "rotel",
        }
    }

    /// Why this tool cannot be used here, or `None` if it can.
    fn missing(self) -> Option<&'static str> {
        match self {
            Tool::Docker => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                let ok = *PROBE.get_or_init(|| succeeds(Command::new("docker").arg("info")));
                (!ok).then_some("no Docker engine is reachable (`docker info` failed)")
            }
            Tool::Compose => compose()
                .is_none()
                .then_some("neither `docker compose` (v2) nor `docker-compose` (v1) runs"),
            Tool::Chromium => chromium()
                .is_none()
                .then_some("no Chromium here (`apt-get install chromium`)"),
            Tool::Curl => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                let ok = *PROBE.get_or_init(|| {
                    Command::new("curl")
                        .arg("--version")
                        .output()
                        .is_ok_and(|o| {
                            o.status.success()
                                && String::from_utf8_lossy(&o.stdout).contains("HTTP2")
                        })
                });
                (!ok).then_some("no curl with HTTP/2 here (`apt-get install curl`)")
            }
            Tool::Redis => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                let ok = *PROBE.get_or_init(|| {
                    succeeds(Command::new("redis-server").arg("--version"))
                        && succeeds(Command::new("redis-cli").arg("--version"))
                });
                (!ok).then_some("no Redis server here (`apt-get install redis-server`)")
            }
            Tool::Haproxy => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                let ok = *PROBE.get_or_init(|| succeeds(Command::new("haproxy").arg("-v")));
                (!ok).then_some("no HAProxy here (`apt-get install haproxy`)")
            }
            Tool::ComponentizePy => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                let ok = *PROBE.get_or_init(|| {
                    succeeds(Command::new(super::componentize_py()).arg("--version"))
                });
                (!ok).then_some("no componentize-py in .venv (run the tests with `make test`)")
            }
            Tool::Rotel => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                let ok = *PROBE.get_or_init(|| {
                    succeeds(Command::new(super::collector::rotel()).arg("--help"))
                });
                (!ok).then_some("no rotel-agent in .venv (run the tests with `make test`)")
            }
        }
    }

    fn required(self) -> bool {
        std::env::var("REPLICA_REQUIRE").is_ok_and(|list| {
            list.split(',')
                .map(str::trim)
                .any(|name| name == "all" || name == self.name())
        })
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|out| out.status.success())
}

/// The Compose command to run (`docker compose` or `docker-compose`).
pub fn compose() -> Option<&'static [&'static str]> {
    static FOUND: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        const V2: &[&str] = &["docker", "compose"];
        const V1: &[&str] = &["docker-compose"];
        [V2, V1]
            .into_iter()
            .find(|command| succeeds(Command::new(command[0]).args(&command[1..]).arg("version")))
    })
}

/// The Chromium binary to run.
pub fn chromium() -> Option<&'static str> {
    static FOUND: OnceLock<Option<&'static str>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|name| succeeds(Command::new(name).arg("--version")))
    })
}

/// One test and the tools it needs.
pub struct Test {
    pub name: &'static str,
    pub needs: &'static [Tool],
    pub run: fn(),
}

/// Runs `tests` as libtest would, each one ignored (with its reason) or
/// failed (where required) when a tool it needs is missing.
pub fn main(tests: Vec<Test>) -> ExitCode {
    let args = libtest_mimic::Arguments::from_args();
    let binary = std::env::args()
        .next()
        .and_then(|path| {
            let name = std::path::Path::new(&path)
                .file_stem()?
                .to_str()?
                .to_string();
            // Cargo names test binaries `name-<hash>`.
            Some(
                name.rsplit_once('-')
                    .map_or(name.clone(), |(n, _)| n.to_string()),
            )
        })
        .unwrap_or_default();
    let trials = tests
        .into_iter()
        .map(|test| {
            let missing = test
                .needs
                .iter()
                .find_map(|tool| tool.missing().map(|why| (*tool, why)));
            match missing {
                None => {
                    let run = test.run;
                    libtest_mimic::Trial::test(test.name, move || {
                        run();
                        Ok(())
                    })
                }
                Some((tool, why)) if tool.required() => {
                    libtest_mimic::Trial::test(test.name, move || {
                        Err(format!("REPLICA_REQUIRE names {}, but {why}", tool.name()).into())
                    })
                }
                Some((_, why)) => {
                    if selected(&args, test.name) {
                        record_skip(&binary, test.name, why);
                    }
                    libtest_mimic::Trial::test(test.name, || Ok(())).with_ignored_flag(true)
                }
            }
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// Whether this run would run `test` (were its tool there): not when only
/// listing, nor when a name filter leaves it out.
fn selected(args: &libtest_mimic::Arguments, test: &str) -> bool {
    let matches = |filter: &String| {
        if args.exact {
            test == filter
        } else {
            test.contains(filter.as_str())
        }
    };
    !args.list && args.filter.as_ref().is_none_or(matches) && !args.skip.iter().any(matches)
}

/// Says on stderr, and in `target/test-skips/` for `make test`'s summary,
/// that a test did not run and why.
fn record_skip(binary: &str, test: &str, why: &str) {
    let line = format!("{binary}::{test}: {why}");
    eprintln!("SKIPPED {line}");
    let dir = workspace().join("target").join("test-skips");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{binary}-{test}")), format!("{line}\n"));
}
