//! The subcommands: `check`, `compile` and `probe`.

use crate::guest::component::engine::{Engines, InstanceLimits};
use crate::guest::component::interfaces::{self, Answer};
use crate::guest::component::{self, world};
use crate::ops::probe;
use crate::telemetry::logging::announce;
use anyhow::{Context as _, Result, anyhow, bail};
use replica_config::Cache;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wasmtime::component::types::ComponentItem;

/// Prints what `component` imports and exports, which wasi:http world it
/// serves, and whether this host can serve it; exits 0 only if it can. The
/// compile is taken from, or left in, the cache serving uses.
pub fn check(component: &Path, allow_precompiled: bool, cache: &Cache) -> Result<ExitCode> {
    let engines = Engines::new(InstanceLimits::default());
    let mut report = format!("{}\n", component.display());
    let source = component::Source {
        path: component.to_path_buf(),
        cache_dir: cache.dir(),
        allow_precompiled,
    };
    let verdict = component::load(&engines, &source).and_then(|(loaded, world, digest)| {
        let engine = loaded.engine();
        let ty = loaded.component_type();
        report += "  imports:\n";
        for (name, item) in ty.imports(engine) {
            let answer = match interfaces::answer(name, world) {
                Answer::Provided(what) => format!("provided: {what}"),
                Answer::Missing(why) => format!("NOT PROVIDED: {why}"),
            };
            report += &format!("    {name} ({}): {answer}\n", kind(&item.ty));
        }
        report += "  exports:\n";
        for (name, item) in ty.exports(engine) {
            report += &format!("    {name} ({})\n", kind(&item.ty));
        }
        report += &format!("  world: {world}\n  sha256: {digest}\n");
        component::link(&loaded, world, component)
    });
    let (verdict, code) = match verdict {
        Ok(_) => ("yes".to_string(), ExitCode::SUCCESS),
        Err(e) => (format!("no: {e:#}"), ExitCode::FAILURE),
    };
    report += &format!("  this host can serve it: {verdict}");
    announce(&report);
    Ok(code)
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::CoreFunc(_) => "core function",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// Compiles `component` for this host's engine of its world and writes it to
/// `output`, or into the compile cache serving uses (where an entry already
/// there is kept).
pub fn compile(component: &Path, output: Option<&Path>, cache: &Cache) -> Result<()> {
    let engines = Engines::new(InstanceLimits::default());
    let bytes = component::read(component)?;
    let world = world::world_of(&bytes)
        .with_context(|| format!("{} cannot be compiled", component.display()))?;
    let engine = engines.get(world)?;
    // Where it goes, and whether that is a cache entry.
    let (target, cached) = match (output, cache.dir()) {
        (Some(output), _) => (output.to_path_buf(), false),
        (None, Some(dir)) => (component::cache::entry(&dir, engine, &bytes), true),
        (None, None) => bail!(
            "nowhere to put the compiled component: the cache is off (--no-cache or \
             REPLICA_NO_CACHE); pass -o FILE, or --cache-dir DIR"
        ),
    };
    if cached && component::cache::load(engine, &target).is_some() {
        announce(&format!(
            "{} is already compiled in the cache: {}",
            component.display(),
            target.display()
        ));
        return Ok(());
    }
    let started = Instant::now();
    let compiled = engine.precompile_component(&bytes).map_err(|e| {
        anyhow!(e).context(format!("{} is not a valid component", component.display()))
    })?;
    if cached {
        component::cache::write_entry(&target, &compiled)?;
    } else {
        std::fs::write(&target, &compiled).with_context(|| {
            format!(
                "cannot write {}: check the directory exists and is writable",
                target.display()
            )
        })?;
    }
    announce(&format!(
        "compiled {} into {} ({} bytes, {:?})",
        component.display(),
        target.display(),
        compiled.len(),
        started.elapsed()
    ));
    Ok(())
}

/// GETs `url` and exits 0 if it answers 200, 1 otherwise, saying why.
pub fn probe(url: Option<String>, insecure: bool, timeout: Duration) -> ExitCode {
    // Without a URL: this host itself, whose certificate (if any) is trusted.
    let (url, insecure) = match url {
        Some(url) => (url, insecure),
        None => {
            let tls = std::env::var_os("REPLICA_TLS_CERT").is_some();
            let addr = std::env::var("REPLICA_ADDR").ok();
            (
                replica_config::default_probe_url(addr.as_deref(), tls),
                true,
            )
        }
    };
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                tokio::time::timeout(timeout, probe::get_status(&url, insecure))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("no answer within {timeout:?}")))
            })
        });
    match answer {
        Ok(200) => {
            announce(&format!("{url}: 200"));
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("{url}: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
