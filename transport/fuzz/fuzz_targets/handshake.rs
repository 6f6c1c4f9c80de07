//! Arbitrary bytes as the first frame of a client or peer stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshcast_transport::client_proto::{decode_hello, decode_welcome};
use meshcast_transport::handshake;
use meshcast_transport::peer::{PEER_PROTOCOL_VERSION, PeerHello};

fuzz_target!(|data: &[u8]| {
    let _ = decode_hello(data);
    let _ = decode_welcome(data);
    let _ = handshake::decode_hello::<PeerHello>("peer hello", PEER_PROTOCOL_VERSION, data);
    let _ = handshake::decode_answer::<PeerHello>("peer hello", PEER_PROTOCOL_VERSION, data);
});
