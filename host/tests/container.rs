//! The container image, on the local Docker engine (the fleet is
//! `fleet.rs`).
//!
//! With no registry here, the base images are built locally first
//! (`tests/docker/build-bases.sh`) and passed to the unchanged Dockerfile as
//! build arguments. Without a reachable Docker engine the runner reports
//! these tests as ignored, saying why (`common::needs`).

mod common;

use common::docker::{IMAGE, docker, docker_ok, image, text};
use common::needs::{Test, Tool};
use common::{eventually, faulty_guest, get};
use std::time::{Duration, Instant};

/// A container, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    fn run(name: &str, args: &[&str]) -> Container {
        let name = format!("replica-test-{name}-{}", std::process::id());
        let _ = docker(&["rm", "-f", &name]);
        let mut all = vec!["run", "-d", "--name", &name, "-p", "127.0.0.1::5000"];
        all.extend_from_slice(args);
        all.push(image());
        docker_ok(&all);
        Container { name }
    }

    fn url(&self, path: &str) -> String {
        let port = docker_ok(&["port", &self.name, "5000/tcp"]);
        let port = port
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .expect("a port")
            .to_string();
        format!("http://127.0.0.1:{port}{path}")
    }

    fn wait_heartbeat(&self, limit: Duration) -> Duration {
        self.wait_for_200("/heartbeat", limit)
    }

    fn wait_for_200(&self, path: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        let url = self.url(path);
        while started.elapsed() < limit {
            if common::request(&common::client(), "GET", &url).is_ok_and(|r| r.status == 200) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "{} never answered {path}; logs:\n{}",
            self.name,
            self.logs()
        );
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.name])
    }

    fn logs(&self) -> String {
        text(&docker(&["logs", &self.name]))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

fn main() -> std::process::ExitCode {
    const DOCKER: &[Tool] = &[Tool::Docker];
    common::needs::main(vec![
        Test {
            name: "the_image_serves_like_the_original_and_drains_on_stop",
            needs: DOCKER,
            run: the_image_serves_like_the_original_and_drains_on_stop,
        },
        Test {
            name: "a_read_only_container_serves_from_the_precompiled_cache",
            needs: DOCKER,
            run: a_read_only_container_serves_from_the_precompiled_cache,
        },
        Test {
            name: "without_server_id_the_container_exits_at_once_saying_why",
            needs: DOCKER,
            run: without_server_id_the_container_exits_at_once_saying_why,
        },
        Test {
            name: "another_guest_mounted_over_the_component_is_served_without_a_rebuild",
            needs: DOCKER,
            run: another_guest_mounted_over_the_component_is_served_without_a_rebuild,
        },
        Test {
            name: "a_0_3_component_is_served_from_the_image_or_mounted",
            needs: DOCKER,
            run: a_0_3_component_is_served_from_the_image_or_mounted,
        },
    ])
}

/// The host says how it got the compiled component: from the image's
/// precompiled cache, not by compiling at start.
fn assert_loaded_from_cache(container: &Container) {
    let logs = container.logs();
    assert!(logs.contains("from the compile cache"), "{logs}");
    assert!(!logs.contains("compiled in"), "{logs}");
    assert!(!logs.contains("not caching"), "{logs}");
}

fn the_image_serves_like_the_original_and_drains_on_stop() {
    image(); // built (once, for every test) before the clock starts
    let started = Instant::now();
    let container = Container::run("serve", &["-e", "SERVER_ID=1"]);
    let ready = container.wait_heartbeat(Duration::from_secs(20));
    println!(
        "container start to first 200 on /heartbeat: {:?} (from docker run: {:?})",
        ready,
        started.elapsed()
    );
    let home = get(&container.url("/home"));
    assert_eq!(
        home.body,
        r#"{"message":"Hello from Server: 1","status":"successful"}"#
    );
    assert_eq!(container.inspect("{{.Config.User}}"), "65532:65532");
    assert!(
        container
            .inspect("{{json .Config.ExposedPorts}}")
            .contains("5000/tcp")
    );

    // The HEALTHCHECK (the host's own probe) turns healthy.
    assert!(
        eventually(Duration::from_secs(30), || container
            .inspect("{{.State.Health.Status}}")
            == "healthy"),
        "never healthy: {}",
        container.inspect("{{json .State.Health}}")
    );
    // The image's precompiled cache was used: no compile at start.
    assert_loaded_from_cache(&container);

    // docker stop sends SIGTERM: the host drains and exits 0.
    docker_ok(&["stop", "-t", "10", &container.name]);
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );

    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", IMAGE])
        .parse()
        .expect("size");
    println!("image size: {:.1} MB", size as f64 / 1e6);
}

/// As the Kubernetes manifest runs it: a read-only root filesystem, so the
/// compile cache can only be read.
fn a_read_only_container_serves_from_the_precompiled_cache() {
    let container = Container::run("read-only", &["--read-only", "-e", "SERVER_ID=ro"]);
    container.wait_heartbeat(Duration::from_secs(20));
    assert_eq!(
        get(&container.url("/home")).json()["message"],
        "Hello from Server: ro"
    );
    assert_loaded_from_cache(&container);
}

fn without_server_id_the_container_exits_at_once_saying_why() {
    let container = Container::run("no-id", &[]);
    assert!(
        eventually(Duration::from_secs(20), || container
            .inspect("{{.State.Running}}")
            != "true"),
        "still running"
    );
    assert_ne!(container.inspect("{{.State.ExitCode}}"), "0");
    assert!(
        container.logs().contains("no SERVER_ID given"),
        "{}",
        container.logs()
    );
}

fn another_guest_mounted_over_the_component_is_served_without_a_rebuild() {
    let guest = faulty_guest();
    let mount = format!("{}:/app/replica.wasm:ro", guest.display());
    let container = Container::run("swap", &["-e", "SERVER_ID=1", "-v", &mount]);
    // The faulty test guest has no /heartbeat; /ok is its sign of life.
    container.wait_for_200("/ok", Duration::from_secs(30));
    assert_eq!(get(&container.url("/home")).body, "faulty-home");
}

/// The image's own 0.3 guest, picked with REPLICA_COMPONENT (and precompiled
/// in its cache), and another 0.3 component mounted over the default path.
fn a_0_3_component_is_served_from_the_image_or_mounted() {
    let built_in = Container::run(
        "p3",
        &[
            "-e",
            "SERVER_ID=p3",
            "-e",
            "REPLICA_COMPONENT=/app/replica-p3.wasm",
        ],
    );
    built_in.wait_heartbeat(Duration::from_secs(20));
    assert_eq!(
        get(&built_in.url("/home")).json()["message"],
        "Hello from Server: p3"
    );
    assert_loaded_from_cache(&built_in);
    assert!(
        built_in.logs().contains("a wasi:http/service 0.3"),
        "{}",
        built_in.logs()
    );

    let mount = format!(
        "{}:/app/replica.wasm:ro",
        common::faulty_guest_p3().display()
    );
    let mounted = Container::run("p3-mount", &["-e", "SERVER_ID=1", "-v", &mount]);
    mounted.wait_for_200("/ok", Duration::from_secs(60));
    assert_eq!(get(&mounted.url("/home")).body, "faulty-p3-home");
}
