//! What a guest instance sees and may use: its store's data (the WASI and
//! wasi:http contexts, its settings and key-value store, its memory limit),
//! built by [`new_store`] from the host-wide [`Sandbox`].

use crate::guest::engine::InstanceLimits;
use crate::guest::keyvalue::{KeyValue, KeyValueView};
use crate::guest::outbound::Outbound;
use crate::guest::output::Output;
use crate::telemetry::metrics::Metrics;
use anyhow::Result;
use replica_config::Config;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What every guest instance may see and use.
pub(crate) struct Sandbox {
    /// Its whole environment: SERVER_ID and the `--env` variables.
    env: Vec<(String, String)>,
    /// What wasi:config/store gives: SERVER_ID and the `--config` settings.
    settings: WasiConfigVariables,
    /// The wasi:keyvalue store, shared by every instance.
    keyvalue: KeyValue,
    limits: InstanceLimits,
    outbound: Outbound,
}

impl Sandbox {
    /// The sandbox `config` asks for; fails on a missing or ambiguous
    /// SERVER_ID or setting, or a key-value store that cannot be used.
    pub(crate) fn new(config: &Config, metrics: Metrics) -> Result<Self> {
        let env = config.guest_env()?;
        for name in &env.unset {
            tracing::warn!(
                "--env {name}: this host has no {name} in its environment, so the guest does \
                 not get one (as under `wasmtime serve`); set it, or pass --env {name}=VALUE"
            );
        }
        let settings = config.guest_config()?.into_iter().collect();
        let keyvalue = KeyValue::new(config, metrics)?;
        tracing::info!("wasi:keyvalue store {}", keyvalue.describe());
        Ok(Self {
            env: env.vars,
            settings,
            keyvalue,
            limits: InstanceLimits::from(config),
            outbound: Outbound::new(config.allow_outbound.clone()),
        })
    }
}

/// The data of one guest instance's store.
pub(crate) struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: Outbound,
    limits: StoreLimits,
    sandbox: Arc<Sandbox>,
    output: Output,
}

impl Host {
    /// The instance's stdout and stderr.
    pub(crate) fn output(&self) -> &Output {
        &self.output
    }

    /// What wasi:config/store reads.
    pub(crate) fn settings(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&self.sandbox.settings)
    }

    /// What wasi:keyvalue reaches.
    pub(crate) fn keyvalue(&mut self) -> KeyValueView<'_> {
        KeyValueView {
            table: &mut self.table,
            store: &self.sandbox.keyvalue,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// A fresh store for one guest instance, as wasmtime's `serve` builds one.
/// The guest sees only the sandbox's environment: no filesystem (no
/// preopened directories), no inherited variables, no sockets (WASI's
/// default denies every address), no outgoing HTTP but to allowed hosts;
/// its output goes to the log.
pub(crate) fn new_store(engine: &Engine, sandbox: &Arc<Sandbox>) -> Store<Host> {
    let output = Output::new();
    let wasi = WasiCtx::builder()
        .envs(&sandbox.env)
        .stdout(output.stdout())
        .stderr(output.stderr())
        .build();
    let host = Host {
        table: ResourceTable::new(),
        wasi,
        http: WasiHttpCtx::new(),
        outbound: sandbox.outbound.clone(),
        limits: StoreLimitsBuilder::new()
            .memory_size(sandbox.limits.max_memory_bytes)
            .build(),
        sandbox: sandbox.clone(),
        output,
    };
    let mut store = Store::new(engine, host);
    store.limiter(|host| &mut host.limits);
    // Yield to the executor every tick, so a guest stuck in a loop shares the
    // thread and its request's timeout can cancel it.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|_| {
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ))
    });
    store
}
