//! The wasmtime side: engine, linker, pre-instantiated proxy, per-instance
//! stores, and the epoch ticker that keeps a busy guest from hogging a thread.

use crate::cache;
use crate::logging::{CurrentRequest, GuestOutput};
use crate::state::{Host, Outgoing};
use anyhow::{Context as _, Result, anyhow, bail};
use std::path::Path;
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Precompiled,
    Store, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How often the epoch advances; a guest running wasm yields to other
/// requests at least this often.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of a used memory or table kept resident for the next instance.
const KEEP_RESIDENT: usize = 2 << 20;

/// Used slots kept warm (resident) beyond those in use; each holds what its
/// last guest touched, so this bounds the memory an idle host keeps.
const WARM_SLOTS: u32 = 16;

/// Limits every guest instance runs under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_instances: u32,
    pub(crate) max_memory_bytes: usize,
}

impl Limits {
    pub(crate) fn new(max_instances: u32, max_memory_mib: u32) -> Self {
        Self {
            max_instances,
            max_memory_bytes: max_memory_mib as usize * 1024 * 1024,
        }
    }
}

impl Default for Limits {
    /// The serving defaults, so that `check` and `compile` build the same
    /// engine (and cache entries) as serving does by default.
    fn default() -> Self {
        Self::new(
            replica_config::DEFAULT_MAX_CONCURRENCY,
            replica_config::DEFAULT_MAX_MEMORY_MIB,
        )
    }
}

/// Builds the engine, with the pooling allocator where this machine lets us
/// reserve its address space, and the on-demand allocator otherwise.
pub(crate) fn engine(limits: Limits) -> Result<Engine> {
    let mut config = base_config();
    let mut pool = PoolingAllocationConfig::default();
    // A Rust wasip2 component has one memory and a few core instances and
    // tables; leave headroom for other guests.
    pool.total_component_instances(limits.max_instances)
        .total_core_instances(limits.max_instances.saturating_mul(8))
        .total_memories(limits.max_instances.saturating_mul(2))
        .total_tables(limits.max_instances.saturating_mul(4))
        .total_stacks(limits.max_instances)
        .max_memory_size(limits.max_memory_bytes);
    // Reset a used memory's low pages (where a Rust guest's stack, data and
    // small heap live) by rewriting only the pages it touched, found with
    // Linux's PAGEMAP_SCAN where the kernel has it, instead of unmapping them:
    // unmapping costs page faults on the next instance and TLB-shootdown
    // interrupts on every core. Measured: 3.4x the strict-mode throughput.
    pool.linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(WARM_SLOTS);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(e) => {
            tracing::warn!("pooling allocator unavailable ({e}); using on-demand allocation");
            Engine::new(&base_config()).map_err(|e| anyhow!(e).context("cannot create the engine"))
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .context("cannot start the epoch ticker thread")?;
    Ok(())
}

/// Loads, compiles (or takes from the cache) and links the component at
/// `path`, checking that it is a wasi:http proxy this host can run. Every
/// error names the path and says what to do about it.
pub(crate) fn load_proxy(
    engine: &Engine,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<ProxyPre<Host>> {
    let component = load_component(engine, path, cache_dir)?;
    link(engine, &component, path)
}

/// Reads a component file, saying what to do when it cannot be read.
pub(crate) fn read_component(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "cannot read the component {}: build it with `make build`, \
             or pass the path of a .wasm component",
            path.display()
        )
    })
}

/// Loads a component: deserialized if precompiled, else compiled (or taken
/// from the cache).
pub(crate) fn load_component(
    engine: &Engine,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<Component> {
    let shown = path.display();
    let bytes = read_component(path)?;
    match Engine::detect_precompiled(&bytes) {
        Some(Precompiled::Component) => {
            // SAFETY: a precompiled component is native code; the operator
            // chose this file and trusts it like the host binary itself (as
            // `wasmtime run --allow-precompiled` does). wasmtime checks that it
            // was compiled by this version with these settings.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize(engine, &bytes) };
            loaded.map_err(|e| {
                anyhow!(e).context(format!(
                    "{shown} was precompiled for another wasmtime or other settings: \
                     serve the .wasm instead, or precompile it again with this host"
                ))
            })
        }
        Some(Precompiled::Module) => {
            bail!("{shown} is a precompiled core module, not a component: serve a component")
        }
        None => {
            check_is_component(&bytes).with_context(|| format!("{shown} cannot be served"))?;
            compile(engine, &bytes, cache_dir)
                .map_err(|e| e.context(format!("{shown} is not a valid component")))
        }
    }
}

/// Compiles `bytes`, or loads the compilation cached by an earlier start.
/// Says which it was: a container expected to start from its precompiled
/// cache can be seen compiling instead.
fn compile(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> Result<Component> {
    let started = std::time::Instant::now();
    let entry = cache_dir.map(|dir| cache::entry(dir, engine, bytes));
    if let Some(component) = entry
        .as_deref()
        .and_then(|entry| cache::load(engine, entry))
    {
        tracing::info!(
            "component loaded from the compile cache in {:?}",
            started.elapsed()
        );
        return Ok(component);
    }
    let component = Component::new(engine, bytes).map_err(|e| anyhow!(e))?;
    tracing::info!("component compiled in {:?}", started.elapsed());
    if let Some(entry) = &entry {
        cache::store(&component, entry);
    }
    Ok(component)
}

/// Links a component against WASI and wasi:http and checks it is a proxy.
pub(crate) fn link(engine: &Engine, component: &Component, path: &Path) -> Result<ProxyPre<Host>> {
    let shown = path.display();
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!(e))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| anyhow!(e))?;
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow!(e).context(format!(
            "{shown} imports something this host does not provide \
             (it provides wasi:cli, wasi:clocks, wasi:io, wasi:random, wasi:filesystem, \
             wasi:sockets and wasi:http at 0.2.x)"
        ))
    })?;
    ProxyPre::new(pre).map_err(|e| {
        anyhow!(e).context(format!(
            "{shown} is not a wasi:http proxy: it must export \
             wasi:http/incoming-handler@0.2.x"
        ))
    })
}

/// Tells a core module or a non-wasm file from a component before compiling,
/// so that the error says which it is.
fn check_is_component(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    // The 4 bytes after the magic: a 16-bit version, then a 16-bit layer
    // that is 0 for a core module and 1 for a component.
    match bytes.get(..8) {
        Some(header) if header.starts_with(MAGIC) => match header[6..8] {
            [1, 0] => Ok(()),
            [0, 0] => bail!(
                "it is a core WebAssembly module, not a component: build the guest for \
                 wasm32-wasip2, or wrap the module with `wasm-tools component new`"
            ),
            _ => bail!("it is a WebAssembly binary of an unknown layer or version"),
        },
        // The WebAssembly text format is accepted too.
        _ if std::str::from_utf8(bytes).is_ok_and(|text| text.trim_start().starts_with('(')) => {
            Ok(())
        }
        _ => bail!("it is not a WebAssembly component (no `\\0asm` header)"),
    }
}

/// What a guest instance may see and use.
pub(crate) struct Sandbox {
    /// Its whole environment: SERVER_ID and the `--env` variables.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) limits: Limits,
    pub(crate) outgoing: Outgoing,
}

/// A fresh store for one guest instance. The guest sees only the sandbox's
/// environment: no filesystem, no inherited variables, no sockets, no outgoing
/// HTTP but to allowed hosts; its output goes to the log, tagged with the request.
pub(crate) fn new_store(engine: &Engine, sandbox: &Sandbox) -> Store<Host> {
    let request = CurrentRequest::default();
    let wasi = WasiCtx::builder()
        .envs(&sandbox.env)
        .stdout(GuestOutput::new("stdout", request.clone()))
        .stderr(GuestOutput::new("stderr", request.clone()))
        .build();
    let host = Host {
        table: ResourceTable::new(),
        wasi,
        http: WasiHttpCtx::new(),
        hooks: sandbox.outgoing.clone(),
        request,
        limits: StoreLimitsBuilder::new()
            .memory_size(sandbox.limits.max_memory_bytes)
            .build(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_components_from_modules_and_other_files() {
        assert!(check_is_component(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(check_is_component(b"(component)").is_ok());
        let module = check_is_component(b"\0asm\x01\0\0\0").expect_err("module");
        assert!(format!("{module}").contains("core WebAssembly module"));
        let text = check_is_component(b"hello, world").expect_err("text");
        assert!(format!("{text}").contains("not a WebAssembly component"));
        assert!(check_is_component(b"").is_err());
    }
}
