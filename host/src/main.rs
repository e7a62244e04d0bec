//! replica-host: serves a wasi:http/proxy component as a replica server.

use clap::Parser as _;
use replica_config::{Cli, Command, LogFormat};
use std::process::ExitCode;

/// jemalloc: fewer instructions per request and less memory per idle
/// connection than the system's allocator (host/Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        None => {
            replica_host::init_logging(cli.serve.log_format, cli.serve.access_log);
            replica_host::run(cli.serve).map(|()| ExitCode::SUCCESS)
        }
        Some(command) => {
            replica_host::init_logging(LogFormat::Text, false);
            match command {
                Command::Check {
                    component,
                    allow_precompiled,
                    cache,
                } => replica_host::commands::check(&component, allow_precompiled, &cache),
                Command::Compile {
                    component,
                    output,
                    cache,
                } => replica_host::commands::compile(&component, output.as_deref(), &cache)
                    .map(|()| ExitCode::SUCCESS),
                Command::Probe {
                    url,
                    insecure,
                    timeout,
                } => Ok(replica_host::commands::probe(url, insecure, timeout)),
            }
        }
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
