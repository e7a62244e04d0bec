//! A fleet: three replicas behind HAProxy, sharing a Redis and sending their
//! traces to a collector (`compose.yaml`, `compose.redis.yaml` and
//! `compose.traces.yaml`): a `traceparent` sent to HAProxy reaches a
//! replica, whose span the collector receives in that trace. Then, under a
//! constant, bounded load through the load
//! balancer (8 clients, at most 20,000 requests a phase): a rolling upgrade
//! by hot swap, another by container replacement, a replica killed (SIGKILL)
//! and started again, a replica stopped (drained). No request may fail.
//! Then, with a guest that keeps a counter in wasi:keyvalue on every
//! replica, increments through the load balancer land exactly once. Prints
//! the figures.

mod common;

use common::docker::{
    COLLECTOR_IMAGE, IMAGE, LB_IMAGE, REDIS_IMAGE, collector_image, docker, docker_ok, image,
    lb_image, redis_image, succeeded, text,
};
use common::needs::{Test, Tool};
use common::{eventually, faulty_guest, replica_guest, stateful_guest, workspace};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const LB_PORT: u16 = 15100;
const REPLICA_PORTS: [u16; 3] = [15101, 15102, 15103];
const CLIENTS: usize = 8;
const MAX_REQUESTS: usize = 20_000;
/// Each client's pause between requests: a steady load (at most about
/// 1,600 requests/s) that lasts through a phase instead of spending its
/// 20,000 requests in the first seconds.
const PACE: Duration = Duration::from_millis(5);
const FAULTY_HOME: &str = "faulty-home";

fn main() -> std::process::ExitCode {
    common::needs::main(vec![Test {
        name: "a_fleet_behind_haproxy_upgrades_and_loses_replicas_without_failing_a_request",
        needs: &[Tool::Docker, Tool::Compose],
        run: a_fleet_behind_haproxy_upgrades_and_loses_replicas_without_failing_a_request,
    }])
}

/// A compose project, taken down (volumes and all) when dropped.
struct Fleet {
    project: String,
}

impl Fleet {
    fn up() -> Fleet {
        let images = (image(), lb_image(), redis_image(), collector_image());
        assert_eq!(images, (IMAGE, LB_IMAGE, REDIS_IMAGE, COLLECTOR_IMAGE));
        let fleet = Fleet {
            project: format!("replicafleet{}", std::process::id()),
        };
        fleet.compose_ok(&["up", "-d", "--no-build"]);
        // Every replica answers through the load balancer.
        let mut seen = BTreeMap::new();
        assert!(
            eventually(Duration::from_secs(60), || {
                if let Some(body) = fetch(&lb_url()) {
                    *seen.entry(body).or_insert(0) += 1;
                }
                seen.len() == 3
            }),
            "not every replica answered through the load balancer: {seen:?}\n{}",
            fleet.logs("lb")
        );
        fleet
    }

    /// The Compose command and the options that name this project.
    fn command(&self) -> Vec<String> {
        let compose = common::needs::compose().expect("Compose is here (checked by the harness)");
        let mut command: Vec<String> = compose.iter().map(|s| s.to_string()).collect();
        command.extend(
            [
                "-p",
                &self.project,
                "-f",
                "compose.yaml",
                "-f",
                "compose.redis.yaml",
                "-f",
                "compose.traces.yaml",
            ]
            .map(String::from),
        );
        command
    }

    fn compose(&self, args: &[&str]) -> Output {
        let command = self.command();
        Command::new(&command[0])
            .args(&command[1..])
            .args(args)
            .current_dir(workspace())
            .envs(Self::env())
            .output()
            .expect("Compose runs")
    }

    fn compose_ok(&self, args: &[&str]) -> String {
        succeeded(&self.compose(args), &format!("compose {}", args.join(" ")))
    }

    /// What compose.yaml reads: the images the tests built, loopback ports
    /// of their own.
    fn env() -> Vec<(String, String)> {
        let mut env = vec![
            ("REPLICA_IMAGE".to_string(), IMAGE.to_string()),
            ("LB_IMAGE".to_string(), LB_IMAGE.to_string()),
            ("REDIS_IMAGE".to_string(), REDIS_IMAGE.to_string()),
            ("COLLECTOR_IMAGE".to_string(), COLLECTOR_IMAGE.to_string()),
            ("LB_PORT".to_string(), LB_PORT.to_string()),
        ];
        for (i, port) in REPLICA_PORTS.iter().enumerate() {
            env.push((format!("REPLICA_PORT_{}", i + 1), port.to_string()));
        }
        env
    }

    fn container(&self, service: &str) -> String {
        let id = self.compose_ok(&["ps", "-q", service]);
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn logs(&self, service: &str) -> String {
        text(&docker(&["logs", &self.container(service)]))
    }

    /// Runs the repository's rolling upgrade script on this fleet.
    fn upgrade(&self, replace: bool, component: &Path) {
        let mut cmd = Command::new(workspace().join("deploy/rolling-upgrade.sh"));
        if replace {
            cmd.arg("--replace");
        }
        let out = cmd
            .arg(component)
            .current_dir(workspace())
            .env("COMPOSE", self.command().join(" "))
            .envs(Self::env())
            .output()
            .expect("the upgrade script runs");
        assert!(
            out.status.success(),
            "rolling upgrade failed: {}",
            text(&out)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }

    /// Waits for the load balancer to log `line`; how long it took.
    fn lb_logs(&self, line: &str, since: Instant) -> Duration {
        assert!(
            eventually(Duration::from_secs(30), || self.logs("lb").contains(line)),
            "the load balancer never logged {line:?}:\n{}",
            self.logs("lb")
        );
        since.elapsed()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "2"]);
    }
}

/// A client's `traceparent`, sent to HAProxy: the replica that answers
/// joins the trace, and the collector receives its span, under the client's.
fn a_trace_sent_to_the_load_balancer_reaches_a_replica(fleet: &Fleet) {
    let trace_id = format!("{:08x}0000000000000000000000fe", std::process::id());
    let parent = "00000000000000fe";
    let req = ureq::http::Request::builder()
        .uri(lb_url())
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .body(())
        .expect("a request");
    let reply = common::client().run(req).expect("an answer");
    assert_eq!(reply.status().as_u16(), 200);
    let mut found = None;
    let arrived = eventually(Duration::from_secs(30), || {
        found = common::collector::parse(&fleet.logs("collector"))
            .into_iter()
            .find(|span| span.trace_id == trace_id && span.kind == "SERVER");
        found.is_some()
    });
    assert!(
        arrived,
        "no span of the trace:\n{}",
        fleet.logs("collector")
    );
    let span = found.expect("found");
    assert_eq!(span.parent_id, parent);
    assert_eq!(span.name, "GET /home");
    let replica = span
        .resource
        .get("service.instance.id")
        .cloned()
        .unwrap_or_default();
    assert!(["1", "2", "3"].contains(&replica.as_str()), "{span:#?}");
    println!("a traceparent sent to HAProxy: replica {replica}'s span joined the trace");
}

fn lb_url() -> String {
    format!("http://127.0.0.1:{LB_PORT}/home")
}

fn fetch(url: &str) -> Option<String> {
    common::request(&common::client(), "GET", url)
        .ok()
        .filter(|r| r.status == 200)
        .map(|r| r.body)
}

/// What the load saw: answers by body, and every failure.
#[derive(Debug, Default)]
struct Seen {
    bodies: BTreeMap<String, usize>,
    failed: Vec<String>,
}

impl Seen {
    fn requests(&self) -> usize {
        self.bodies.values().sum::<usize>() + self.failed.len()
    }
}

/// Constant load through the load balancer: CLIENTS clients with keep-alive
/// connections, until stopped or MAX_REQUESTS were sent.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<Seen>>,
}

impl Load {
    fn start() -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let clients = (0..CLIENTS)
            .map(|_| {
                let (stop, sent) = (stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    let agent = common::client();
                    let mut seen = Seen::default();
                    while !stop.load(Ordering::Relaxed)
                        && sent.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS
                    {
                        match common::request(&agent, "GET", &lb_url()) {
                            Ok(reply) if reply.status == 200 => {
                                *seen.bodies.entry(reply.body).or_insert(0) += 1;
                            }
                            Ok(reply) => seen
                                .failed
                                .push(format!("{}: {}", reply.status, reply.body)),
                            Err(e) => seen.failed.push(e.to_string()),
                        }
                        std::thread::sleep(PACE);
                    }
                    seen
                })
            })
            .collect();
        Load { stop, clients }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Seen::default();
        for client in self.clients {
            let seen = client.join().expect("a client");
            for (body, n) in seen.bodies {
                *all.bodies.entry(body).or_insert(0) += n;
            }
            all.failed.extend(seen.failed);
        }
        all
    }
}

fn assert_none_failed(phase: &str, seen: &Seen) {
    println!(
        "{phase}: {} requests through the load balancer, {} failed",
        seen.requests(),
        seen.failed.len()
    );
    assert!(
        seen.failed.is_empty(),
        "{phase}: {} of {} requests failed: {:?}",
        seen.failed.len(),
        seen.requests(),
        &seen.failed[..seen.failed.len().min(5)]
    );
}

fn replica_home(id: usize) -> String {
    format!(r#"{{"message":"Hello from Server: {id}","status":"successful"}}"#)
}

fn a_fleet_behind_haproxy_upgrades_and_loses_replicas_without_failing_a_request() {
    let fleet = Fleet::up();
    a_trace_sent_to_the_load_balancer_reaches_a_replica(&fleet);

    // A rolling upgrade by hot swap: the component into each replica's
    // volume, SIGHUP, one replica at a time.
    let load = Load::start();
    fleet.upgrade(false, &faulty_guest());
    let seen = load.finish();
    assert_none_failed("rolling upgrade by hot swap", &seen);
    assert!(
        seen.bodies.contains_key(&replica_home(1)) && seen.bodies.contains_key(FAULTY_HOME),
        "the answers never switched: {:?}",
        seen.bodies
    );
    for _ in 0..6 {
        assert_eq!(fetch(&lb_url()).as_deref(), Some(FAULTY_HOME));
    }

    // A rolling upgrade by container replacement, back to the replica guest:
    // each stopped (drained), given the component, started, healthy.
    let load = Load::start();
    fleet.upgrade(true, &replica_guest());
    let seen = load.finish();
    assert_none_failed("rolling upgrade by container replacement", &seen);
    assert!(
        seen.bodies.contains_key(FAULTY_HOME) && seen.bodies.contains_key(&replica_home(1)),
        "the answers never switched: {:?}",
        seen.bodies
    );
    let mut after = BTreeMap::new();
    for _ in 0..9 {
        *after
            .entry(fetch(&lb_url()).unwrap_or_default())
            .or_insert(0) += 1;
    }
    assert!(
        after
            .keys()
            .all(|body| (1..=3).any(|id| *body == replica_home(id))),
        "{after:?}"
    );

    // SIGKILL: the load balancer takes the replica out on its first failed
    // check, and retries what was in flight on it elsewhere.
    let load = Load::start();
    std::thread::sleep(Duration::from_millis(500));
    let replica2 = fleet.container("replica2");
    let killed = Instant::now();
    docker_ok(&["kill", &replica2]);
    let detected = fleet.lb_logs("replica2 is DOWN", killed);
    std::thread::sleep(Duration::from_secs(1));
    let restarted = Instant::now();
    docker_ok(&["start", &replica2]);
    let recovered = fleet.lb_logs("replica2 is UP", restarted);
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.finish();
    println!(
        "replica2 killed: out of rotation {detected:?} after the kill; started again, back in \
         rotation {recovered:?} after the start"
    );
    assert_none_failed("a replica killed and started again", &seen);
    assert!(
        seen.bodies.contains_key(&replica_home(2)),
        "{:?}",
        seen.bodies
    );
    // Deadlines several times the 200 ms check interval.
    assert!(detected < Duration::from_secs(3), "{detected:?}");
    assert!(recovered < Duration::from_secs(5), "{recovered:?}");

    // `docker stop`: SIGTERM, the replica drains while the load balancer
    // moves its traffic to the others.
    let load = Load::start();
    std::thread::sleep(Duration::from_millis(500));
    fleet.compose_ok(&["stop", "-t", "10", "replica3"]);
    std::thread::sleep(Duration::from_millis(500));
    let seen = load.finish();
    assert_none_failed("a replica stopped (drained)", &seen);
    assert_eq!(
        docker_ok(&[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &fleet.container("replica3")
        ]),
        "0"
    );
    // The replicas' own ports stay reachable.
    assert_eq!(
        fetch(&format!("http://127.0.0.1:{}/home", REPLICA_PORTS[0])),
        Some(replica_home(1))
    );

    // A guest that keeps a counter in wasi:keyvalue, on every replica (the
    // stopped one started again): increments spread over the three by the
    // load balancer land in the one Redis, each exactly once.
    fleet.compose_ok(&["start", "replica3"]);
    let replica3 = fleet.container("replica3");
    assert!(
        eventually(Duration::from_secs(30), || {
            docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &replica3]) == "healthy"
        }),
        "replica3 never turned healthy again"
    );
    fleet.upgrade(false, &stateful_guest());
    let total = count_through_the_load_balancer();
    println!("{total} increments through the load balancer, each counted once");
    let stored = fleet.compose_ok(&[
        "exec",
        "-T",
        "redis",
        "redis-cli",
        "HGET",
        "wasi:keyvalue:",
        "hits",
    ]);
    assert_eq!(stored, total.to_string());
}

/// Increments the shared counter through the load balancer from CLIENTS
/// clients, a connection per request; checks that every increment got a
/// count of its own (none lost, none doubled: a store per replica would
/// give each replica's first increment a 1); returns how many.
fn count_through_the_load_balancer() -> usize {
    let url = format!("http://127.0.0.1:{LB_PORT}/kv/incr?key=hits");
    // A connection per request, so that the load balancer spreads them.
    common::assert_increments_count_once(CLIENTS, 50, |_| url.clone(), true)
}
