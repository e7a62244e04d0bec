//! Which wasi:http world a component is written for, told by what it exports
//! (read with wasmparser before anything is compiled), and a core module or
//! any other file told from a component, so that the error says which.

use anyhow::{Context as _, Result, bail};

/// The wasi:http generation a component is written for, by the interface it
/// exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum World {
    /// `wasi:http/proxy` 0.2.x: exports `wasi:http/incoming-handler@0.2.x`.
    Proxy,
    /// `wasi:http/service` 0.3.x: exports `wasi:http/handler@0.3.x`.
    Service,
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            World::Proxy => "wasi:http/proxy 0.2 (exports wasi:http/incoming-handler@0.2.x)",
            World::Service => "wasi:http/service 0.3 (exports wasi:http/handler@0.3.x)",
        })
    }
}

/// What the export of each world starts with.
const PROXY_EXPORT: &str = "wasi:http/incoming-handler@0.2.";
const SERVICE_EXPORT: &str = "wasi:http/handler@0.3.";

/// The world of a component given as bytes (binary or text), by its exports.
pub(crate) fn world_of(bytes: &[u8]) -> Result<World> {
    check_is_component(bytes)?;
    let binary = wat::parse_bytes(bytes).context("it is not a valid component")?;
    let exports = top_level_exports(&binary).context("it is not a valid component")?;
    let exported = |prefix: &str| exports.iter().any(|name| name.starts_with(prefix));
    match (exported(PROXY_EXPORT), exported(SERVICE_EXPORT)) {
        (true, false) => Ok(World::Proxy),
        (false, true) => Ok(World::Service),
        (true, true) => bail!(
            "it exports both {PROXY_EXPORT}x and {SERVICE_EXPORT}x: \
             serve one wasi:http world per component"
        ),
        (false, false) => bail!(
            "it is neither a wasi:http/proxy 0.2 component (exporting {PROXY_EXPORT}x) \
             nor a wasi:http/service 0.3 one (exporting {SERVICE_EXPORT}x); it exports {}",
            if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            }
        ),
    }
}

/// The names a component exports itself (not those of components nested in it).
fn top_level_exports(binary: &[u8]) -> Result<Vec<String>> {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(binary) {
        match payload? {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(exports) if depth == 1 => {
                for export in exports {
                    names.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
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

    fn world(text: &str) -> Result<World> {
        world_of(text.as_bytes())
    }

    #[test]
    fn the_world_is_told_by_the_exported_interface() {
        let exporting =
            |name: &str| format!("(component (instance $i) (export \"{name}\" (instance $i)))");
        assert_eq!(
            world(&exporting("wasi:http/incoming-handler@0.2.12")).ok(),
            Some(World::Proxy)
        );
        assert_eq!(
            world(&exporting("wasi:http/incoming-handler@0.2.3")).ok(),
            Some(World::Proxy)
        );
        assert_eq!(
            world(&exporting("wasi:http/handler@0.3.0")).ok(),
            Some(World::Service)
        );
        // Not at the top: an export of a nested component does not count.
        let nested = "(component (component (instance $i) \
                      (export \"wasi:http/handler@0.3.0\" (instance $i))))";
        assert!(world(nested).is_err());
    }

    #[test]
    fn a_component_of_neither_world_is_told_what_it_exports() {
        let none = world("(component)").expect_err("no export");
        assert!(
            format!("{none:#}").contains("it exports nothing"),
            "{none:#}"
        );
        let other =
            world("(component (instance $i) (export \"acme:kv/store@1.0.0\" (instance $i)))")
                .expect_err("another export");
        let message = format!("{other:#}");
        assert!(
            message.contains("it exports acme:kv/store@1.0.0"),
            "{message}"
        );
        assert!(
            message.contains("wasi:http/incoming-handler@0.2."),
            "{message}"
        );
        assert!(message.contains("wasi:http/handler@0.3."), "{message}");
    }

    #[test]
    fn a_component_of_both_worlds_is_refused() {
        let both = world(
            "(component (instance $i) \
             (export \"wasi:http/incoming-handler@0.2.12\" (instance $i)) \
             (export \"wasi:http/handler@0.3.0\" (instance $i)))",
        );
        assert!(format!("{:#}", both.expect_err("both")).contains("exports both"));
    }
}
