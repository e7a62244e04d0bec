//! Fuzzes the parsing the host does itself: `--env NAME[=VALUE]`,
//! `--config`/`--keyvalue KEY=VALUE`, `--keyvalue-in BUCKET:KEY=VALUE`, `--keyvalue-url`, `--allow-outbound`
//! and `--authority HOST[:PORT]`, and whole command lines through clap and the checks after
//! it. Nothing may panic, what parses must round-trip, and a store URL's
//! password never shows.

#![no_main]

use clap::Parser as _;
use libfuzzer_sys::fuzz_target;
use replica_config::{
    Config, HostPort, StoreUrl, parse_bucket_pairs, parse_env_var, parse_key_value, parse_pairs,
};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(var) = parse_env_var(&text) {
        assert!(!var.name.is_empty() && !var.name.contains('='));
        match &var.value {
            Some(value) => assert_eq!(format!("{}={value}", var.name), text),
            None => assert_eq!(var.name, text),
        }
    }

    if let Ok((key, value)) = parse_key_value(&text) {
        assert!(!key.is_empty() && !key.contains('='));
        assert_eq!(format!("{key}={value}"), text);
    }

    if let Ok(pairs) = parse_pairs(&text) {
        assert!(!pairs.0.is_empty());
        for (key, value) in pairs.0 {
            assert!(!key.is_empty() && !key.contains('=') && !key.contains('\n'));
            assert!(!value.contains('\n'));
        }
    }

    if let Ok(pairs) = parse_bucket_pairs(&text) {
        for (bucket, key, value) in pairs.0 {
            assert!(!bucket.is_empty() && !bucket.contains(':') && !bucket.contains('\n'));
            assert!(!key.is_empty() && !key.contains('=') && !value.contains('\n'));
        }
    }

    if let Ok(url) = StoreUrl::parse(&text) {
        assert_eq!(url.secret(), text);
        // What is shown parses again, to itself, and holds no credentials.
        let shown = url.to_string();
        assert!(!shown.contains('@'), "{shown}");
        let again = StoreUrl::parse(&shown).expect("the shown URL parses");
        assert_eq!(again.to_string(), shown);
    }

    if let Ok(host) = HostPort::parse(&text) {
        assert_eq!(host.host, host.host.to_ascii_lowercase());
        assert!(!host.host.contains('@'));
        // What it is written as parses again, to itself.
        assert_eq!(HostPort::parse(&host.to_string()).ok(), Some(host));
    }

    // Arguments separated by NUL, as argv would hold them.
    let args = std::iter::once("replica-host").chain(text.split('\0'));
    if let Ok(config) = Config::try_parse_from(args) {
        if let Ok(env) = config.guest_env_from(|_| None) {
            assert_eq!(env.vars[0].0, "SERVER_ID");
            assert!(!env.vars[0].1.is_empty());
        }
        if let Ok(settings) = config.guest_config() {
            assert_eq!(settings[0].0, "SERVER_ID");
        }
        let _ = config.instance_reuse();
        let _ = config.cache_dir();
    }
});
