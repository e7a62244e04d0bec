//! The subcommands: `check`, `compile` and `probe`.

use crate::runtime;
use anyhow::{Context as _, Result, anyhow, bail};
use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wasmtime::component::types::ComponentItem;

/// Prints what `component` imports and exports and whether this host can
/// serve it; exits 0 only if it can.
pub fn check(component: &Path) -> Result<ExitCode> {
    let engine = runtime::engine(runtime::Limits::default())?;
    let loaded = runtime::load_component(&engine, component, None)?;
    let ty = loaded.component_type();
    let mut report = format!("{}\n  imports:\n", component.display());
    for (name, item) in ty.imports(&engine) {
        report += &format!("    {name} ({})\n", kind(&item.ty));
    }
    report += "  exports:\n";
    for (name, item) in ty.exports(&engine) {
        report += &format!("    {name} ({})\n", kind(&item.ty));
    }
    let (verdict, code) = match runtime::link(&engine, &loaded, component) {
        Ok(_) => ("yes".to_string(), ExitCode::SUCCESS),
        Err(e) => (format!("no: {e:#}"), ExitCode::FAILURE),
    };
    report += &format!("  this host can serve it: {verdict}");
    crate::server::announce(&report);
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

/// Compiles `component` for this host's engine and writes it to `output`, or
/// into the compile cache at `cache_dir`.
pub fn compile(component: &Path, output: Option<&Path>, cache_dir: Option<&Path>) -> Result<()> {
    let engine = runtime::engine(runtime::Limits::default())?;
    let bytes = runtime::read_component(component)?;
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
            let entry = crate::cache::entry(dir, &engine, &bytes);
            crate::cache::write_entry(&entry, &compiled)?;
            entry
        }
        (None, None) => bail!("say where the compiled component goes: -o FILE or --cache-dir DIR"),
    };
    crate::server::announce(&format!(
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
    match get_status(&url, timeout) {
        Ok(200) => {
            crate::server::announce(&format!("{url}: 200"));
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

/// A minimal HTTP/1.1 GET: the status code of the answer, within `timeout`.
fn get_status(url: &str, timeout: Duration) -> Result<u16> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs can be probed")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .context("setting the timeout")?;
    stream
        .set_write_timeout(Some(timeout))
        .context("setting the timeout")?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .context("sending the request")?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream
            .read(&mut head[read..])
            .context("reading the answer")?
        {
            0 => break,
            n => read += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok());
    match status {
        Some(status) => Ok(status),
        None => bail!("not an HTTP answer: {line:?}"),
    }
}
