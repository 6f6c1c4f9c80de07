//! Arbitrary bytes as a client message body: decoding never panics, and
//! whatever decodes re-encodes to a body that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshcast_transport::client_proto::{decode_client, encode_client};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_client(data) {
        let mut buf = bytes::BytesMut::new();
        encode_client(&msg, &mut buf).expect("a decoded message re-encodes");
        assert_eq!(decode_client(&buf[4..]).expect("round trip"), msg);
    }
});
