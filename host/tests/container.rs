//! The container image and a fleet of replicas, on the local Docker engine.
//!
//! With no registry here, the base images are built locally first
//! (`tests/docker/build-bases.sh`) and passed to the unchanged Dockerfile as
//! build arguments. Without a reachable Docker engine (or Compose, for the
//! fleet) the runner reports these tests as ignored, saying why
//! (`common::needs`).

mod common;

use common::needs::{Test, Tool};
use common::{eventually, faulty_guest, get, workspace};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const IMAGE: &str = "replica-test/replica:latest";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds the image once per test binary: the bases, then the Dockerfile.
fn image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let bases = Command::new(workspace().join("host/tests/docker/build-bases.sh"))
            .output()
            .expect("the base image script runs");
        assert!(
            bases.status.success(),
            "building the base images failed: {}",
            text(&bases)
        );
        let names = String::from_utf8_lossy(&bases.stdout);
        let mut names = names.split_whitespace();
        let (rust, runtime) = (
            names.next().expect("rust image"),
            names.next().expect("runtime image"),
        );
        let started = Instant::now();
        let build = Command::new("docker")
            .current_dir(workspace())
            // Cargo in the builder fetches crates the way this machine does.
            .args(["build", "--network", "host", "-t", IMAGE])
            .args(["--build-arg", &format!("RUST_IMAGE={rust}")])
            .args(["--build-arg", &format!("RUNTIME_IMAGE={runtime}")])
            .arg(".")
            .output()
            .expect("docker build runs");
        assert!(
            build.status.success(),
            "docker build failed: {}",
            text(&build)
        );
        println!("image built in {:?}", started.elapsed());
    });
    IMAGE
}

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
        Test {
            name: "a_fleet_of_three_replicas_loses_one_and_gets_it_back",
            needs: &[Tool::Docker, Tool::Compose],
            run: a_fleet_of_three_replicas_loses_one_and_gets_it_back,
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

fn compose(project: &str, args: &[&str]) -> Output {
    let command = common::needs::compose().expect("Compose is here (checked by the harness)");
    Command::new(command[0])
        .args(&command[1..])
        .current_dir(workspace())
        .args(["-p", project, "-f", "compose.yaml"])
        .args(args)
        .env("REPLICA_IMAGE", IMAGE)
        .env("REPLICA_PORT_1", "15001")
        .env("REPLICA_PORT_2", "15002")
        .env("REPLICA_PORT_3", "15003")
        .output()
        .expect("Compose runs")
}

fn heartbeat_ok(port: u16) -> bool {
    common::request(
        &common::client(),
        "GET",
        &format!("http://127.0.0.1:{port}/heartbeat"),
    )
    .is_ok_and(|r| r.status == 200)
}

fn wait_until(what: &str, limit: Duration, ok: impl FnMut() -> bool) {
    assert!(eventually(limit, ok), "timed out waiting for {what}");
}

fn a_fleet_of_three_replicas_loses_one_and_gets_it_back() {
    image();
    let project = format!("replicafleet{}", std::process::id());
    struct Down<'a>(&'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = compose(self.0, &["down", "-t", "2"]);
        }
    }
    let _down = Down(&project);
    let up = compose(&project, &["up", "-d", "--no-build"]);
    assert!(up.status.success(), "{}", text(&up));

    let ports = [15001, 15002, 15003];
    for (i, port) in ports.iter().enumerate() {
        wait_until("a replica", Duration::from_secs(30), || heartbeat_ok(*port));
        let home = get(&format!("http://127.0.0.1:{port}/home"));
        assert_eq!(
            home.json()["message"],
            format!("Hello from Server: {}", i + 1)
        );
    }

    let stop = compose(&project, &["stop", "-t", "5", "replica2"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(!heartbeat_ok(15002), "replica2 still answers");
    assert!(heartbeat_ok(15001) && heartbeat_ok(15003));

    let start = compose(&project, &["start", "replica2"]);
    assert!(start.status.success(), "{}", text(&start));
    wait_until("replica2 to recover", Duration::from_secs(30), || {
        heartbeat_ok(15002)
    });
    assert_eq!(
        get("http://127.0.0.1:15002/home").json()["message"],
        "Hello from Server: 2"
    );
}
