//! Thousands of malformed, truncated, oversized and random requests over raw
//! TCP; after every batch the host still answers /heartbeat correctly.

mod common;

use common::{Server, get, replica_guest};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

const CASES: usize = 3000;
const BATCH: usize = 100;

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const VALID: &str = "GET /heartbeat HTTP/1.1\r\nHost: t\r\n\r\n";

/// One hostile request, of a kind chosen at random.
fn case(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        // Random bytes.
        0 => {
            let n = rng.below(2048);
            rng.bytes(n)
        }
        // A valid request cut short anywhere.
        1 => VALID.as_bytes()[..rng.below(VALID.len())].to_vec(),
        // Odd methods, versions and targets.
        2 => format!(
            "{} {} {}\r\nHost: t\r\n\r\n",
            rng.pick(&["GET", "HEAD", "POST", "DELETE", "BREW", "", "G\0T", "get"]),
            rng.pick(&["/home", "/heartbeat", "*", "http://x/home", "/%zz", "/..%2f", "", "/home?\u{1}"]),
            rng.pick(&["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", "", "HTTX/1.1"]),
        )
        .into_bytes(),
        // Broken headers.
        3 => format!(
            "GET /home HTTP/1.1\r\nHost: t\r\n{}\r\n\r\n",
            rng.pick(&[
                "NoColon",
                ": empty-name",
                "Bad Name: x",
                "X: \u{7f}\u{0}",
                "Content-Length: -1",
                "Content-Length: 99999999999999999999",
                "Content-Length: 1\r\nContent-Length: 2",
                "Transfer-Encoding: chunked\r\nContent-Length: 3",
                "Transfer-Encoding: gzip",
            ])
        )
        .into_bytes(),
        // Oversized: a huge header or a huge target.
        4 => {
            let n = 10_000 + rng.below(200_000);
            if rng.below(2) == 0 {
                format!("GET /home HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "a".repeat(n)).into_bytes()
            } else {
                format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(n)).into_bytes()
            }
        }
        // A body that lies about its length, or bad chunking.
        5 => rng
            .pick(&[
                "POST /home HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nshort",
                "POST /home HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
                "POST /home HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
            ])
            .as_bytes()
            .to_vec(),
        // Valid requests pipelined with garbage after them.
        6 => {
            let mut bytes = VALID.repeat(1 + rng.below(4)).into_bytes();
            let n = rng.below(512);
            bytes.extend(rng.bytes(n));
            bytes
        }
        // Random bytes after a valid request line.
        _ => {
            let mut bytes = b"GET /home HTTP/1.1\r\n".to_vec();
            let n = rng.below(1024);
            bytes.extend(rng.bytes(n));
            bytes
        }
    }
}

/// What came back for the hostile requests: the status of every response
/// on the connection, by class, and connections closed with no response.
#[derive(Default, Debug)]
struct Tally {
    by_class: [usize; 6],
    closed: usize,
}

impl Tally {
    /// Counts every status line in `reply` (pipelined requests get several).
    fn add(&mut self, reply: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(reply);
        if !text.starts_with("HTTP/1.") {
            if !reply.is_empty() {
                return Err(format!("not an HTTP response: {text:?}"));
            }
            self.closed += 1;
            return Ok(());
        }
        // Status lines of HTTP/1.1 and HTTP/1.0 responses.
        for status in text
            .split("HTTP/1.")
            .skip(1)
            .map(|s| s.get(2..).unwrap_or(""))
        {
            let code: usize = status
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no status code in {text:?}"))?;
            if !(100..600).contains(&code) {
                return Err(format!("status {code} in {text:?}"));
            }
            self.by_class[code / 100] += 1;
        }
        Ok(())
    }
}

#[test]
fn thousands_of_hostile_requests_never_hurt_the_host() {
    let mut server = Server::start(
        &replica_guest(),
        &["--header-read-timeout", "1s"],
        &[("SERVER_ID", "1")],
    );
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut tally = Tally::default();
    // The requests that got a 5xx, for the failure message.
    let mut faulted = Vec::new();
    for batch in 0..CASES / BATCH {
        for _ in 0..BATCH {
            let bytes = case(&mut rng);
            let mut stream = TcpStream::connect(server.addr).expect("the host accepts");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let _ = stream.write_all(&bytes);
            let _ = stream.shutdown(Shutdown::Write);
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply);
            let server_errors = tally.by_class[5];
            if let Err(e) = tally.add(&reply) {
                panic!("for {:?}: {e}", String::from_utf8_lossy(&bytes));
            }
            if tally.by_class[5] > server_errors && faulted.len() < 5 {
                faulted.push((
                    String::from_utf8_lossy(&bytes).into_owned(),
                    String::from_utf8_lossy(&reply).into_owned(),
                ));
            }
        }
        let heartbeat = get(&server.url("/heartbeat"));
        assert_eq!(
            (heartbeat.status, heartbeat.body.as_str()),
            (200, ""),
            "after batch {batch}"
        );
        assert!(server.is_running(), "the host exited after batch {batch}");
    }
    let home = get(&server.url("/home"));
    assert_eq!(
        home.body,
        r#"{"message":"Hello from Server: 1","status":"successful"}"#
    );
    let [_, _, ok, _, client_errors, server_errors] = tally.by_class;
    println!(
        "{CASES} hostile requests: responses {ok} 2xx (valid pipelined requests), \
         {client_errors} 4xx, {server_errors} 5xx; {} connections closed without a response",
        tally.closed
    );
    // Nothing a client sends is the host's or the guest's fault.
    assert_eq!(server_errors, 0, "{tally:?}: {faulted:#?}");
    // The mix does reach both the parser's refusals and the guest.
    assert!(client_errors > 0 && ok > 0, "{tally:?}");
}
