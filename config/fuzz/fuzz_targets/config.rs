//! Fuzzes the parsing the host does itself: `--env KEY=VALUE`,
//! `--allow-outbound HOST[:PORT]`, and whole command lines through clap and
//! the checks after it. Nothing may panic, and what parses must round-trip.

#![no_main]

use clap::Parser as _;
use libfuzzer_sys::fuzz_target;
use replica_config::{Config, parse_env_var, parse_outbound_host};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok((key, value)) = parse_env_var(&text) {
        assert!(!key.is_empty() && !key.contains('='));
        assert_eq!(format!("{key}={value}"), text);
    }

    if let Ok(host) = parse_outbound_host(&text) {
        assert_eq!(host, host.to_ascii_lowercase());
        assert_eq!(parse_outbound_host(&host).ok().as_deref(), Some(host.as_str()));
    }

    // Arguments separated by NUL, as argv would hold them.
    let args = std::iter::once("replica-host").chain(text.split('\0'));
    if let Ok(config) = Config::try_parse_from(args) {
        if let Ok(env) = config.guest_env() {
            assert_eq!(env[0].0, "SERVER_ID");
            assert!(!env[0].1.is_empty());
        }
        let _ = config.instance_reuse();
        let _ = config.cache_dir();
    }
});
