//! replica-host: serves a wasi:http/proxy component as a replica server.
//!
//! The binary (`main.rs`) parses the configuration and calls [`run`] or one of
//! the [`commands`]. A request's way through the files: `server` accepts it,
//! `handler` checks it, gives it a span and answers its errors, `guest` runs it
//! in an instance from the `pool`, whose stores `sandbox` builds (with the
//! `outbound` policy and `guest_output`); `engine` and `component` make what
//! the pool instantiates, `cache` keeps it compiled, `reload` replaces it,
//! `shutdown` stops it all; `metrics` and `logging` say what happened.

mod answer;
mod body;
mod cache;
pub mod commands;
mod component;
mod engine;
mod guest;
mod guest_output;
mod handler;
mod logging;
mod metrics;
mod outbound;
mod pool;
mod proxy;
mod reload;
mod sandbox;
mod server;
mod service;
mod shutdown;
mod slot;
mod span;

pub use logging::init_logging;
pub use replica_config::Config;

use anyhow::{Context as _, Result};
use engine::{Engines, InstanceLimits};
use guest::Guests;
use handler::{Handler, RequestLimits};
use hyper::service::service_fn;
use logging::announce;
use metrics::Metrics;
use reload::Reloader;
use sandbox::Sandbox;
use shutdown::Stop;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often `--watch` looks at the component file.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Serves until SIGTERM or SIGINT. Configuration and the component are checked
/// before the socket is bound, so a bad one fails at once.
pub fn run(config: Config) -> Result<()> {
    let sandbox = Sandbox::new(&config)?;
    let engines = Arc::new(Engines::new(InstanceLimits::from(&config)));
    let cache_dir = config.cache_dir();
    let linked = component::load_linked(&engines, &config.component, cache_dir.as_deref())?;
    tracing::info!(
        "serving {}, a {} component",
        config.component.display(),
        linked.world()
    );
    let metrics = match config.metrics_addr {
        Some(_) => Metrics::on(config.metrics_routes.clone()),
        None => Metrics::off(),
    };
    let guests = Arc::new(Guests::new(linked, sandbox, &config, metrics.clone()));
    let handler = Arc::new(Handler::new(
        guests.clone(),
        RequestLimits::from(&config),
        metrics.clone(),
    ));
    let reloader = Arc::new(Reloader::new(
        engines,
        config.component.clone(),
        cache_dir,
        guests.clone(),
        metrics.clone(),
    ));
    let settings = server::Settings::from(&config);

    async_runtime(config.workers)?.block_on(async {
        tokio::spawn(sweep_idle_instances(guests.clone()));
        // Before listening, so that a SIGHUP or SIGTERM sent once the server
        // is up never kills the process outright.
        reloader.reload_on_sighup()?;
        if config.watch {
            reloader.watch(WATCH_INTERVAL);
        }
        let stop = Stop::on_signals(settings.grace)?;
        if let Some(addr) = config.metrics_addr {
            let listener = server::bind(addr, "--metrics-addr").await?;
            let bound = listener
                .local_addr()
                .context("cannot read the metrics address")?;
            announce(&format!("metrics on http://{bound}/metrics"));
            let scrape = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = metrics.scrape(req.uri().path());
                async move { Ok::<_, Infallible>(answer) }
            });
            tokio::spawn(server::serve(listener, scrape, settings, stop.clone()));
        }
        let listener = server::bind(config.addr, "--addr").await?;
        let bound = listener
            .local_addr()
            .context("cannot read the bound address")?;
        // One stable line, on stdout, that scripts and tests wait for.
        announce(&format!("listening on http://{bound}"));
        let service = service_fn(move |req| handler.clone().handle(req));
        if server::serve(listener, service, settings, stop).await {
            tracing::info!("drained; exiting");
        }
        guests.retire();
        Ok(())
    })
}

/// The async runtime: one thread per CPU by default.
fn async_runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
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
async fn sweep_idle_instances(guests: Arc<Guests>) {
    let period = guests
        .idle_timeout()
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut every = tokio::time::interval(period);
    loop {
        every.tick().await;
        guests.sweep();
    }
}
