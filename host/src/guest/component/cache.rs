//! Compiled components cached on disk, so that a restart does not recompile.
//!
//! An entry is named by a SHA-256 of the component's bytes and of the engine's
//! settings and version (`Engine::precompile_compatibility_hash`): a different
//! component, flag or wasmtime gives a different name, never a stale entry.

use anyhow::{Context as _, Result, anyhow};
use sha2::{Digest, Sha256};
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache entry for `bytes` compiled by `engine`.
pub(crate) fn entry(dir: &Path, engine: &Engine, bytes: &[u8]) -> PathBuf {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(bytes);
    dir.join(format!("{}.cwasm", hex(&hasher.0.finalize())))
}

/// The SHA-256 of a component file, in hex: how logs name what is served, so
/// that a deploy can tell which component a replica runs.
pub(crate) fn digest(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads a cached compilation, if there is a usable one.
pub(crate) fn load(engine: &Engine, entry: &Path) -> Option<Component> {
    if !entry.is_file() {
        return None;
    }
    // SAFETY: the file is one this host wrote (`store`) into a directory only
    // its user may write, under a name derived from the component and the
    // engine's settings, so it holds code compiled by this engine for this
    // component. wasmtime still checks its header and settings.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize_file(engine, entry) };
    match loaded {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!("ignoring unusable cache entry {}: {e}", entry.display());
            None
        }
    }
}

/// Writes a compilation to the cache; a failure only costs the next start a
/// compile, so it is logged, not fatal.
pub(crate) fn store(component: &Component, entry: &Path) {
    if let Err(e) = try_store(component, entry) {
        tracing::warn!("not caching the compiled component: {e:#}");
    }
}

fn try_store(component: &Component, entry: &Path) -> Result<()> {
    let bytes = component.serialize().map_err(|e| anyhow!(e))?;
    write_entry(entry, &bytes)
}

/// Writes compiled bytes as a cache entry: the directory private to this user,
/// the file written then renamed, so that a concurrent start never reads half
/// a file.
pub(crate) fn write_entry(entry: &Path, bytes: &[u8]) -> Result<()> {
    let dir = entry.parent().context("cache entry has no directory")?;
    create_private_dir(dir)?;
    let partial = entry.with_extension(format!("partial-{}", std::process::id()));
    fs::write(&partial, bytes).with_context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, entry).with_context(|| format!("cannot write {}", entry.display()))?;
    Ok(())
}

/// Creates `dir` readable and writable by this user only: whoever can write
/// the cache can choose the code this host runs.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the cache directory {}", dir.display()))
}

/// Feeds `Hash` output into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        // Only the digest is used; `Hasher` requires this.
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_named_by_the_component_and_the_engine() {
        let engine = Engine::default();
        let dir = Path::new("/cache");
        let a = entry(dir, &engine, b"component a");
        assert_eq!(a, entry(dir, &engine, b"component a"), "not stable");
        assert_ne!(a, entry(dir, &engine, b"component b"));
        let mut other = wasmtime::Config::new();
        other.epoch_interruption(true);
        let other = Engine::new(&other).expect("an engine");
        assert_ne!(a, entry(dir, &other, b"component a"), "settings ignored");
        let name = a.file_name().and_then(|n| n.to_str()).expect("a name");
        let hex = name.strip_suffix(".cwasm").expect("a .cwasm");
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a.parent(), Some(dir));
    }
}
