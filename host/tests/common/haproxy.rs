//! A real HAProxy (Debian's `haproxy`) in front of one replica, on a loopback
//! port of its own, health-checking it as a configuration line says, with an
//! admin socket to read what it thinks of the replica. Killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Haproxy {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

/// What HAProxy says of the replica: `UP` or `DOWN` (or on the way), and its
/// last check's outcome (`L7OK`, `L7STS` with the status, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub status: String,
    pub check: String,
    pub check_code: String,
}

impl Haproxy {
    /// HAProxy in front of `replica`, checking it every 100 ms with `check`
    /// (lines of the backend, as `option httpchk GET /heartbeat`), taking it
    /// out at its first failed check as the course's balancers do.
    pub fn start(replica: SocketAddr, check: &[&str]) -> Haproxy {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("replica-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for HAProxy");
        let socket = dir.join("admin.sock");
        let config = format!(
            "global\n\
             \x20   stats socket {socket} mode 600 level admin\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 30s\n\
             \x20   timeout server 30s\n\
             \x20   timeout check 1s\n\
             frontend replicas\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   default_backend replicas\n\
             backend replicas\n\
             \x20   {check}\n\
             \x20   default-server inter 100ms fall 1 rise 1\n\
             \x20   server replica {replica} check\n",
            socket = socket.display(),
            check = check.join("\n    "),
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).expect("the configuration written");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts (apt-get install haproxy)");
        let haproxy = Haproxy { child, port, dir };
        assert!(
            super::eventually(Duration::from_secs(10), || haproxy.seen().is_some()),
            "HAProxy never answered on its admin socket"
        );
        haproxy
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What HAProxy thinks of the replica now, from `show stat`.
    pub fn seen(&self) -> Option<Seen> {
        let mut socket = UnixStream::connect(self.dir.join("admin.sock")).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).ok()?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| header.iter().position(|c| *c == name);
        let (status, check, code) = (
            column("status")?,
            column("check_status")?,
            column("check_code")?,
        );
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|row| row.get(1) == Some(&"replica"))
            .map(|row| Seen {
                status: row.get(status).unwrap_or(&"").to_string(),
                // `* ` marks a check under way: what follows is the last one's.
                check: row
                    .get(check)
                    .unwrap_or(&"")
                    .trim_start_matches("* ")
                    .to_string(),
                check_code: row.get(code).unwrap_or(&"").to_string(),
            })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
