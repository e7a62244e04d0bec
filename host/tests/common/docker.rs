//! The local Docker engine, for the container and fleet tests: the images
//! they run, built once per test binary from base images this machine builds
//! itself (no registry: `tests/docker/build-bases.sh`), passed to the
//! unchanged Dockerfiles as build arguments.

use super::workspace;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

/// The replica's image, as the tests build it.
pub const IMAGE: &str = "replica-test/replica:latest";

/// The load balancer's image, as the tests build it.
pub const LB_IMAGE: &str = "replica-test/lb:latest";

/// The fleet's Redis image, as the tests build it.
pub const REDIS_IMAGE: &str = "replica-test/redis:latest";

/// The fleet's trace collector's image, as the tests build it.
pub const COLLECTOR_IMAGE: &str = "replica-test/collector:latest";

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn docker_ok(args: &[&str]) -> String {
    succeeded(&docker(args), &format!("docker {}", args.join(" ")))
}

/// The trimmed stdout of `what`, which must have succeeded.
pub fn succeeded(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The base images: Rust, the runtime (distroless-like) and plain Debian.
struct Bases {
    rust: String,
    runtime: String,
    debian: String,
}

fn bases() -> &'static Bases {
    static BUILT: OnceLock<Bases> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(workspace().join("host/tests/docker/build-bases.sh"))
            .output()
            .expect("the base image script runs");
        assert!(
            out.status.success(),
            "building the base images failed: {}",
            text(&out)
        );
        let names = String::from_utf8_lossy(&out.stdout);
        let mut names = names.split_whitespace().map(str::to_string);
        let mut next = |what: &str| names.next().unwrap_or_else(|| panic!("no {what} image"));
        Bases {
            rust: next("rust"),
            runtime: next("runtime"),
            debian: next("debian"),
        }
    })
}

/// Runs `docker build` in `dir` with `args`; the host's network, so that the
/// builds fetch crates and packages the way this machine does.
fn build(dir: &str, tag: &str, args: &[(&str, &str)]) {
    let started = Instant::now();
    let mut cmd = Command::new("docker");
    cmd.current_dir(workspace().join(dir))
        .args(["build", "--network", "host", "-t", tag]);
    for (name, value) in args {
        cmd.args(["--build-arg", &format!("{name}={value}")]);
    }
    let out = cmd.arg(".").output().expect("docker build runs");
    assert!(
        out.status.success(),
        "docker build of {tag} failed: {}",
        text(&out)
    );
    println!("{tag} built in {:?}", started.elapsed());
}

/// Builds the replica's image once per test binary.
pub fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let bases = bases();
        build(
            ".",
            IMAGE,
            &[
                ("RUST_IMAGE", &bases.rust),
                ("RUNTIME_IMAGE", &bases.runtime),
            ],
        );
    });
    IMAGE
}

/// Builds the load balancer's image once per test binary.
pub fn lb_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    on_debian(&BUILT, "deploy/haproxy", LB_IMAGE)
}

/// Builds the fleet's Redis image once per test binary.
pub fn redis_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    on_debian(&BUILT, "deploy/redis", REDIS_IMAGE)
}

/// Builds the fleet's trace collector's image once per test binary.
pub fn collector_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    on_debian(&BUILT, "deploy/collector", COLLECTOR_IMAGE)
}

/// Builds `dir`'s image as `tag` on the plain Debian base, once (`built`).
fn on_debian(built: &OnceLock<()>, dir: &str, tag: &'static str) -> &'static str {
    built.get_or_init(|| build(dir, tag, &[("BASE_IMAGE", &bases().debian)]));
    tag
}
