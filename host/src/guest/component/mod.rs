//! From a file to a pre-instantiated wasi:http component: reading it, telling
//! a component from other files, finding which wasi:http world it serves (by
//! what it exports), compiling it on that world's engine (or taking the
//! compile cache's copy, or a precompiled file), and linking it against what
//! the host provides. Every error names the file and says what to do about it.

//! `world` tells a component's world from its exports, `engine` makes that
//! world's engine, `cache` keeps what was compiled, and `interfaces` names,
//! in plain words, what this host provides and what it does not.

pub(crate) mod cache;
pub(crate) mod engine;
pub(crate) mod interfaces;
pub(crate) mod world;

use crate::guest::sandbox::{self, Host};
use anyhow::{Context as _, Result, anyhow, bail};
use engine::Engines;
use replica_config::Config;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Precompiled};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use world::{World, world_of};

/// A component linked and ready to instantiate, by world.
#[derive(Clone)]
pub(crate) enum Linked {
    Proxy(ProxyPre<Host>),
    Service(ServicePre<Host>),
}

impl Linked {
    /// Whether the component imports a key-value store (under any of the
    /// interfaces this host gives one through).
    pub(crate) fn imports_store(&self) -> bool {
        let component = match self {
            Linked::Proxy(pre) => pre.instance_pre().component(),
            Linked::Service(pre) => pre.instance_pre().component(),
        };
        let engine = component.engine();
        component
            .component_type()
            .imports(engine)
            .any(|(name, _)| interfaces::is_store(name))
    }

    pub(crate) fn world(&self) -> World {
        match self {
            Linked::Proxy(_) => World::Proxy,
            Linked::Service(_) => World::Service,
        }
    }
}

/// Where a component comes from, and what its file may be.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub(crate) path: PathBuf,
    pub(crate) cache_dir: Option<PathBuf>,
    /// Whether a precompiled `.cwasm` file may be served (`--allow-precompiled`).
    pub(crate) allow_precompiled: bool,
}

impl From<&Config> for Source {
    fn from(config: &Config) -> Self {
        Self {
            path: config.component.clone(),
            cache_dir: config.cache_dir(),
            allow_precompiled: config.allow_precompiled,
        }
    }
}

/// Loads the component and links it: what serving (and each reload) starts
/// from. Also returns the file's SHA-256, for the log.
pub(crate) fn load_linked(engines: &Engines, source: &Source) -> Result<(Linked, String)> {
    let (component, world, digest) = load(engines, source)?;
    Ok((link(&component, world, &source.path)?, digest))
}

/// Reads a component file, saying what to do when it cannot be read.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        let shown = path.display();
        // Only this project's own guest is made by `make build`.
        let what = if path == Path::new(replica_config::DEFAULT_COMPONENT) {
            "build this project's guest with `make build`, or pass the path of a .wasm \
             component"
                .to_string()
        } else if e.kind() == std::io::ErrorKind::NotFound {
            format!("there is no file {shown}: check the path (COMPONENT, or REPLICA_COMPONENT)")
        } else {
            format!("check that {shown} is a file this user may read")
        };
        anyhow!(e).context(format!(
            "replica-host cannot read the component {shown}: {what}"
        ))
    })
}

/// Loads a component and tells its world: deserialized if precompiled (and
/// allowed), else compiled (or taken from the cache) on its world's engine.
pub(crate) fn load(engines: &Engines, source: &Source) -> Result<(Component, World, String)> {
    let shown = source.path.display();
    let bytes = read(&source.path)?;
    let digest = cache::digest(&bytes);
    let (component, world) = match Engine::detect_precompiled(&bytes) {
        Some(Precompiled::Component) if !source.allow_precompiled => bail!(
            "{shown} is a precompiled component (.cwasm): native code that runs outside the \
             sandbox, as trusted as whoever can write that file. Serve the .wasm instead \
             (the host compiles and caches it itself), or pass --allow-precompiled \
             (REPLICA_ALLOW_PRECOMPILED=1) if you trust the file"
        ),
        Some(Precompiled::Component) => deserialize(engines, &bytes).with_context(|| {
            format!(
                "{shown} was precompiled for another wasmtime or other settings: \
                 serve the .wasm instead, or precompile it again with this host"
            )
        })?,
        Some(Precompiled::Module) => {
            bail!("{shown} is a precompiled core module, not a component: serve a component")
        }
        None => {
            let world = world_of(&bytes).with_context(|| format!("{shown} cannot be served"))?;
            let component = compile(engines.get(world)?, &bytes, source.cache_dir.as_deref())
                .map_err(|e| e.context(format!("{shown} is not a valid component")))?;
            (component, world)
        }
    };
    Ok((component, world, digest))
}

/// A precompiled component, on the engine it was compiled for.
fn deserialize(engines: &Engines, bytes: &[u8]) -> Result<(Component, World)> {
    let mut tried = Vec::new();
    for world in [World::Proxy, World::Service] {
        // SAFETY: a precompiled component is native code; the operator
        // chose this file and trusts it like the host binary itself (as
        // `wasmtime run --allow-precompiled` does). wasmtime checks that it
        // was compiled by this version with these settings.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engines.get(world)?, bytes) };
        match loaded {
            Ok(component) => return Ok((component, world)),
            Err(e) => tried.push(format!("as {world}: {e}")),
        }
    }
    bail!("{}", tried.join("; "))
}

/// Compiles `bytes`, or loads the compilation cached by an earlier start.
/// Says which it was: a container expected to start from its precompiled
/// cache can be seen compiling instead.
fn compile(engine: &Engine, bytes: &[u8], cache_dir: Option<&Path>) -> Result<Component> {
    let started = Instant::now();
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

/// Links a component of `world` against what the sandbox provides.
pub(crate) fn link(component: &Component, world: World, path: &Path) -> Result<Linked> {
    let shown = path.display();
    let mut linker = Linker::new(component.engine());
    sandbox::add_to_linker(&mut linker, world == World::Service)?;
    let pre = linker.instantiate_pre(component).map_err(|e| {
        let engine = component.engine();
        let ty = component.component_type();
        let names: Vec<&str> = ty.imports(engine).map(|(name, _)| name).collect();
        let missing = interfaces::missing(names, world);
        if missing.is_empty() {
            // Each import is one this host provides, but not in the shape
            // the component expects: wasmtime's own words say where.
            return anyhow!(e).context(format!(
                "{shown} imports an interface this host provides, in another shape \
                 (`replica-host check` lists what it imports)"
            ));
        }
        anyhow!(
            "{shown} imports what this host does not provide:\n  - {}",
            missing.join("\n  - ")
        )
    })?;
    let linked = match world {
        World::Proxy => ProxyPre::new(pre).map(Linked::Proxy),
        World::Service => ServicePre::new(pre).map(Linked::Service),
    };
    linked.map_err(|e| anyhow!(e).context(format!("{shown} is not a {world} component")))
}
