//! replica-host: serves a wasi:http/proxy component as a replica server.

mod config;
mod handler;
mod runtime;
mod server;
mod state;

use anyhow::Result;
use clap::Parser as _;
use std::process::ExitCode;
use std::sync::Arc;

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
    let pre = runtime::load_proxy(&engine, &config.component)?;
    runtime::start_epoch_ticker(&engine)?;
    let handler = Arc::new(handler::Handler::new(
        pre,
        env,
        limits,
        config.request_timeout,
    ));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = server::bind(config.addr).await?;
        server::serve(listener, handler, config.shutdown_grace).await
    })
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
