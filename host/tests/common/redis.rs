//! A real Redis server (Debian's `redis-server`) for the tests, on a loopback
//! port of its own, without persistence, killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// Extra `redis-server` arguments, kept for a restart.
    args: Vec<String>,
    /// Arguments `redis-cli` needs to reach it (TLS, a password).
    cli: Vec<String>,
    dir: PathBuf,
}

impl Redis {
    /// A server on a free loopback port.
    pub fn start() -> Redis {
        Self::start_with(&[], &[])
    }

    /// A server given `args` (a password, say), reached by `redis-cli` with
    /// `cli`. `--tls-port`, given without a value, makes it serve TLS only,
    /// on its port.
    pub fn start_with(args: &[&str], cli: &[&str]) -> Redis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("replica-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for Redis");
        let mut redis = Redis {
            child: None,
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            cli: cli.iter().map(|a| a.to_string()).collect(),
            dir,
        };
        redis.run();
        redis
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let tls = self.args.iter().any(|a| a == "--tls-port");
        let mut cmd = Command::new("redis-server");
        if tls {
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(self.args.iter().filter(|a| *a != "--tls-port"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("redis-server starts"));
        let up = super::eventually(Duration::from_secs(10), || {
            self.cli_output(&["PING"])
                .is_some_and(|out| out.trim() == "PONG")
        });
        assert!(up, "redis-server never answered PING on port {}", self.port);
    }

    /// Kills the server (as a crash or an outage would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What `redis-cli` prints for `args`, failing the test if it cannot run.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_output(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed on port {}", self.port))
            .trim()
            .to_string()
    }

    fn cli_output(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli)
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
