//! Arbitrary bytes as a broker message body: decoding never panics, and
//! whatever decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshcast_transport::fuzz_entry::server_msg(data));
