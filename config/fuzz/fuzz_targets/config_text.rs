//! Arbitrary text as a configuration file and as `--set` overrides:
//! nothing panics, what loads is valid and reads back equal, refusals
//! name their key (see `meshcast_config::fuzz_entry::config_text`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshcast_config::fuzz_entry::config_text(data));
