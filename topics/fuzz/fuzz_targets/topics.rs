//! Lines as topics, patterns and group rules: nothing panics, matching
//! agrees with an independent matcher and the index, the group map with
//! its rules (see `meshcast_topics::fuzz_entry::topics`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshcast_topics::fuzz_entry::topics(data));
