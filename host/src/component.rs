//! From a file to a pre-instantiated wasi:http proxy: reading it, telling a
//! component from other files, compiling it (or taking the compile cache's
//! copy, or a precompiled file), and linking it against what the host
//! provides. Every error names the file and says what to do about it.

use crate::cache;
use crate::sandbox::Host;
use anyhow::{Context as _, Result, anyhow, bail};
use std::path::Path;
use std::time::Instant;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Precompiled};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Loads the component at `path` and links it: what serving (and each
/// reload) starts from.
pub(crate) fn load_proxy(
    engine: &Engine,
    path: &Path,
    cache_dir: Option<&Path>,
) -> Result<ProxyPre<Host>> {
    let component = load(engine, path, cache_dir)?;
    link(engine, &component, path)
}

/// Reads a component file, saying what to do when it cannot be read.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
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
pub(crate) fn load(engine: &Engine, path: &Path, cache_dir: Option<&Path>) -> Result<Component> {
    let shown = path.display();
    let bytes = read(path)?;
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
