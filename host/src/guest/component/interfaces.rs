//! What this host provides a component, import by import, in plain words:
//! what `check` prints, and what a component refused at start (or on a
//! reload) is told it imports that this host does not provide, with what to
//! do about it. It follows what `component::link` puts in the linker.

use crate::guest::component::world::World;

/// How this host answers one import.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Provided; what the guest gets there, and the flags that shape it.
    Provided(&'static str),
    /// Not provided, and why or what to do instead.
    Missing(String),
}

/// WASI 0.2 packages this host provides.
const WASI_P2: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:io",
    "wasi:random",
    "wasi:filesystem",
    "wasi:sockets",
    "wasi:http",
];

/// What a guest gets from the WASI interfaces this host narrows (in 0.2 and
/// 0.3 alike); the others are as WASI defines them.
fn narrowed(package: &str, interface: &str) -> &'static str {
    match (package, interface) {
        ("wasi:cli", "environment") => "SERVER_ID and the --env variables only",
        ("wasi:cli", "stdout" | "stderr") => "into the log, an entry per line",
        ("wasi:cli", "stdin") => "empty",
        ("wasi:filesystem", "preopens") => "no directory is opened to the guest",
        ("wasi:sockets", _) => "every address is denied",
        ("wasi:http", "outgoing-handler" | "client") => {
            "requests are denied but to hosts named with --allow-outbound"
        }
        _ => "as WASI defines it",
    }
}

/// WASI 0.3.0 packages, linked for wasi:http/service components only.
const WASI_P3: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:random",
    "wasi:filesystem",
    "wasi:sockets",
    "wasi:http",
];

/// The settings interfaces, at the versions provided.
const CONFIG: &[&str] = &[
    "wasi:config/store@0.2.0-rc.1",
    "wasi:config/store@0.2.0-draft",
    "wasi:config/store@0.2.0-draft-2024-09-27",
];
const KEYVALUE: &[&str] = &["store", "atomics", "batch"];
const KEYVALUE_VERSIONS: &[&str] = &["0.2.0-draft", "0.2.0-draft2"];
const SPIN_2: &[&str] = &[
    "fermyon:spin/variables@2.0.0",
    "fermyon:spin/key-value@2.0.0",
];
const SPIN_3: &[&str] = &[
    "spin:variables/variables@3.0.0",
    "spin:key-value/key-value@3.0.0",
];
const LOGGING: &str = "wasi:logging/logging@0.1.0-draft";

const SETTINGS: &str = "SERVER_ID and the --config settings, nothing else";
const STORE: &str = "one store per replica in memory, or the fleet's in Redis (--keyvalue-url)";

/// What this host does with the import named `name` of a component of `world`.
pub(crate) fn answer(name: &str, world: World) -> Answer {
    let Some((package, interface, version)) = split(name) else {
        return Answer::Missing(
            "not a WASI interface: this host provides WASI's interfaces only".into(),
        );
    };
    match package {
        "wasi:config" if CONFIG.contains(&name) => Answer::Provided(SETTINGS),
        "wasi:config" => Answer::Missing(format!(
            "this host provides {} (as `wasmtime serve -Sconfig`, wasmCloud and Spin do): \
             build the guest against one of them",
            CONFIG.join(" and ")
        )),
        "wasi:keyvalue"
            if version.is_some_and(|v| KEYVALUE_VERSIONS.contains(&v))
                && KEYVALUE.contains(&interface) =>
        {
            Answer::Provided(STORE)
        }
        "wasi:keyvalue" => Answer::Missing(format!(
            "this host provides wasi:keyvalue store, atomics and batch at {} (as `wasmtime \
             serve -Skeyvalue`, wasmCloud and Spin do): build the guest against one of them",
            KEYVALUE_VERSIONS.join(" and ")
        )),
        "wasi:logging" if name == LOGGING => {
            Answer::Provided("into the log, an entry per call, at its level, with its context")
        }
        "wasi:logging" => Answer::Missing(format!(
            "this host provides {LOGGING} (as wasmCloud does); stdout and stderr are logged a \
             line at a time too"
        )),
        _ if SPIN_2.contains(&name) => Answer::Provided(spin(interface)),
        _ if SPIN_3.contains(&name) => match world {
            World::Service => Answer::Provided(spin(interface)),
            World::Proxy => Answer::Missing(
                "Spin 3's interfaces are async, for wasi:http/service (0.3) components only, \
                 and this one exports wasi:http/incoming-handler (0.2)"
                    .into(),
            ),
        },
        _ if package.starts_with("fermyon:spin") || package.starts_with("spin:") => {
            Answer::Missing(
                "a Spin interface this host does not provide (it provides Spin's variables and \
                 key-value, 2.0.0 and 3.0.0): use wasi:http's outgoing requests, or a standard \
                 interface, instead"
                    .into(),
            )
        }
        _ if package.starts_with("wasmcloud:") => Answer::Missing(
            "wasmCloud's own interface, provided by wasmCloud only: use wasi:config, \
             wasi:keyvalue and wasi:logging, which this host provides, instead"
                .into(),
        ),
        _ => wasi(package, interface, version, world),
    }
}

/// What a Spin interface gives here.
fn spin(interface: &str) -> &'static str {
    match interface {
        "variables" => {
            "the --config settings, by Spin's naming rules (a lower-case name also finds its \
             upper-case setting: server_id is SERVER_ID)"
        }
        _ => {
            "every label opens the wasi:keyvalue bucket of that name (default, say): one store \
              per replica in memory, or the fleet's in Redis (--keyvalue-url)"
        }
    }
}

/// The answer for a WASI 0.2 or 0.3 package, or for anything else.
fn wasi(package: &str, interface: &str, version: Option<&str>, world: World) -> Answer {
    let version = version.unwrap_or_default();
    let p2 = WASI_P2.contains(&package);
    if p2 && version.starts_with("0.2.") && !version.contains('-') {
        return Answer::Provided(narrowed(package, interface));
    }
    // 0.3.x releases (0.3.2, say) are served as they are: wasmtime's linker
    // takes a patch release for the 0.3.0 it implements, as for 0.2.x.
    if WASI_P3.contains(&package) && version.starts_with("0.3.") && !version.contains('-') {
        return match world {
            World::Service => Answer::Provided(narrowed(package, interface)),
            World::Proxy => Answer::Missing(
                "WASI 0.3 is provided to wasi:http/service (0.3) components only, and this \
                 one exports wasi:http/incoming-handler (0.2)"
                    .into(),
            ),
        };
    }
    if p2 && version.starts_with("0.3.") {
        return Answer::Missing(format!(
            "{version} is a pre-release of WASI 0.3: this host provides its releases \
             (0.3.0 and later, as the `wasip3` crate 0.7.1+wasi-0.3.0 builds): build the guest \
             against one"
        ));
    }
    if p2 && version.starts_with("0.2.") {
        return Answer::Missing(format!(
            "{version} is a pre-release of WASI 0.2: build the guest with a current toolchain \
             (WASI 0.2.0 or later)"
        ));
    }
    Answer::Missing("not provided by this host".into())
}

/// `namespace:package/interface@version` as (package, interface, version).
fn split(name: &str) -> Option<(&str, &str, Option<&str>)> {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    };
    let (package, interface) = path.split_once('/')?;
    package
        .contains(':')
        .then_some((package, interface, version))
}

/// Whether the import `name` is a key-value store's interface.
pub(crate) fn is_store(name: &str) -> bool {
    name.starts_with("wasi:keyvalue/")
        || name.starts_with("fermyon:spin/key-value@")
        || name.starts_with("spin:key-value/")
}

/// The lines saying, of `imports`, each one this host does not provide.
pub(crate) fn missing<'a>(imports: impl IntoIterator<Item = &'a str>, world: World) -> Vec<String> {
    imports
        .into_iter()
        .filter_map(|name| match answer(name, world) {
            Answer::Provided(_) => None,
            Answer::Missing(why) => Some(format!("{name}: {why}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provided(name: &str, world: World) -> bool {
        matches!(answer(name, world), Answer::Provided(_))
    }

    #[test]
    fn wasi_0_2_is_provided_at_any_release_of_0_2() {
        for name in [
            "wasi:cli/environment@0.2.0",
            "wasi:http/types@0.2.12",
            "wasi:io/streams@0.2.3",
        ] {
            assert!(provided(name, World::Proxy), "{name}");
            assert!(provided(name, World::Service), "{name}");
        }
        assert!(!provided(
            "wasi:io/streams@0.2.0-rc-2023-11-10",
            World::Proxy
        ));
    }

    #[test]
    fn wasi_0_3_is_provided_to_0_3_components_only_at_its_releases() {
        assert!(provided("wasi:http/types@0.3.0", World::Service));
        assert!(!provided("wasi:http/types@0.3.0", World::Proxy));
        // A patch release is served as it is (the linker takes it).
        assert!(provided("wasi:http/types@0.3.2", World::Service));
        let rc = answer("wasi:http/types@0.3.0-rc-2025-09-16", World::Service);
        assert!(matches!(rc, Answer::Missing(why) if why.contains("pre-release of WASI 0.3")));
    }

    #[test]
    fn config_keyvalue_and_logging_are_provided_at_wasmtimes_wasmclouds_and_spins_versions() {
        for name in [
            "wasi:config/store@0.2.0-rc.1",
            "wasi:config/store@0.2.0-draft",
            "wasi:config/store@0.2.0-draft-2024-09-27",
            "wasi:logging/logging@0.1.0-draft",
            "fermyon:spin/variables@2.0.0",
            "fermyon:spin/key-value@2.0.0",
        ] {
            assert!(provided(name, World::Proxy), "{name}");
            assert!(provided(name, World::Service), "{name}");
        }
        for version in ["0.2.0-draft", "0.2.0-draft2"] {
            for interface in ["store", "atomics", "batch"] {
                let name = format!("wasi:keyvalue/{interface}@{version}");
                assert!(provided(&name, World::Proxy), "{name}");
                assert!(provided(&name, World::Service), "{name}");
            }
        }
        // Spin 3's are async: 0.3 components only.
        for name in [
            "spin:variables/variables@3.0.0",
            "spin:key-value/key-value@3.0.0",
        ] {
            assert!(provided(name, World::Service), "{name}");
            assert!(!provided(name, World::Proxy), "{name}");
        }
        let other = answer("wasi:keyvalue/store@0.2.0-draft3", World::Proxy);
        assert!(matches!(other, Answer::Missing(why) if why.contains("0.2.0-draft2")));
        assert!(!provided("wasi:config/runtime@0.2.0-draft", World::Proxy));
        assert!(!provided("fermyon:spin/llm@2.0.0", World::Proxy));
    }

    #[test]
    fn others_are_named_with_what_to_do() {
        let lines = missing(
            [
                "wasi:cli/environment@0.2.6",
                "wasi:logging/logging@0.2.0",
                "fermyon:spin/redis@2.0.0",
                "wasmcloud:bus/lattice@1.0.0",
                "acme:db/query@1.0.0",
                "run",
            ],
            World::Proxy,
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(
            lines[0].contains("provides wasi:logging/logging@0.1.0-draft"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("a Spin interface this host does not provide"));
        assert!(lines[2].contains("wasmCloud's own interface"));
        assert!(lines[3].ends_with("not provided by this host"));
        assert!(lines[4].contains("not a WASI interface"));
    }
}
