//! replica-host: serves a wasi:http/proxy component as a replica server.

mod cache;
mod config;
mod handler;
mod pool;
mod runtime;
mod server;
mod state;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    init_logging();
    let config = config::Config::parse();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: config::Config) -> Result<()> {
    // Configuration and the component are checked before the socket is bound.
    let env = config.guest_env()?;
    let limits = runtime::Limits {
        max_instances: config.max_concurrency,
        max_memory_bytes: config.max_memory_mib as usize * 1024 * 1024,
    };
    let engine = runtime::engine(limits)?;
    let pre = runtime::load_proxy(&engine, &config.component, config.cache_dir().as_deref())?;
    runtime::start_epoch_ticker(&engine)?;
    let pool = Arc::new(pool::Pool::new(
        pre,
        env,
        limits,
        config.instance_reuse(),
        config.idle_instance_timeout,
    ));
    let handler = Arc::new(handler::Handler::new(
        pool.clone(),
        config.max_concurrency,
        config.request_timeout,
    ));

    let rt = match config.workers {
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
    .context("cannot start the async runtime")?;
    rt.block_on(async {
        tokio::spawn(sweep_idle_instances(pool));
        let listener = server::bind(config.addr).await?;
        server::serve(listener, handler, config.shutdown_grace).await
    })
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
