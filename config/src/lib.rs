//! The replica host's configuration: one clap `Parser`, whose doc comments are
//! the `--help` text, and the checks clap cannot make. A crate of its own so
//! that its parsing is unit-tested and fuzzed without building wasmtime.

use anyhow::{Context as _, Result, bail};
use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What `--version` says: this host's version (the workspace's one, which
/// this crate shares), and the wasmtime it runs guests on.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (wasmtime 48)");

/// `--max-concurrency` by default; it also sizes the engine's instance pool.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 256;

/// `--max-memory-mib` by default.
pub const DEFAULT_MAX_MEMORY_MIB: u32 = 64;

/// `--keyvalue-max-bytes` by default: what the in-memory store may hold.
pub const DEFAULT_KEYVALUE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// `--keyvalue-max-value-bytes` by default (Spin's limit too).
pub const DEFAULT_KEYVALUE_MAX_VALUE_BYTES: u64 = 1024 * 1024;

/// Where `make build` (and `cargo build --profile guest`) puts the guest.
pub const DEFAULT_COMPONENT: &str = "target/wasm32-wasip2/guest/replica_guest.wasm";

/// Serves a wasi:http/proxy WebAssembly component as a replica server.
///
/// The component answers every request; this host gives it the replica's
/// SERVER_ID, listens on port 5000, and keeps serving whatever the guest does.
/// Without a subcommand it serves; the subcommands check, precompile and probe.
#[derive(Parser, Debug)]
#[command(
    name = "replica-host",
    version = VERSION,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: Config,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check that a component can be served here: print what it imports and
    /// exports, and whether this host provides and expects them. Exits 0 if it can.
    /// Reads and fills the compile cache that serving uses.
    Check {
        /// The component (.wasm) to check.
        component: PathBuf,
        /// Also load a precompiled component (.cwasm): native code, trusted.
        #[arg(long)]
        allow_precompiled: bool,
        #[command(flatten)]
        cache: Cache,
    },
    /// Precompile a component for this host, so that serving it skips the compile:
    /// into the compile cache that serving the .wasm looks in (by default), or into
    /// a .cwasm file to serve as the COMPONENT (-o). Either only loads on this
    /// version of the host with the same settings; the cache falls back to compiling.
    Compile {
        /// The component (.wasm) to compile.
        component: PathBuf,
        /// Write the precompiled component (.cwasm) here instead of into the cache.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        cache: Cache,
    },
    /// GET a URL (by default this host's /heartbeat) and exit 0 if it answers 200,
    /// 1 otherwise: a health check for containers that have no curl.
    Probe {
        /// The URL to probe [default: http://127.0.0.1:<port of REPLICA_ADDR, or
        /// 5000>/heartbeat; https:// when REPLICA_TLS_CERT is set, and then any
        /// certificate is accepted: it is this host's own].
        url: Option<String>,
        /// Accept any certificate from an https:// URL (a self-signed one, say).
        #[arg(long)]
        insecure: bool,
        /// How long to wait for the answer.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The service name traces give when none is: neither `OTEL_SERVICE_NAME`,
/// `--service-name` nor `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
pub const DEFAULT_SERVICE_NAME: &str = "replica";

/// Serving: the flags of `replica-host [COMPONENT]`. An on/off flag's
/// environment variable takes 1/0, true/false, yes/no or on/off.
#[derive(Parser, Debug)]
#[command(name = "replica-host", version = VERSION)]
pub struct Config {
    /// The wasi:http/proxy component to serve (.wasm).
    #[arg(env = "REPLICA_COMPONENT", default_value = DEFAULT_COMPONENT)]
    pub component: PathBuf,

    /// This replica's id, given to the guest as its SERVER_ID environment variable.
    #[arg(long, env = "SERVER_ID", value_name = "ID")]
    pub server_id: Option<String>,

    /// An extra environment variable for the guest, as NAME=VALUE, or as NAME
    /// to pass on the host's own NAME (as `wasmtime serve --env NAME`); repeat
    /// for more. The host's own environment never reaches the guest otherwise.
    #[arg(long = "env", value_name = "NAME[=VALUE]", value_parser = parse_env_var)]
    pub envs: Vec<EnvVar>,

    /// A setting the guest reads through wasi:config/store or Spin's variables, as KEY=VALUE;
    /// repeat for more, or give several, one per line (as the environment
    /// variable does). SERVER_ID is there too; nothing else is.
    #[arg(long = "config", env = "REPLICA_CONFIG", value_name = "KEY=VALUE", value_parser = parse_pairs)]
    pub configs: Vec<Pairs>,

    /// A key and value the wasi:keyvalue store starts with, in the bucket
    /// named "" (as `wasmtime serve -Skeyvalue-in-memory-data`); repeat for
    /// more, or give several, one per line. With --keyvalue-url, written to
    /// Redis where the key is not set yet.
    #[arg(long = "keyvalue", env = "REPLICA_KEYVALUE", value_name = "KEY=VALUE", value_parser = parse_pairs)]
    pub keyvalue: Vec<Pairs>,

    /// A key and value the key-value store starts with in another bucket (the
    /// Spin store label, or the wasi:keyvalue bucket, a guest opens: Spin's and
    /// wasmCloud's guests open "default"), as BUCKET:KEY=VALUE; the bucket name
    /// ends at the first `:`. Repeat for more, or give several, one per line.
    #[arg(long = "keyvalue-in", env = "REPLICA_KEYVALUE_IN", value_name = "BUCKET:KEY=VALUE", value_parser = parse_bucket_pairs)]
    pub keyvalue_in: Vec<BucketPairs>,

    /// Keep the wasi:keyvalue store in Redis instead of this process's memory:
    /// redis://[USER:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS. Every
    /// replica given the same URL shares one store. The password is never logged.
    #[arg(long, env = "REPLICA_KEYVALUE_URL", hide_env_values = true, value_name = "URL", value_parser = StoreUrl::parse)]
    pub keyvalue_url: Option<StoreUrl>,

    /// The most bytes the in-memory wasi:keyvalue store holds (bucket names,
    /// keys and values); a write past it fails, and the guest is told why.
    #[arg(long, env = "REPLICA_KEYVALUE_MAX_BYTES", default_value_t = DEFAULT_KEYVALUE_MAX_BYTES)]
    pub keyvalue_max_bytes: u64,

    /// The largest value one wasi:keyvalue key may hold, in memory or in Redis;
    /// a bigger write fails, and the guest is told why.
    #[arg(long, env = "REPLICA_KEYVALUE_MAX_VALUE_BYTES", default_value_t = DEFAULT_KEYVALUE_MAX_VALUE_BYTES)]
    pub keyvalue_max_value_bytes: u64,

    /// How long one wasi:keyvalue call may wait for Redis; past it the guest's
    /// call fails (with `error::other`), and the request goes on.
    #[arg(long, env = "REPLICA_KEYVALUE_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub keyvalue_timeout: Duration,

    /// How log lines are written; RUST_LOG filters them (e.g. RUST_LOG=debug).
    #[arg(long, env = "REPLICA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log one line per request (method, path, status, latency, request id);
    /// the same as adding `access=info` to RUST_LOG.
    #[arg(long, env = "REPLICA_ACCESS_LOG", value_parser = BoolishValueParser::new())]
    pub access_log: bool,

    /// Export traces over OTLP to this collector (http://HOST:4318 for
    /// http/protobuf, http://HOST:4317 for grpc); off unless this or
    /// --otlp-traces-endpoint is given. The other OTEL_* variables (headers,
    /// timeout, sampler, resource attributes, batching) are read as the
    /// OpenTelemetry SDK reads them; OTEL_SDK_DISABLED=true turns it all off.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// Where traces go, over the endpoint for every signal: the full URL
    /// (for http/protobuf, with its /v1/traces path).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", value_name = "URL")]
    pub otlp_traces_endpoint: Option<String>,

    /// How traces are sent: http/protobuf or grpc
    /// (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins over this).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_name = "PROTOCOL", default_value = "http/protobuf", value_parser = ["http/protobuf", "grpc"])]
    pub otlp_protocol: String,

    /// The service the traces name (the resource's service.name).
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = DEFAULT_SERVICE_NAME, value_name = "NAME")]
    pub service_name: String,

    /// Serve Prometheus metrics at http://ADDR/metrics (off unless given).
    #[arg(long, env = "REPLICA_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// A request path counted under its own `route` label in the metrics;
    /// repeat (or separate with commas) for more. Every other path is
    /// counted as `other`, so clients cannot grow the label set.
    #[arg(long = "metrics-route", env = "REPLICA_METRICS_ROUTES", value_name = "PATH", value_delimiter = ',', value_parser = parse_route)]
    pub metrics_routes: Vec<String>,

    #[command(flatten)]
    pub cache: Cache,

    /// Serve a precompiled component (.cwasm) given as COMPONENT, at start and on
    /// reloads. Off by default: it is native code run outside the sandbox, as
    /// trusted as whoever can write the file. The host's own compile cache is
    /// not affected.
    #[arg(long, env = "REPLICA_ALLOW_PRECOMPILED", value_parser = BoolishValueParser::new())]
    pub allow_precompiled: bool,

    /// The address to listen on: HTTP/1.1 and HTTP/2 (cleartext, by prior
    /// knowledge), told apart per connection; over TLS with --tls-cert.
    #[arg(long, env = "REPLICA_ADDR", default_value = "0.0.0.0:5000")]
    pub addr: SocketAddr,

    /// Serve TLS with this certificate chain (PEM), offering HTTP/2 and
    /// HTTP/1.1 by ALPN; needs --tls-key. Read again on SIGHUP.
    #[arg(
        long,
        env = "REPLICA_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        env = "REPLICA_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// The most streams one HTTP/2 connection may have open at once.
    #[arg(long, env = "REPLICA_MAX_STREAMS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_streams: u32,

    /// The most requests served at once; one more gets a fast 503. Each holds one
    /// guest instance, so this also sizes the instance pool.
    #[arg(long, env = "REPLICA_MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrency: u32,

    /// How many requests one guest instance serves before it is replaced. An
    /// instance whose request failed is never reused, whatever this says.
    #[arg(long, env = "REPLICA_MAX_INSTANCE_REUSE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instance_reuse: u32,

    /// How many requests one instance of a wasi:http 0.3 component serves at
    /// once (0.2 components serve one at a time). State can pass between the
    /// requests of one instance; a trap ends all of them.
    #[arg(long, env = "REPLICA_MAX_INSTANCE_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_instance_concurrency: u32,

    /// A fresh guest instance for every request: no state can pass between
    /// requests (the same as --max-instance-reuse 1 and, for 0.3 components,
    /// --max-instance-concurrency 1).
    #[arg(long, env = "REPLICA_STRICT", value_parser = BoolishValueParser::new())]
    pub strict: bool,

    /// How long an idle guest instance is kept for reuse before it is dropped.
    #[arg(long, env = "REPLICA_IDLE_INSTANCE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub idle_instance_timeout: Duration,

    /// The most memory one guest instance may use, in MiB: its linear memory
    /// and what its calls make the host hold (header fields, bodies in flight,
    /// outgoing requests, its resources), counted together. Past it, the
    /// instance's calls fail and it is never used again.
    #[arg(long, env = "REPLICA_MAX_MEMORY_MIB", default_value_t = DEFAULT_MAX_MEMORY_MIB, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_memory_mib: u32,

    /// Worker threads, each with its own listening socket, async runtime and
    /// guest instances; 0 means one per CPU.
    #[arg(long, env = "REPLICA_WORKERS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub workers: u32,

    /// How long a client may take to send a request's headers; a connection
    /// idle this long between requests is closed too.
    #[arg(long, env = "REPLICA_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// How long writing a response may make no progress (a client that
    /// stopped reading) before the connection is closed and what it held is
    /// freed.
    #[arg(long, env = "REPLICA_WRITE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// The most bytes of request headers accepted; more gets a 431.
    #[arg(long, env = "REPLICA_MAX_HEADER_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(1024..=1024 * 1024))]
    pub max_header_bytes: u32,

    /// The slowest a request body may arrive, in bytes a second, once
    /// --body-rate-grace is over: each this many bytes buy a second more (as
    /// Apache's mod_reqtimeout MinRate). A body slower than that is cut with
    /// a 408. 0 turns the floor off.
    #[arg(
        long,
        env = "REPLICA_MIN_BODY_RATE",
        default_value_t = 500,
        value_name = "BYTES"
    )]
    pub min_body_rate: u64,

    /// How long a request body may take before --min-body-rate applies.
    #[arg(long, env = "REPLICA_BODY_RATE_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub body_rate_grace: Duration,

    /// The most bytes of request body accepted; more gets a 413.
    #[arg(long, env = "REPLICA_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: u64,

    /// Reload the component when its file changes (it is always reloaded on SIGHUP).
    #[arg(long, env = "REPLICA_WATCH", value_parser = BoolishValueParser::new())]
    pub watch: bool,

    /// A host the guest may send HTTP requests to, as HOST or HOST:PORT;
    /// repeat for more. Without it, every outgoing request is refused.
    #[arg(long = "allow-outbound", value_name = "HOST[:PORT]", value_parser = parse_host_port)]
    pub allow_outbound: Vec<HostPort>,

    /// The authority a guest is given for a request that names none: an
    /// HTTP/1.0 request without Host (as HAProxy's `option httpchk` sends), or
    /// an HTTP/2 one without :authority [default: the address the connection
    /// came in on]. An HTTP/1.1 request without Host is still refused.
    #[arg(long, env = "REPLICA_AUTHORITY", value_name = "HOST[:PORT]", value_parser = parse_host_port)]
    pub authority: Option<HostPort>,

    /// How long a request may run in the guest before it is cut off with a 504.
    #[arg(long, env = "REPLICA_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    /// Docker kills a container 10 s after SIGTERM, so the default stays below that.
    #[arg(long, env = "REPLICA_SHUTDOWN_GRACE", default_value = "8s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
}

impl Config {
    /// The compile cache's directory, if caching is on.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache.dir()
    }

    /// Requests one instance serves: 1 in strict mode.
    pub fn instance_reuse(&self) -> u32 {
        if self.strict {
            1
        } else {
            self.max_instance_reuse
        }
    }

    /// Worker threads: `--workers`, or one per CPU.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        }
    }

    /// Requests one 0.3 instance serves at once: 1 in strict mode.
    pub fn instance_concurrency(&self) -> u32 {
        if self.strict {
            1
        } else {
            self.max_instance_concurrency
        }
    }

    /// Checks what clap cannot, before anything is compiled or bound, and
    /// returns the guest's environment, taking `--env NAME` from the host's.
    pub fn guest_env(&self) -> Result<GuestEnv> {
        self.guest_env_from(|name| std::env::var_os(name))
    }

    /// [`Config::guest_env`], reading the host's variables with `host`.
    pub fn guest_env_from(
        &self,
        host: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<GuestEnv> {
        let server_id = self.checked_server_id()?;
        let mut env = GuestEnv {
            vars: vec![("SERVER_ID".to_string(), server_id.to_string())],
            unset: Vec::new(),
        };
        for var in &self.envs {
            if var.name == "SERVER_ID" {
                bail!("--env SERVER_ID is ambiguous: pass the id with --server-id instead");
            }
            if env.vars.iter().any(|(k, _)| *k == var.name) || env.unset.contains(&var.name) {
                bail!("--env {} is given twice: keep one", var.name);
            }
            let value = match &var.value {
                Some(value) => value.clone(),
                None => match host(&var.name) {
                    Some(value) => value.into_string().map_err(|_| {
                        anyhow::anyhow!(
                            "--env {}: the host's {} is not valid UTF-8, which a guest's \
                             environment must be: give it as --env {}=VALUE",
                            var.name,
                            var.name,
                            var.name
                        )
                    })?,
                    None => {
                        env.unset.push(var.name.clone());
                        continue;
                    }
                },
            };
            env.vars.push((var.name.clone(), value));
        }
        Ok(env)
    }

    /// What the key-value store starts with, as (bucket, key, value), in
    /// order: `--keyvalue` (the bucket ""), then `--keyvalue-in`.
    pub fn keyvalue_preload(&self) -> Vec<(String, String, String)> {
        let plain = self
            .keyvalue
            .iter()
            .flat_map(|pairs| pairs.0.iter())
            .map(|(key, value)| (String::new(), key.clone(), value.clone()));
        let in_buckets = self.keyvalue_in.iter().flat_map(|pairs| pairs.0.clone());
        plain.chain(in_buckets).collect()
    }

    /// What the guest reads through wasi:config/store: SERVER_ID, then the
    /// `--config` settings. Checks them as [`Config::guest_env`] does.
    pub fn guest_config(&self) -> Result<Vec<(String, String)>> {
        let server_id = self.checked_server_id()?;
        let mut config = vec![("SERVER_ID".to_string(), server_id.to_string())];
        for (key, value) in self.configs.iter().flat_map(|pairs| &pairs.0) {
            if key == "SERVER_ID" {
                bail!("--config SERVER_ID=… is ambiguous: pass the id with --server-id instead");
            }
            if config.iter().any(|(k, _)| k == key) {
                bail!("--config {key}=… is given twice: keep one");
            }
            config.push((key.clone(), value.clone()));
        }
        Ok(config)
    }

    fn checked_server_id(&self) -> Result<&str> {
        let Some(server_id) = &self.server_id else {
            bail!(
                "no SERVER_ID given: set the SERVER_ID environment variable \
                 (e.g. `SERVER_ID=1`) or pass --server-id"
            );
        };
        if server_id.is_empty() {
            bail!("SERVER_ID is empty: give this replica a non-empty id");
        }
        Ok(server_id)
    }
}

/// The compile cache, shared by serving, `check` and `compile`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Cache {
    /// Where compiled components are cached, so that a restart does not
    /// recompile [default: $XDG_CACHE_HOME/replica-host or ~/.cache/replica-host].
    #[arg(long, env = "REPLICA_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile the component every time instead of caching it.
    #[arg(long, env = "REPLICA_NO_CACHE", value_parser = BoolishValueParser::new())]
    pub no_cache: bool,
}

impl Cache {
    /// The cache's directory, if caching is on.
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            return None;
        }
        self.cache_dir.clone().or_else(default_cache_dir)
    }
}

/// One `--env`: NAME=VALUE, or NAME alone for the host's own NAME.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    /// `None`: the host's variable of that name, if it has one.
    pub value: Option<String>,
}

/// The guest's environment, and the `--env NAME` the host did not have.
#[derive(Debug)]
pub struct GuestEnv {
    /// SERVER_ID first, then the `--env` variables in order.
    pub vars: Vec<(String, String)>,
    /// Names passed as `--env NAME` that are not set on the host: the guest
    /// does not get them (as under `wasmtime serve`), and the host says so.
    pub unset: Vec<String>,
}

/// Where the wasi:keyvalue store lives when not in memory: a Redis URL.
/// Shown (`Display`, `Debug`) without its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    url: String,
    shown: String,
}

impl StoreUrl {
    /// Checks the URL's form: redis:// or rediss://, a host, an optional port
    /// and database number.
    pub fn parse(s: &str) -> Result<Self> {
        let usage = "write it as redis://[USER:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS";
        let uri: http::Uri = s
            .parse()
            .map_err(|_| anyhow::anyhow!("the key-value URL is not a URL: {usage}"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "redis" && scheme != "rediss" {
            bail!("the key-value URL's scheme is not redis:// or rediss://: {usage}");
        }
        let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
            bail!("the key-value URL names no host: {usage}");
        };
        let db = uri.path().trim_start_matches('/');
        if !db.is_empty() && db.parse::<u32>().is_err() {
            bail!("the key-value URL's database `{db}` is not a number: {usage}");
        }
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, host)| host);
        let path = if db.is_empty() {
            String::new()
        } else {
            format!("/{db}")
        };
        Ok(Self {
            url: s.to_string(),
            shown: format!("{scheme}://{host_port}{path}"),
        })
    }

    /// The whole URL, credentials included: for the Redis client only.
    pub fn secret(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({})", self.shown)
    }
}

/// What `probe` GETs without a URL: this host's /heartbeat on loopback, on the
/// port of `addr` (the serving address, as `REPLICA_ADDR` holds it) or 5000,
/// over TLS if the host serves it.
pub fn default_probe_url(addr: Option<&str>, tls: bool) -> String {
    let port = addr
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map_or(5000, |a| a.port());
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:{port}/heartbeat")
}

/// Where compiled components are kept unless `--cache-dir` says otherwise:
/// `$XDG_CACHE_HOME/replica-host`, else `$HOME/.cache/replica-host`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("replica-host"))
}

/// Parses `--env`: `NAME=VALUE` (the value may be empty and may contain
/// `=`), or `NAME` alone.
pub fn parse_env_var(s: &str) -> Result<EnvVar> {
    let (name, value) = match s.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (s, None),
    };
    if name.is_empty() {
        bail!("`{s}` has an empty name: write it as NAME=VALUE, or NAME to pass the host's own");
    }
    if s.contains('\0') {
        bail!("`{s}` contains a NUL byte, which no environment variable may hold");
    }
    Ok(EnvVar {
        name: name.to_string(),
        value: value.map(str::to_string),
    })
}

/// Settings given as KEY=VALUE lines (`--config`, `--keyvalue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pairs(pub Vec<(String, String)>);

/// Parses one or more `KEY=VALUE` lines; blank lines (a trailing newline in
/// an environment variable, say) are skipped.
pub fn parse_pairs(s: &str) -> Result<Pairs> {
    let pairs = s
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_key_value)
        .collect::<Result<Vec<_>>>()?;
    if pairs.is_empty() {
        bail!("`{s}` holds no KEY=VALUE");
    }
    Ok(Pairs(pairs))
}

/// Settings given as BUCKET:KEY=VALUE lines (`--keyvalue-in`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPairs(pub Vec<(String, String, String)>);

/// Parses one or more `BUCKET:KEY=VALUE` lines: the bucket ends at the
/// first `:`, and may not be empty (the bucket "" is `--keyvalue`'s).
pub fn parse_bucket_pairs(s: &str) -> Result<BucketPairs> {
    let entries = s
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (bucket, pair) = line.split_once(':').with_context(|| {
                format!("`{line}` names no bucket: write it as BUCKET:KEY=VALUE")
            })?;
            if bucket.is_empty() {
                bail!("`{line}` has an empty bucket: use --keyvalue KEY=VALUE for the bucket \"\"");
            }
            let (key, value) = parse_key_value(pair)?;
            Ok((bucket.to_string(), key, value))
        })
        .collect::<Result<Vec<_>>>()?;
    if entries.is_empty() {
        bail!("`{s}` holds no BUCKET:KEY=VALUE");
    }
    Ok(BucketPairs(entries))
}

/// Parses `KEY=VALUE`; the value may be empty and may contain `=`.
pub fn parse_key_value(s: &str) -> Result<(String, String)> {
    let (key, value) = s
        .split_once('=')
        .with_context(|| format!("`{s}` has no `=`: write it as KEY=VALUE"))?;
    if key.is_empty() {
        bail!("`{s}` has an empty key: write it as KEY=VALUE");
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses a `--metrics-route` path: it starts with `/` and has no query.
pub fn parse_route(s: &str) -> Result<String> {
    if !s.starts_with('/') || s.contains('?') {
        bail!("`{s}` is not a request path: write it as /path, without a query");
    }
    Ok(s.to_string())
}

/// A host and an optional port: what `--allow-outbound` and `--authority`
/// take, and how the host reads the authority of a guest's outgoing request,
/// so that the allow-list and the connection it allows read one parse. No
/// userinfo, no path; the host is lower-cased (an IPv6 literal keeps its
/// brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses `HOST` or `HOST:PORT`; refuses userinfo (`user@host`), an empty
    /// host, a path, and a port that is empty or not a number.
    pub fn parse(s: &str) -> Result<Self> {
        let usage = || format!("`{s}` is not a host: write it as HOST or HOST:PORT");
        let authority: http::uri::Authority = s.parse().with_context(usage)?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            bail!(usage());
        }
        // `Authority` takes `host:` and `host:abc` too; a port is digits.
        let after_host = &authority.as_str()[authority.host().len()..];
        if !after_host.is_empty() && authority.port_u16().is_none() {
            bail!(usage());
        }
        Ok(Self {
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Parses an `--allow-outbound` or `--authority` value: [`HostPort::parse`].
pub fn parse_host_port(s: &str) -> Result<HostPort> {
    HostPort::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["replica-host"];
        argv.extend_from_slice(args);
        Config::try_parse_from(argv).expect("valid arguments")
    }

    #[test]
    fn subcommands_and_serving_flags_are_told_apart() {
        let cli = Cli::try_parse_from(["replica-host", "check", "x.wasm"]).expect("valid");
        assert!(
            matches!(cli.command, Some(Command::Check { component, allow_precompiled: false, .. }) if component == Path::new("x.wasm"))
        );
        let cli = Cli::try_parse_from(["replica-host", "compile", "x.wasm", "-o", "x.cwasm"])
            .expect("valid");
        assert!(
            matches!(cli.command, Some(Command::Compile { output: Some(output), .. }) if output == Path::new("x.cwasm"))
        );
        let cli = Cli::try_parse_from(["replica-host", "compile", "x.wasm", "--cache-dir", "c"])
            .expect("valid");
        assert!(
            matches!(cli.command, Some(Command::Compile { output: None, cache, .. }) if cache.dir() == Some("c".into()))
        );
        let cli =
            Cli::try_parse_from(["replica-host", "other.wasm", "--server-id", "2"]).expect("valid");
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.component, Path::new("other.wasm"));
        assert_eq!(cli.serve.server_id.as_deref(), Some("2"));
    }

    #[test]
    fn the_version_names_this_host() {
        use clap::CommandFactory as _;
        let command = Cli::command();
        assert_eq!(command.get_name(), "replica-host");
        assert!(
            command.render_version().starts_with("replica-host 0."),
            "{}",
            command.render_version()
        );
        assert!(command.render_version().contains("wasmtime"));
    }

    #[test]
    fn probe_defaults_to_the_serving_port() {
        assert_eq!(
            default_probe_url(None, false),
            "http://127.0.0.1:5000/heartbeat"
        );
        assert_eq!(
            default_probe_url(Some("0.0.0.0:8080"), false),
            "http://127.0.0.1:8080/heartbeat"
        );
        assert_eq!(
            default_probe_url(Some("nonsense"), false),
            "http://127.0.0.1:5000/heartbeat"
        );
        assert_eq!(
            default_probe_url(Some("0.0.0.0:8443"), true),
            "https://127.0.0.1:8443/heartbeat"
        );
    }

    fn var(name: &str, value: Option<&str>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    #[test]
    fn env_var_splits_at_the_first_equals() {
        assert_eq!(
            parse_env_var("A=b=c").expect("valid"),
            var("A", Some("b=c"))
        );
        assert_eq!(parse_env_var("A=").expect("valid"), var("A", Some("")));
    }

    #[test]
    fn env_var_without_equals_names_a_host_variable() {
        assert_eq!(parse_env_var("HOME").expect("valid"), var("HOME", None));
        assert!(parse_env_var("=b").is_err());
        assert!(parse_env_var("").is_err());
        assert!(parse_env_var("A=\0").is_err());
        assert!(parse_env_var("A\0").is_err());
    }

    #[test]
    fn env_name_passes_the_hosts_value_through_or_is_reported_unset() {
        let c = config(&["--server-id", "1", "--env", "SET", "--env", "UNSET"]);
        let env = c
            .guest_env_from(|name| (name == "SET").then(|| "from-host".into()))
            .expect("valid");
        assert_eq!(
            env.vars,
            vec![
                ("SERVER_ID".into(), "1".into()),
                ("SET".into(), "from-host".into())
            ]
        );
        assert_eq!(env.unset, ["UNSET"]);
        let twice = config(&["--server-id", "1", "--env", "X", "--env", "X=1"]);
        assert!(twice.guest_env_from(|_| None).is_err());
        let id = config(&["--server-id", "1", "--env", "SERVER_ID"]);
        assert!(id.guest_env_from(|_| Some("2".into())).is_err());
    }

    #[test]
    fn settings_come_one_per_line_and_blank_lines_are_skipped() {
        let pairs = parse_pairs("a=1\n\nb=2=3\n").expect("valid");
        assert_eq!(
            pairs.0,
            vec![("a".into(), "1".into()), ("b".into(), "2=3".into())]
        );
        assert!(parse_pairs("").is_err());
        assert!(parse_pairs("a=1\nnovalue").is_err());
        let c = config(&["--keyvalue", "x=1\ny=2", "--keyvalue", "z=3"]);
        assert_eq!(c.keyvalue_preload().len(), 3);
        let c = config(&[
            "--keyvalue",
            "x=1",
            "--keyvalue-in",
            "default:user:1=ann\ncache:k=",
        ]);
        assert_eq!(
            c.keyvalue_preload(),
            vec![
                ("".into(), "x".into(), "1".into()),
                ("default".into(), "user:1".into(), "ann".into()),
                ("cache".into(), "k".into(), "".into()),
            ]
        );
        for bad in ["k=v", ":k=v", "b:k", "b:=v", ""] {
            assert!(parse_bucket_pairs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_values_need_a_key_and_an_equals() {
        assert_eq!(
            parse_key_value("a=b=c").expect("valid"),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("a").is_err());
        assert!(parse_key_value("=b").is_err());
    }

    #[test]
    fn guest_config_starts_with_server_id_and_refuses_it_twice() {
        let c = config(&["--server-id", "7", "--config", "a=1", "--config", "b="]);
        assert_eq!(
            c.guest_config().expect("valid"),
            vec![
                ("SERVER_ID".into(), "7".into()),
                ("a".into(), "1".into()),
                ("b".into(), "".into())
            ]
        );
        let id = config(&["--server-id", "7", "--config", "SERVER_ID=8"]);
        assert!(id.guest_config().is_err());
        let twice = config(&["--server-id", "7", "--config", "a=1", "--config", "a=2"]);
        assert!(twice.guest_config().is_err());
    }

    #[test]
    fn store_urls_are_redis_and_shown_without_credentials() {
        let url = StoreUrl::parse("redis://user:s3cret@cache.internal:6380/2").expect("valid");
        assert_eq!(url.to_string(), "redis://cache.internal:6380/2");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.secret(), "redis://user:s3cret@cache.internal:6380/2");
        let tls = StoreUrl::parse("rediss://:pw@127.0.0.1").expect("valid");
        assert_eq!(tls.to_string(), "rediss://127.0.0.1");
        let insecure = StoreUrl::parse("rediss://cache:6380/#insecure").expect("valid");
        assert_eq!(insecure.secret(), "rediss://cache:6380/#insecure");
        for bad in [
            "http://cache:6379",
            "cache:6379",
            "redis://",
            "redis://cache/zero",
            "",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad}");
        }
        let c = config(&["--keyvalue-url", "redis://u:pw@h:1"]);
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn outbound_hosts_are_host_or_host_port() {
        let host = |s: &str| HostPort::parse(s).map(|h| h.to_string()).ok();
        assert_eq!(host("Example.com").as_deref(), Some("example.com"));
        assert_eq!(host("127.0.0.1:8080").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(host("[::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(
            HostPort::parse("a.example:81").ok(),
            Some(HostPort {
                host: "a.example".into(),
                port: Some(81)
            })
        );
        for bad in [
            "http://example.com/",
            "user@example.com",
            "127.0.0.1:1@localhost:2",
            "",
            "a b",
            "example.com:",
            "example.com:abc",
            "example.com/x",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn metrics_routes_are_paths_given_one_by_one_or_comma_separated() {
        let c = config(&[
            "--metrics-route",
            "/home,/heartbeat",
            "--metrics-route",
            "/x",
        ]);
        assert_eq!(c.metrics_routes, ["/home", "/heartbeat", "/x"]);
        assert!(parse_route("home").is_err());
        assert!(parse_route("/home?x=1").is_err());
    }

    #[test]
    fn guest_env_starts_with_server_id_then_extras() {
        let c = config(&["--server-id", "7", "--env", "X=1", "--env", "Y=2"]);
        assert_eq!(
            c.guest_env().expect("valid").vars,
            vec![
                ("SERVER_ID".into(), "7".into()),
                ("X".into(), "1".into()),
                ("Y".into(), "2".into())
            ]
        );
    }

    #[test]
    fn guest_env_rejects_missing_empty_or_shadowed_server_id() {
        // SERVER_ID may be set in the test's own environment, so the missing
        // case is made by hand; the flag wins over the variable otherwise.
        let mut missing = config(&[]);
        missing.server_id = None;
        let refusal = missing.guest_env().expect_err("no SERVER_ID");
        assert!(
            refusal.to_string().contains("no SERVER_ID given"),
            "{refusal}"
        );
        assert!(config(&["--server-id", ""]).guest_env().is_err());
        assert!(
            config(&["--server-id", "1", "--env", "SERVER_ID=2"])
                .guest_env()
                .is_err()
        );
        assert!(
            config(&["--server-id", "1", "--env", "X=1", "--env", "X=2"])
                .guest_env()
                .is_err()
        );
    }
}
