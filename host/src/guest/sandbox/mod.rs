//! What a guest instance sees and may use: its store's data (the WASI and
//! wasi:http contexts, its settings and key-value store, its memory budget),
//! built by [`new_store`] from the host-wide [`Sandbox`], and the interfaces
//! it may import, one folder per family, each holding its bindings, what the
//! interface means here, and the store behind it: `cli/` (environment and
//! output), `http/` (outgoing requests, HEAD), `config/` (wasi:config, Spin's
//! variables), `keyvalue/` (wasi:keyvalue, Spin's key-value, memory or
//! Redis), `logging/` (wasi:logging). [`add_to_linker`] is the one place each
//! is linked. What the host holds for an instance is counted in `memory`,
//! whether it may serve again in `health`.

pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod keyvalue;
pub(crate) mod logging;
pub(crate) mod memory;

use crate::telemetry::metrics::Metrics;
use anyhow::{Result, anyhow};
use cli::output::Output;
use health::Health;
use http::outbound::Outbound;
use keyvalue::{KeyValue, KeyValueView};
use memory::Budget;
use opentelemetry::Context as TraceContext;
use replica_config::Config;
use std::sync::Arc;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What every guest instance may see and use.
pub(crate) struct Sandbox {
    /// Its whole environment: SERVER_ID and the `--env` variables.
    env: Vec<(String, String)>,
    /// What the settings interfaces give: SERVER_ID and the `--config`
    /// settings.
    settings: Arc<config::Settings>,
    /// The key-value store, shared by every instance.
    keyvalue: Arc<KeyValue>,
    /// `--max-memory-mib`, in bytes: each instance's budget.
    max_memory_bytes: usize,
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
        let settings = Arc::new(config::Settings::new(config.guest_config()?));
        let keyvalue = Arc::new(KeyValue::new(config, metrics)?);
        Ok(Self {
            env: env.vars,
            settings,
            keyvalue,
            max_memory_bytes: config.max_memory_mib as usize * 1024 * 1024,
            outbound: Outbound::new(config.allow_outbound.clone()),
        })
    }
}

impl Sandbox {
    /// Says where the key-value store lives, for a component that uses one.
    pub(crate) fn announce_store(&self) {
        tracing::info!("key-value store {}", self.keyvalue.describe());
    }
}

/// Adds to `linker` what an instance may import: WASI and wasi:http (0.2
/// always: a Rust guest's std imports WASI 0.2 whatever its wasi:http
/// generation; 0.3 too if `p3`, for 0.3 components), with this host's HEAD;
/// settings and state, for guests written for them (`wasmtime serve -Sconfig
/// -Skeyvalue`, Spin, wasmCloud). A guest that imports none of the latter is
/// not touched by them.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>, p3: bool) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker).map_err(|e| anyhow!(e))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker).map_err(|e| anyhow!(e))?;
    http::head::add_to_linker(linker)?;
    config::add_to_linker(linker, Host::settings, p3).map_err(|e| anyhow!(e))?;
    logging::add_to_linker(linker).map_err(|e| anyhow!(e))?;
    keyvalue::add_to_linker(linker, Host::keyvalue, p3).map_err(|e| anyhow!(e))?;
    if p3 {
        wasmtime_wasi::p3::add_to_linker(linker).map_err(|e| anyhow!(e))?;
        wasmtime_wasi_http::p3::add_to_linker(linker).map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

/// The data of one guest instance's store.
pub(crate) struct Host {
    table: ResourceTable,
    /// What a call is given in place of the table once the instance is past
    /// its memory budget: empty and full, so the call fails.
    denied: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: Outbound,
    budget: Budget,
    sandbox: Arc<Sandbox>,
    output: Output,
    /// Whether the request a 0.2 instance is serving is a HEAD.
    head: bool,
    /// The trace span the instance's key-value calls go under (its guest's
    /// call), when its request has one.
    trace: Option<TraceContext>,
}

impl Host {
    /// Whether the request this (0.2) instance serves is a HEAD.
    pub(crate) fn answering_head(&self) -> bool {
        self.head
    }

    /// Says which request this (0.2) instance serves next: whether it is a
    /// HEAD, and the trace span its calls go under.
    pub(crate) fn serve(&mut self, head: bool, trace: Option<TraceContext>) {
        self.head = head;
        self.trace_under(trace);
    }

    /// The trace span the instance's calls (key-value, outgoing HTTP) go
    /// under from now on: none if `None`.
    pub(crate) fn trace_under(&mut self, trace: Option<TraceContext>) {
        self.outbound.trace_under(trace.clone());
        self.trace = trace;
    }

    /// The instance's stdout and stderr.
    pub(crate) fn output(&self) -> &Output {
        &self.output
    }

    /// Whether the instance went past its memory budget, or holds more than
    /// half of it between requests: either way it should not serve again.
    pub(crate) fn is_heavy(&mut self) -> bool {
        self.budget.is_heavy(&mut self.table)
    }

    /// Tells `health` when the instance goes past its memory budget (0.3:
    /// its worker then takes no more requests).
    pub(crate) fn report_to(&mut self, health: Arc<Health>) {
        self.budget.report_to(health);
    }

    /// What the settings interfaces read.
    pub(crate) fn settings(&mut self) -> config::ConfigView<'_> {
        config::ConfigView {
            settings: &self.sandbox.settings,
        }
    }

    /// What wasi:keyvalue reaches.
    pub(crate) fn keyvalue(&mut self) -> KeyValueView<'_> {
        let allowed = self.budget.call(memory::PER_CALL, &mut self.table);
        KeyValueView {
            table: if allowed {
                &mut self.table
            } else {
                &mut self.denied
            },
            store: &self.sandbox.keyvalue,
            trace: self.trace.as_ref(),
        }
    }
}

impl WasiView for Host {
    #[inline]
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let allowed = self.budget.call(memory::PER_CALL, &mut self.table);
        WasiCtxView {
            ctx: &mut self.wasi,
            table: if allowed {
                &mut self.table
            } else {
                &mut self.denied
            },
        }
    }
}

impl WasiHttpView for Host {
    #[inline]
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let allowed = self.budget.call(memory::PER_HTTP_CALL, &mut self.table);
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: if allowed {
                &mut self.table
            } else {
                &mut self.denied
            },
            hooks: &mut self.outbound,
        }
    }
}

/// An instance's linear memories and tables grow only within its budget,
/// counted with what the host holds for it.
impl ResourceLimiter for Host {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.budget.grow(current, desired, &mut self.table))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element takes a pointer or two of the host's memory.
        let element = 2 * size_of::<usize>();
        let (current, desired) = (
            current.saturating_mul(element),
            desired.saturating_mul(element),
        );
        Ok(self.budget.grow(current, desired, &mut self.table))
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
    let mut denied = ResourceTable::new();
    denied.set_max_capacity(0);
    let host = Host {
        table: ResourceTable::new(),
        denied,
        wasi,
        http: WasiHttpCtx::new(),
        outbound: sandbox.outbound.clone(),
        budget: Budget::new(sandbox.max_memory_bytes),
        sandbox: sandbox.clone(),
        output,
        head: false,
        trace: None,
    };
    let mut store = Store::new(engine, host);
    store.limiter(|host| host);
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
