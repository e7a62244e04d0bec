//! The subcommands: `check`, `compile` and `probe`.

use crate::component;
use crate::engine::{Engines, InstanceLimits};
use crate::logging::announce;
use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use wasmtime::component::types::ComponentItem;

/// Prints what `component` imports and exports, which wasi:http world it
/// serves, and whether this host can serve it; exits 0 only if it can.
pub fn check(component: &Path, allow_precompiled: bool) -> Result<ExitCode> {
    let engines = Engines::new(InstanceLimits::default());
    let mut report = format!("{}\n", component.display());
    let source = component::Source {
        path: component.to_path_buf(),
        cache_dir: None,
        allow_precompiled,
    };
    let verdict = component::load(&engines, &source).and_then(|(loaded, world, digest)| {
        let engine = loaded.engine();
        let ty = loaded.component_type();
        report += "  imports:\n";
        for (name, item) in ty.imports(engine) {
            report += &format!("    {name} ({})\n", kind(&item.ty));
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
/// `output`, or into the compile cache at `cache_dir`.
pub fn compile(component: &Path, output: Option<&Path>, cache_dir: Option<&Path>) -> Result<()> {
    let engines = Engines::new(InstanceLimits::default());
    let bytes = component::read(component)?;
    let world = component::world_of(&bytes)
        .with_context(|| format!("{} cannot be compiled", component.display()))?;
    let engine = engines.get(world)?;
    let started = Instant::now();
    let compiled = engine.precompile_component(&bytes).map_err(|e| {
        anyhow!(e).context(format!("{} is not a valid component", component.display()))
    })?;
    let target = match (output, cache_dir) {
        (Some(output), _) => {
            std::fs::write(output, &compiled).with_context(|| {
                format!(
                    "cannot write {}: check the directory exists and is writable",
                    output.display()
                )
            })?;
            output.to_path_buf()
        }
        (None, Some(dir)) => {
            let entry = crate::cache::entry(dir, engine, &bytes);
            crate::cache::write_entry(&entry, &compiled)?;
            entry
        }
        (None, None) => bail!("say where the compiled component goes: -o FILE or --cache-dir DIR"),
    };
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
pub fn probe(url: Option<String>, timeout: Duration) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        replica_config::default_probe_url(std::env::var("REPLICA_ADDR").ok().as_deref())
    });
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                tokio::time::timeout(timeout, get_status(&url))
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

/// GETs `url` with hyper's HTTP/1.1 client: the status code of the answer.
async fn get_status(url: &str) -> Result<u16> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("only http:// URLs can be probed");
    }
    let authority = uri.authority().context("the URL names no host")?.clone();
    // An IPv6 literal comes bracketed in a URL, bare in a socket address.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let stream = TcpStream::connect((host, authority.port_u16().unwrap_or(80)))
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("starting HTTP/1.1")?;
    tokio::spawn(connection);
    let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, authority.as_str())
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("reading the answer")?;
    Ok(response.status().as_u16())
}
