//! Peer-link frames decoded by the runtime's decoder and handed to a
//! protocol core that is a member of a running three-broker mesh: nothing
//! panics, and a refused message leaves the core unchanged (see
//! `meshcast_broker::fuzz_entry::peer_frames`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| meshcast_broker::fuzz_entry::peer_frames(data));
