//! The wasmtime engines components run on, one per wasi:http generation: the
//! pooling allocator sized from [`InstanceLimits`], epoch interruption, and
//! the ticker thread that advances the epoch.
//!
//! A 0.2 component runs on an engine without concurrency support: with it,
//! wasmtime does async bookkeeping on every host call (3.3% more instructions
//! per request, counted with callgrind), which a 0.2 guest, serving one
//! request at a time, never needs. A 0.3 component needs it. Each engine is
//! made the first time a component of its generation is loaded.

use crate::guest::component::world::World;
use anyhow::{Context as _, Result, anyhow};
use replica_config::Config;
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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
pub(crate) struct InstanceLimits {
    pub(crate) max_instances: u32,
    pub(crate) max_memory_bytes: usize,
}

impl InstanceLimits {
    fn new(max_instances: u32, max_memory_mib: u32) -> Self {
        Self {
            max_instances,
            max_memory_bytes: max_memory_mib as usize * 1024 * 1024,
        }
    }
}

impl From<&Config> for InstanceLimits {
    /// Room for an instance per request served at once, and for the idle
    /// instances each worker keeps (at most its share of those, `reuse.rs`).
    fn from(config: &Config) -> Self {
        let workers = u32::try_from(config.worker_count()).unwrap_or(u32::MAX);
        let instances = config
            .max_concurrency
            .saturating_mul(2)
            .saturating_add(workers);
        Self::new(instances, config.max_memory_mib)
    }
}

impl Default for InstanceLimits {
    /// The serving defaults, so that `check` and `compile` build the same
    /// engine (and cache entries) as serving does by default.
    fn default() -> Self {
        Self::new(
            replica_config::DEFAULT_MAX_CONCURRENCY,
            replica_config::DEFAULT_MAX_MEMORY_MIB,
        )
    }
}

/// The engine of each world, made on first use, each with its epoch ticker.
pub(crate) struct Engines {
    limits: InstanceLimits,
    proxy: OnceLock<Engine>,
    service: OnceLock<Engine>,
}

impl Engines {
    pub(crate) fn new(limits: InstanceLimits) -> Self {
        Self {
            limits,
            proxy: OnceLock::new(),
            service: OnceLock::new(),
        }
    }

    /// The engine for components of `world`.
    pub(crate) fn get(&self, world: World) -> Result<&Engine> {
        let cell = match world {
            World::Proxy => &self.proxy,
            World::Service => &self.service,
        };
        if let Some(engine) = cell.get() {
            return Ok(engine);
        }
        let made = engine(self.limits, world)?;
        start_epoch_ticker(&made)?;
        // Loads are one at a time (start-up, then one reload at a time), so
        // no other engine can have been made meanwhile.
        Ok(cell.get_or_init(|| made))
    }
}

/// Builds the engine for `world`, with the pooling allocator where this
/// machine lets us reserve its address space, and the on-demand allocator
/// otherwise.
fn engine(limits: InstanceLimits, world: World) -> Result<Engine> {
    let mut config = base_config(world);
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
            Engine::new(&base_config(world))
                .map_err(|e| anyhow!(e).context("cannot create the engine"))
        }
    }
}

fn base_config(world: World) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    match world {
        World::Proxy => config.concurrency_support(false),
        World::Service => config
            .concurrency_support(true)
            .wasm_component_model_async(true),
    };
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) -> Result<()> {
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
