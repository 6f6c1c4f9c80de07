//! Arbitrary bytes as a broker message body: decoding never panics, and
//! whatever decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshcast_transport::client_proto::{decode_server, encode_server};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_server(data) {
        let frame = encode_server(&msg).expect("a decoded message re-encodes");
        assert_eq!(decode_server(&frame[4..]).expect("round trip"), msg);
    }
});
