//! Arbitrary bytes as the first frame of a client or peer stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshcast_transport::fuzz_entry::handshake(data));
