//! meshcast transport: the wire codec, framing, handshakes, QUIC endpoint
//! configuration and certificates.
//!
//! * [`wire`] is the only module that encodes or decodes message bodies.
//! * [`framing`] splits a stream into length-prefixed frames with a hard maximum.
//! * [`handshake`] is the versioned first frame of every stream.
//! * [`client_proto`] defines the client ↔ broker messages and handshake.
//! * [`peer`] is the broker-to-broker link handshake (mutual TLS).
//! * [`quic`] builds quinn endpoints (rustls with the aws-lc-rs provider, TLS
//!   1.3 only, X25519MLKEM768 key exchange preferred).
//! * [`pki`] creates the development CA and loads PEM files.
//! * [`secret`] keeps tokens out of logs and `Debug` output.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client_proto;
pub mod framing;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_entry;
pub mod handshake;
pub mod peer;
pub mod pki;
pub mod quic;
pub mod secret;
pub mod wire;

pub use framing::{FrameError, FrameReader};
pub use pki::{DevPki, PkiError, TlsIdentity};
pub use quic::TransportError;
pub use secret::Secret;
pub use wire::WireError;
