//! replica-host: serves a wasi:http/proxy component as a replica server.
//!
//! The binary (`main.rs`) parses [`Config`] and calls [`run`]; the library
//! exists so that fuzz targets can reach the parsing the host does itself.

mod body;
mod cache;
pub mod commands;
mod handler;
mod logging;
mod metrics;
mod pool;
mod reload;
mod runtime;
mod server;
mod state;

pub use logging::init_logging;
pub use replica_config::Config;

use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::time::Duration;

/// How often `--watch` looks at the component file.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Serves until SIGTERM or SIGINT. Configuration and the component are checked
/// before the socket is bound, so a bad one fails at once.
pub fn run(config: Config) -> Result<()> {
    let env = config.guest_env()?;
    let limits = runtime::Limits::new(config.max_concurrency, config.max_memory_mib);
    let engine = runtime::engine(limits)?;
    let cache_dir = config.cache_dir();
    let pre = runtime::load_proxy(&engine, &config.component, cache_dir.as_deref())?;
    runtime::start_epoch_ticker(&engine)?;
    let metrics = config
        .metrics_addr
        .map(|_| Arc::new(metrics::Metrics::new()));
    let sandbox = runtime::Sandbox {
        env,
        limits,
        outgoing: state::Outgoing::new(config.allow_outbound.clone()),
    };
    let pool = Arc::new(pool::Pool::new(
        pre,
        sandbox,
        config.instance_reuse(),
        config.idle_instance_timeout,
        metrics.clone(),
    ));
    let handler = Arc::new(handler::Handler::new(
        pool.clone(),
        handler::Limits {
            max_concurrency: config.max_concurrency,
            request_timeout: config.request_timeout,
            max_header_bytes: config.max_header_bytes as usize,
            max_body_bytes: config.max_body_bytes,
        },
        metrics.clone(),
    ));
    let reloader = Arc::new(reload::Reloader::new(
        engine,
        config.component.clone(),
        cache_dir,
        pool.clone(),
        metrics.clone(),
    ));

    runtime(config.workers)?.block_on(async {
        tokio::spawn(sweep_idle_instances(pool));
        reloader.reload_on_sighup()?;
        if config.watch {
            reloader.watch(WATCH_INTERVAL);
        }
        if let (Some(addr), Some(metrics)) = (config.metrics_addr, metrics) {
            metrics::serve(addr, metrics).await?;
        }
        let listener = server::bind(config.addr).await?;
        let settings = server::Settings {
            grace: config.shutdown_grace,
            header_read_timeout: config.header_read_timeout,
            max_header_bytes: config.max_header_bytes as usize,
        };
        server::serve(listener, handler, settings).await
    })
}

/// The async runtime: one thread per CPU by default.
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    match workers {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")
}

/// Frees instances that sat idle past their timeout.
async fn sweep_idle_instances(pool: Arc<pool::Pool>) {
    let period = pool
        .idle_timeout()
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut every = tokio::time::interval(period);
    loop {
        every.tick().await;
        pool.sweep();
    }
}
