//! Arbitrary bytes as a client message body: decoding never panics, and
//! whatever decodes re-encodes to a body that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshcast_transport::fuzz_entry::client_msg(data));
