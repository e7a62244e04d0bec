//! replica-host: serves a wasi:http component as a replica server.
//!
//! The binary (`main.rs`) parses the configuration and calls [`run`] or one of
//! the [`commands`]. The host's layers are its folders, each using only those
//! below it:
//!
//! - `ops/`: hot swap (`reload`) and the subcommands;
//! - `serve/`: the network side: workers, sockets, connections, requests;
//! - `guest/`: the guest side: components, instances, what they may use;
//! - `telemetry/`: logs, request spans, metrics, traces.
//!
//! Beside them, `side_runtime` (a runtime on a thread of its own) imports
//! nothing of the host's.
//!
//! `run` wires them from the configuration; `docs/architecture.md` follows
//! one request through them.

mod guest;
mod ops;
mod serve;
mod side_runtime;
mod telemetry;

pub use ops::commands;
pub use replica_config::Config;
pub use telemetry::logging::init_logging;

use anyhow::{Context as _, Result};
use guest::component;
use guest::component::engine::{Engines, InstanceLimits};
use guest::results::slot::Slots;
use guest::sandbox::Sandbox;
use guest::serving::Guests;
use hyper::service::service_fn;
use ops::reload::Reloader;
use serve::handler::RequestLimits;
use serve::shutdown::Stop;
use serve::{listeners, server, tls, workers};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use telemetry::logging::announce;
use telemetry::metrics::Metrics;
use telemetry::traces::Traces;

/// How often `--watch` looks at the component file.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Serves until SIGTERM or SIGINT. Configuration and the component are checked
/// before the socket is bound, so a bad one fails at once.
pub fn run(config: Config) -> Result<()> {
    let metrics = match config.metrics_addr {
        Some(_) => Metrics::on(config.metrics_routes.clone()),
        None => Metrics::off(),
    };
    let sandbox = Sandbox::new(&config, metrics.clone())?;
    let tls = tls::Tls::from_config(&config)?.map(Arc::new);
    let engines = Arc::new(Engines::new(InstanceLimits::from(&config)));
    let source = component::Source::from(&config);
    let (linked, digest) = component::load_linked(&engines, &source)?;
    tracing::info!(
        "serving {} (sha256 {digest}), a {} component",
        config.component.display(),
        linked.world()
    );
    let traces = Traces::from_config(&config, metrics.clone(), &digest)?;
    let guests = Arc::new(Guests::new(
        (linked, digest),
        sandbox,
        &config,
        metrics.clone(),
    ));
    let reloader = Arc::new(Reloader::new(
        engines,
        source,
        guests.clone(),
        tls.clone(),
        metrics.clone(),
    ));
    let settings = serve::settings::Settings::from(&config);
    let workers = config.worker_count();
    raise_open_file_limit();

    // Signals, reloads and the metrics port run here, on the main thread;
    // requests on the workers' threads.
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let served = control.block_on(async {
        // Before listening, so that a SIGHUP or SIGTERM sent once the server
        // is up never kills the process outright.
        reloader.reload_on_sighup()?;
        if config.watch {
            reloader.watch(WATCH_INTERVAL);
        }
        let stop = Stop::on_signals(settings.grace)?;
        if let Some(addr) = config.metrics_addr {
            let listener = listeners::bind(addr, 1, "--metrics-addr")?
                .pop()
                .context("no metrics socket")?;
            let bound = listener
                .local_addr()
                .context("cannot read the metrics address")?;
            let listener =
                tokio::net::TcpListener::from_std(listener).context("cannot listen for metrics")?;
            announce(&format!("metrics on http://{bound}/metrics"));
            let scraped = metrics.clone();
            let scrape = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = scraped.scrape(req.uri().path());
                async move { Ok::<_, Infallible>(answer) }
            });
            tokio::spawn(server::serve(
                listener,
                move |_| scrape.clone(),
                settings,
                None,
                stop.clone(),
            ));
        }
        let sockets = listeners::bind(config.addr, workers, "--addr")?;
        let bound = sockets
            .first()
            .context("no listening socket")?
            .local_addr()
            .context("cannot read the bound address")?;
        let shared = workers::Shared {
            slots: Arc::new(Slots::new(config.max_concurrency, metrics.clone())),
            guests,
            limits: RequestLimits::from(&config),
            metrics: metrics.clone(),
            settings,
            tls: tls.clone(),
            stop,
        };
        let running = workers::start(sockets, &shared)?;
        // One stable line, on stdout, that scripts and tests wait for.
        let scheme = if tls.is_some() { "https" } else { "http" };
        announce(&format!("listening on {scheme}://{bound}"));
        let mut drained = true;
        for worker in running {
            drained &= worker.await.unwrap_or(false);
        }
        if drained {
            tracing::info!("drained; exiting");
        }
        Ok(())
    });
    // What the exporter still holds goes before the process does.
    traces.shutdown();
    served
}

/// Lifts the soft limit on open files to the hard one: every idle keep-alive
/// connection a load balancer holds open is a file.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::debug!("cannot raise the open file limit from {soft}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!("cannot read the open file limit: {e}"),
    }
}
