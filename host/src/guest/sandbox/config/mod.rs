//! Settings: `SERVER_ID` and the `--config` settings, the one store every
//! settings interface reads ([`Settings`]), and the interfaces, each a thin
//! view of it: wasi:config/store at 0.2.0-rc.1 (as `wasmtime serve
//! -Sconfig` gives it) and 0.2.0-draft (as wasmCloud does), and Spin's
//! variables, `fermyon:spin/variables@2.0.0` and, for 0.3 components,
//! `spin:variables/variables@3.0.0`.
//!
//! The bindings are this host's own, generated from the vendored WIT:
//! upstream's `wasmtime-wasi-config` keeps its settings where no other
//! interface can read them, and Spin's variables and wasmCloud's draft must
//! read the same ones.
//!
//! A Spin variable follows Spin's naming rules (lower-case letters, digits
//! and single underscores, starting with a letter and not ending with an
//! underscore; anything else is `invalid-name`), and is the setting of that
//! name or, if there is none, of that name in upper case: `server_id` is
//! `SERVER_ID`, as Spin's environment provider reads `SPIN_VARIABLE_*`. A
//! name with neither is `undefined`.

use std::sync::Arc;
use wasmtime::component::{Accessor, HasData, Linker};

mod rc1 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/config",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

mod draft {
    wasmtime::component::bindgen!({
        path: "../wit/deps/config-draft",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

mod draft_2024 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/config-draft-2024-09-27",
        world: "wasi:config/imports",
        imports: { default: trappable },
    });
}

mod spin2 {
    wasmtime::component::bindgen!({
        inline: "
            package replica:spin-variables;
            world host { import fermyon:spin/variables@2.0.0; }
        ",
        path: "../wit/deps/fermyon-spin-2.0.0",
        imports: { default: trappable },
    });
}

mod spin3 {
    wasmtime::component::bindgen!({
        inline: "
            package replica:spin-variables;
            world host { import spin:variables/variables@3.0.0; }
        ",
        path: "../wit/deps/spin-variables-3.0.0",
        imports: { default: store | trappable },
    });
}

use draft::wasi::config::store as store_draft;
use draft_2024::wasi::config::store as store_draft_2024;
use rc1::wasi::config::store as store_rc1;
use spin2::fermyon::spin::variables as variables2;
use spin3::spin::variables::variables as variables3;

/// What every guest may read: `SERVER_ID` first, then the `--config`
/// settings, in order.
pub(crate) struct Settings {
    entries: Vec<(String, String)>,
}

/// Why a Spin variable cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unread {
    InvalidName(String),
    Undefined(String),
}

impl Settings {
    pub(crate) fn new(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v.as_str()))
    }

    /// The Spin variable `name`: checked against Spin's rules, then the
    /// setting `name`, or `NAME`.
    pub(crate) fn variable(&self, name: &str) -> Result<&str, Unread> {
        if let Some(why) = invalid_spin_name(name) {
            return Err(Unread::InvalidName(format!("{name:?}: {why}")));
        }
        self.get(name)
            .or_else(|| self.get(&name.to_ascii_uppercase()))
            .ok_or_else(|| Unread::Undefined(name.to_string()))
    }
}

/// Why `name` breaks Spin's rules for a variable's name, if it does.
fn invalid_spin_name(name: &str) -> Option<&'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        Some("must not be empty")
    } else if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        Some("may hold only lower-case letters, digits and underscores")
    } else if !bytes[0].is_ascii_lowercase() {
        Some("must start with a lower-case letter")
    } else if bytes[bytes.len() - 1] == b'_' {
        Some("must end with a lower-case letter or a digit")
    } else if name.contains("__") {
        Some("must not hold two underscores in a row")
    } else {
        None
    }
}

/// What the bindings reach from a store's data.
pub(crate) struct ConfigView<'a> {
    pub(crate) settings: &'a Arc<Settings>,
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

/// Adds every settings interface to `linker`; Spin's 3.0.0 only where the
/// engine runs component-model async (`p3`: for 0.3 components).
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ConfigView<'_>,
    p3: bool,
) -> wasmtime::Result<()> {
    store_rc1::add_to_linker::<T, HasConfig>(linker, view)?;
    store_draft::add_to_linker::<T, HasConfig>(linker, view)?;
    store_draft_2024::add_to_linker::<T, HasConfig>(linker, view)?;
    variables2::add_to_linker::<T, HasConfig>(linker, view)?;
    if p3 {
        variables3::add_to_linker::<T, HasConfig>(linker, view)?;
    }
    Ok(())
}

impl store_rc1::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store_rc1::Error>> {
        Ok(Ok(self.settings.get(&key).map(str::to_string)))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store_rc1::Error>> {
        Ok(Ok(self.settings.entries.clone()))
    }
}

impl store_draft::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store_draft::Error>> {
        Ok(Ok(self.settings.get(&key).map(str::to_string)))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store_draft::Error>> {
        Ok(Ok(self.settings.entries.clone()))
    }
}

impl store_draft_2024::Host for ConfigView<'_> {
    fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, store_draft_2024::Error>> {
        Ok(Ok(self.settings.get(&key).map(str::to_string)))
    }

    fn get_all(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<(String, String)>, store_draft_2024::Error>> {
        Ok(Ok(self.settings.entries.clone()))
    }
}

impl variables2::Host for ConfigView<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables2::Error>> {
        Ok(match self.settings.variable(&name) {
            Ok(value) => Ok(value.to_string()),
            Err(Unread::InvalidName(why)) => Err(variables2::Error::InvalidName(why)),
            Err(Unread::Undefined(name)) => Err(variables2::Error::Undefined(name)),
        })
    }
}

impl variables3::Host for ConfigView<'_> {}

impl<T> variables3::HostWithStore<T> for HasConfig {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables3::Error>> {
        accessor.with(|mut access| {
            Ok(match access.get().settings.variable(&name) {
                Ok(value) => Ok(value.to_string()),
                Err(Unread::InvalidName(why)) => Err(variables3::Error::InvalidName(why)),
                Err(Unread::Undefined(name)) => Err(variables3::Error::Undefined(name)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new(vec![
            ("SERVER_ID".into(), "3".into()),
            ("api_url".into(), "http://x".into()),
            ("greeting".into(), "hi".into()),
        ])
    }

    #[test]
    fn spin_variables_are_settings_by_spins_rules() {
        let settings = settings();
        assert_eq!(settings.variable("api_url"), Ok("http://x"));
        // A lower-case name reaches an upper-case setting.
        assert_eq!(settings.variable("server_id"), Ok("3"));
        assert_eq!(
            settings.variable("missing"),
            Err(Unread::Undefined("missing".into()))
        );
        for bad in [
            "",
            "SERVER_ID",
            "1abc",
            "_x",
            "x_",
            "a__b",
            "x-y",
            "x.y",
            "aX",
        ] {
            assert!(
                matches!(settings.variable(bad), Err(Unread::InvalidName(_))),
                "{bad}"
            );
        }
        for good in ["a", "abc", "a1b2c3", "a_1", "a_1_b_3"] {
            assert_eq!(invalid_spin_name(good), None, "{good}");
        }
    }

    #[test]
    fn config_reads_every_setting_as_given() {
        let settings = settings();
        assert_eq!(settings.get("SERVER_ID"), Some("3"));
        assert_eq!(settings.get("server_id"), None);
        assert_eq!(settings.entries.len(), 3);
    }
}
